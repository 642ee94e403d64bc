"""Two processes under ``torch.distributed.run`` (what ``accelerate launch`` starts) train one model; one commits."""

import json
import os
import subprocess
import sys

from cli_helpers import write_jsonl


def test_two_processes_train_together_and_commit_once(tmp_path, tiny_model_dir):
    data = write_jsonl(tmp_path / "pairs.jsonl", [
        {"prompt": f"Question {i}?", "chosen": f"A helpful answer {i}.", "rejected": f"Nothing {i}."} for i in range(40)
    ])
    env = {**os.environ, "REWARDKIT_REPO": str(tmp_path / "repo"), "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"}
    rewardkit = [sys.executable, "-m", "rewardkit.cli.main"]
    subprocess.run([*rewardkit, "init"], env=env, check=True, capture_output=True)
    # `accelerate launch --cpu --num_processes 2` starts a single process on some machines;
    # torch.distributed.run always starts two, and accelerate reads the process group it sets up.
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
              "-m", "rewardkit.cli.main"]
    done = subprocess.run(
        [*launch, "train", "--data", str(data), "--base-model", str(tiny_model_dir), "--max-length", "32",
         "--batch-size", "4", "--epochs", "1", "--output-dir", str(tmp_path / "run"), "--commit", "-m",
         "two processes", "--json"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)  # exactly one process printed
    assert result["train"]["train/pairs"] == 32  # 80% of 40 prompts, none dropped
    # 8 batches of 4 pairs shared by 2 processes: 4 optimizer steps (one process alone takes 8)
    assert result["train"]["train/steps"] == 4
    log = subprocess.run([*rewardkit, "log", "--json"], env=env, check=True, capture_output=True, text=True)
    assert [c["id"] for c in json.loads(log.stdout)] == [result["commit"]]
