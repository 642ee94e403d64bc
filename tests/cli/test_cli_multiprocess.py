"""`accelerate launch` runs the same training command on two processes; one of them commits."""

import json
import os
import subprocess
import sys

from cli_helpers import write_jsonl


def test_accelerate_launch_two_processes_commits_once(tmp_path, tiny_model_dir):
    data = write_jsonl(tmp_path / "pairs.jsonl", [
        {"prompt": f"Question {i}?", "chosen": f"A helpful answer {i}.", "rejected": f"Nothing {i}."} for i in range(40)
    ])
    env = {**os.environ, "REWARDKIT_REPO": str(tmp_path / "repo"), "OMP_NUM_THREADS": "1"}
    rewardkit = [sys.executable, "-m", "rewardkit.cli.main"]
    subprocess.run([*rewardkit, "init"], env=env, check=True, capture_output=True)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2", "--num_machines",
              "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "rewardkit.cli.main"]
    done = subprocess.run(
        [*launch, "train", "--data", str(data), "--base-model", str(tiny_model_dir), "--max-length", "32",
         "--batch-size", "4", "--output-dir", str(tmp_path / "run"), "--commit", "-m", "two processes", "--json"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)  # exactly one process printed
    assert result["train"]["train/pairs"] == 32  # 80% of 40 prompts, none dropped
    log = subprocess.run([*rewardkit, "log", "--json"], env=env, check=True, capture_output=True, text=True)
    assert [c["id"] for c in json.loads(log.stdout)] == [result["commit"]]
