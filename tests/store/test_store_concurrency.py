"""Concurrent commits in separate processes never delete each other's objects, with or without fcntl."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

import rewardkit
from rewardkit.errors import RefMovedError
from rewardkit.store import Commit, Repository
from rewardkit.store.fsck import fsck
from rewardkit.store.manifest import Manifest, TensorEntry

pytestmark = pytest.mark.backends()  # each test's `repo` on SQLite, then on PostgreSQL

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


@pytest.mark.backends("sqlite")  # about the object files' lock and undo, the same on every backend (and 10 s)
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


def _writer(path: Path, writer: int, how: str, go: Any, out: Path) -> None:
    """One of 4 writers (a forked process): 10 commits onto main, one line each in ``out``: the id, or the error.

    ``commit_tensors`` reads the head under the object store's lock, as ``rewardkit commit`` does; otherwise
    each manifest is prepared from the head read first, as merge and revert do, so another writer can move
    main in between and the compare-and-swap must see it.
    """
    with Repository.open(path) as repo, out.open("w") as log:
        go.wait()
        for i in range(10):
            tensor = torch.full((64,), float(100 * writer + i))
            message = f"writer {writer} commit {i}"
            if how == "commit_tensors":
                log.write(repo.commit_tensors({"w": tensor}, {}, message, branch="main").id + "\n")
                continue
            head = repo.refs.get("refs/heads/main")
            manifest_id = Manifest(tensors={"w": TensorEntry.from_ref(repo.objects.put_tensor(tensor))}).store(
                repo.objects)
            time.sleep(0.01)  # the others commit meanwhile
            try:
                commit = repo.commit_manifest(manifest_id, message, branch="main", expected_head=head,
                                              retry=how == "retry")
            except RefMovedError as exc:
                log.write(f"error: {exc}\n")
            else:
                log.write(commit.id + "\n")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forks the writers (no torch import per writer)")
@pytest.mark.parametrize("how", ["commit_tensors", "no retry", "retry"])
def test_four_writers_lose_no_update(repo: Repository, tiny_tensors, tmp_path: Path, how: str) -> None:
    """4 processes x 10 commits onto one branch: each lands, or its writer is told the branch moved."""
    base = repo.commit_tensors(tiny_tensors(0), {}, "base")
    fork = multiprocessing.get_context("fork")
    go = fork.Event()
    writers = [fork.Process(target=_writer, args=(repo.path, w, how, go, tmp_path / f"writer{w}.txt"))
               for w in range(4)]
    for writer in writers:
        writer.start()
    go.set()
    for writer in writers:
        writer.join(timeout=240)
        assert writer.exitcode == 0
    lines = [line for w in range(4) for line in (tmp_path / f"writer{w}.txt").read_text().splitlines()]
    landed = [line for line in lines if not line.startswith("error:")]
    refused = [line for line in lines if line.startswith("error:")]
    assert len(lines) == 40
    for line in refused:
        assert "branch main moved: expected" in line and "nothing was committed" in line and "--retry" in line
    history = repo.log("main")
    assert history[-1].id == base.id
    assert sorted(c.id for c in history[:-1]) == sorted(landed)  # a straight line of exactly the landed commits
    assert all(len(c.parents) == 1 for c in history[:-1])
    if how == "no retry":
        assert refused, "no writer ever raced: the test did not exercise the compare-and-swap"
    else:
        assert len(landed) == 40
    assert fsck(repo).ok


def _incrementer(path: Path, worker: int, increments: int, go: Any, out: Path) -> None:
    """One process: ``increments`` compare-and-swap moves of main, each onto a new commit on top of the head it read.

    Read the head, write a commit whose parent it is, ``set_ref`` with the head as ``expected_old``; on
    :class:`RefMovedError` read again and retry. Writes each landed commit id to ``out``, then ``retries N``.
    """
    with Repository.open(path) as repo, out.open("w") as log:
        manifest_id = repo.resolve("main").manifest_id
        retries = 0
        go.wait()
        for i in range(increments):
            while True:
                head = repo.refs.get("refs/heads/main")
                commit = Commit.create(manifest_id, [head], f"worker {worker} increment {i}", "test")
                repo.commits.add(commit)
                time.sleep(0.005)  # the others move main meanwhile, however the processes are scheduled
                try:
                    repo.refs.set_ref("refs/heads/main", commit.id, head, f"increment {worker}.{i}")
                except RefMovedError:
                    retries += 1
                    continue
                log.write(commit.id + "\n")
                break
        log.write(f"retries {retries}\n")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forks the incrementers (no torch import per process)")
def test_compare_and_swap_from_processes_loses_no_increment(repo: Repository, tiny_tensors, tmp_path: Path) -> None:
    """4 processes x 25 read-commit-swap increments of one branch: a chain of exactly 100 commits, none lost."""
    workers, increments = 4, 25
    base = repo.commit_tensors(tiny_tensors(0), {}, "base")
    fork = multiprocessing.get_context("fork")
    go = fork.Event()
    processes = [fork.Process(target=_incrementer, args=(repo.path, w, increments, go, tmp_path / f"w{w}.txt"))
                 for w in range(workers)]
    for process in processes:
        process.start()
    go.set()
    for process in processes:
        process.join(timeout=240)
        assert process.exitcode == 0
    lines = [line for w in range(workers) for line in (tmp_path / f"w{w}.txt").read_text().splitlines()]
    landed = [line for line in lines if not line.startswith("retries")]
    retries = sum(int(line.split()[1]) for line in lines if line.startswith("retries"))
    assert len(landed) == workers * increments
    chain = repo.log("main")
    assert [c.id for c in chain[-1:]] == [base.id] and len(chain) == workers * increments + 1
    assert all(c.parents == [p.id] for c, p in itertools.pairwise(chain))  # one straight line
    assert sorted(c.id for c in chain[:-1]) == sorted(landed)  # every increment is in it, none twice
    moves = repo.refs.reflog("refs/heads/main")[1:]  # after the base commit's
    assert [m.old for m in moves] == [base.id, *(m.new for m in moves[:-1])]  # each move from the one before
    assert retries > 0, "no process ever raced: the test did not exercise the compare-and-swap"
