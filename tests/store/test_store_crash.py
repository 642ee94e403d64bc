"""SIGKILL at random points of commit, gc and alias set never damages the repository or loses a commit.

A worker (crash_worker.py) runs random store operations in a loop in forked children; the test
kills each child after a random (seeded) delay, so kills land before, inside and between the
operations' steps: writing objects, the commit transaction, deleting garbage, moving an alias.
After each kill: fsck is clean (dangling objects and young temp files are allowed), every commit
reported done is present and checks out bit-identical, and the next operation succeeds at once
(the killed child's lock is taken over because its pid is dead, not after the 30 s lease).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
from crash_worker import CONFIG, OPS, model
from safetensors.torch import load_file

import rewardkit
from rewardkit.store import Repository
from rewardkit.store.fsck import fsck
from rewardkit.store.gc import temp_files

SRC = str(Path(rewardkit.__file__).resolve().parents[1])
WORKER = str(Path(__file__).with_name("crash_worker.py"))
KILLS = 60
MIN_CHECKED = 50  # commits checked out and compared; a loaded machine completes fewer per round
SEED = 6
MAX_DELAY_S = 0.4
NEXT_OP_MAX_S = 5.0  # far below the lock's 30 s lease


def _records(done_log: Path) -> list[dict]:
    lines = done_log.read_text().split("\n") if done_log.exists() else []
    return [json.loads(line) for line in lines[:-1]]  # the last is empty, or cut by the kill


def _killed_op(records: list[dict]) -> str | None:
    """The operation the kill interrupted: begun and not reported done (None: between operations)."""
    if records and "begin" in records[-1]:
        return records[-1]["begin"]
    return None


def _check_checkout(repo: Repository, record: dict, to: Path) -> None:
    repo.checkout(record["commit"], to)
    got, want = load_file(str(to / "model.safetensors")), model(record["seed"])
    assert got.keys() == want.keys()
    for name, tensor in want.items():
        assert got[name].dtype == tensor.dtype and torch.equal(got[name], tensor), (record, name)
    assert json.loads((to / "config.json").read_text()) == CONFIG


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork and SIGKILL")
def test_sigkill_at_random_points_leaves_a_sound_repository(tmp_path: Path) -> None:
    Repository.init(tmp_path / "repo").close()
    done_log = tmp_path / "done.jsonl"
    zygote = subprocess.Popen(
        [sys.executable, WORKER, str(tmp_path / "repo"), str(done_log)], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": SRC},
    )
    assert zygote.stdin is not None and zygote.stdout is not None
    rng = random.Random(SEED)
    killed: Counter[str | None] = Counter()
    checked: set[str] = set()
    try:
        assert zygote.stdout.readline() == "ready\n"
        with Repository.open(tmp_path / "repo") as repo:
            kill = 0
            while kill < KILLS or (len(checked) < MIN_CHECKED and kill < 3 * KILLS):  # a slow machine: more rounds
                target = sorted(OPS)[kill % len(OPS)]  # each operation in turn, so each is killed mid-way often
                zygote.stdin.write(f"run {rng.randrange(1 << 30)} {target}\n")
                zygote.stdin.flush()
                pid = int(zygote.stdout.readline().split()[1])
                time.sleep(rng.uniform(0, MAX_DELAY_S))
                os.kill(pid, signal.SIGKILL)
                status = int(zygote.stdout.readline().split()[2])
                assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, "the child failed by itself"
                records = _records(done_log)
                killed[_killed_op(records)] += 1

                report = fsck(repo)
                assert report.ok, [f.detail for f in report.errors]
                present = {c.id for c in repo.commits.all()}
                for record in records:
                    if "commit" in record:
                        assert record["commit"] in present, record
                    if record.get("op") == "commit" and record["commit"] not in checked:
                        _check_checkout(repo, record, tmp_path / "checkout" / record["commit"])
                        checked.add(record["commit"])
                    if record.get("op") == "merge" and "commit" in record and record["commit"] not in checked:
                        repo.load_tensors(record["commit"], verify=True)  # every object there, hashing to its id
                        checked.add(record["commit"])

                name = sorted(OPS)[kill % len(OPS)] if repo.branches() else "commit"  # the next one, here, at once
                kill += 1
                start = time.monotonic()
                record = OPS[name](repo, rng)
                assert time.monotonic() - start < NEXT_OP_MAX_S, f"{name} waited for the dead child's lock"
                with done_log.open("a") as log:
                    log.write(json.dumps(record) + "\n")
                if name == "gc":
                    assert temp_files(repo.path, repo.objects) == []  # gc --grace 0 removed every leftover
            assert fsck(repo).ok
    finally:
        zygote.stdin.close()
        zygote.wait(timeout=30)
    print(f"kills by operation interrupted (None: between operations): {dict(killed)}; {len(checked)} commits checked")
    assert sum(killed.values()) == kill >= KILLS >= 50
    for name in OPS:  # every operation was killed mid-way several times
        assert killed[name] >= 3, killed
    assert len(checked) >= MIN_CHECKED
