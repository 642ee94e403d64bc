"""Concurrent commits in separate processes never delete each other's objects, with or without fcntl."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

import rewardkit
from rewardkit.store import Repository

SRC = str(Path(rewardkit.__file__).resolve().parents[1])  # the code under test, for child processes

# Both children commit the same new tensor; neither may import fcntl (as on Windows).
_COMMIT = """
import sys, time
sys.modules["fcntl"] = None
import torch
from rewardkit.store import Repository

repo = Repository.open(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()  # go
if sys.argv[2] == "fail":  # writes the tensor, then fails writing the file (say, disk full)
    def put_blob(*args, **kwargs):
        print("written", flush=True)
        time.sleep(3)
        raise RuntimeError("disk full")
    repo.objects.put_blob = put_blob
try:
    repo.commit_tensors({"w": torch.arange(1000.0)}, {"config.json": b"{}"}, "same model", branch=sys.argv[2])
except RuntimeError as exc:
    print(exc, flush=True)
else:
    print("committed", flush=True)
"""


def _child(repo: Path, branch: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.Popen(
        [sys.executable, "-c", _COMMIT, str(repo), branch], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=env,
    )


def test_a_failing_commit_does_not_delete_objects_a_concurrent_commit_reuses(repo: Repository) -> None:
    failing, other = _child(repo.path, "fail"), _child(repo.path, "ok")
    for child in (failing, other):
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
    failing.stdin.write("go\n")  # type: ignore[union-attr]
    failing.stdin.flush()  # type: ignore[union-attr]
    assert failing.stdout.readline() == "written\n"  # type: ignore[union-attr]
    out, err = other.communicate("go\n", timeout=120)  # commits while the failing one still has its objects
    assert out == "committed\n", err
    assert failing.communicate(timeout=120)[0] == "disk full\n"
    assert repo.branches().keys() == {"ok"}
    assert repo.load_tensors("ok")["w"].equal(torch.arange(1000.0))  # every object there, intact
