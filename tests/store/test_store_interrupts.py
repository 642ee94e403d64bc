"""Killed writers leave the repository as it was: SIGTERM mid-commit, killed init, temp leftovers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import rewardkit
from rewardkit.errors import StoreError
from rewardkit.store import Repository
from rewardkit.store.objects import TMP_GRACE_S

SRC = str(Path(rewardkit.__file__).resolve().parents[1])  # the code under test, for child processes

# Commit a folder, pausing after the first object it writes so the test can signal it mid-commit.
_SLOW_COMMIT = """
import sys, time
from rewardkit.store import Repository
from rewardkit.store.objects import ObjectStore

write = ObjectStore._write
def slow_write(self, *args, **kwargs):
    write(self, *args, **kwargs)
    print("wrote", flush=True)
    time.sleep(60)
ObjectStore._write = slow_write
with Repository.open(sys.argv[1]) as repo:
    repo.commit_dir(sys.argv[2], "killed")
"""


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.skipif(os.name != "posix", reason="needs POSIX signals")
def test_sigterm_mid_commit_leaves_the_repository_as_it_was(
    repo: Repository, tiny_tensors, write_model, tmp_path: Path
) -> None:
    first = repo.commit_tensors(tiny_tensors(0), {"config.json": b"{}"}, "first")
    big = {f"layer{i}.weight": torch.randn(256, 256) for i in range(8)}  # 8 x 256 KiB
    folder = write_model(tmp_path / "big", big)
    before = _files(repo.path)
    child = subprocess.Popen(
        [sys.executable, "-c", _SLOW_COMMIT, str(repo.path), str(folder)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": SRC},
    )
    assert child.stdout is not None and child.stdout.readline() == "wrote\n"
    assert _files(repo.path) != before  # an object (and the lock) is there now
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 128 + signal.SIGTERM, err
    assert _files(repo.path) == before  # no orphan object, temp file or lock left
    assert repo.branches() == {"main": first.id} and repo.commits.count() == 1
    assert repo.commit_dir(folder, "again").parents == [first.id]  # and the next commit works


# `Repository.init`, pausing before it writes config.json (its last step) so the test can kill it there.
_SLOW_INIT = """
import sys, time
from rewardkit.store import config, repository

write = config.write_atomically
def slow_write(path, data):
    if path.name == "config.json":
        print("about to write config.json", flush=True)
        time.sleep(60)
    write(path, data)
config.write_atomically = slow_write
repository.Repository.init(sys.argv[1])
"""


@pytest.mark.skipif(os.name != "posix", reason="needs POSIX signals")
def test_init_killed_for_real_is_finished_by_init(tmp_path: Path) -> None:
    path = tmp_path / "repo"
    child = subprocess.Popen([sys.executable, "-c", _SLOW_INIT, str(path)], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": SRC})
    assert child.stdout is not None and child.stdout.readline() == "about to write config.json\n"
    child.kill()  # SIGKILL: no cleanup at all
    child.wait()
    assert (path / "objects").is_dir() and (path / "meta.db").is_file() and not (path / "config.json").exists()
    with pytest.raises(StoreError, match="unfinished repository"):
        Repository.open(path)
    with Repository.init(path) as repo:
        repo.commit_tensors({"w": torch.ones(2)}, {}, "first")
        assert repo.commits.count() == 1


def test_a_killed_init_is_finished_by_init(tmp_path: Path) -> None:
    path = tmp_path / "repo"
    (path / "objects").mkdir(parents=True)  # init died after creating objects/ and half of meta.db
    (path / "meta.db").write_bytes(b"SQLite format 3\x00" + b"\x00" * 50)
    (path / ".tmp-config.json").write_text('{"form')
    with pytest.raises(StoreError, match=f"unfinished repository .*run `rewardkit init {path}` again"):
        Repository.open(path)
    Repository.init(path).close()
    with Repository.open(path) as repo:
        assert repo.commits.count() == 0
        repo.commit_tensors({"w": torch.ones(2)}, {}, "first")
    assert json.loads((path / "config.json").read_text()) == {"format": "rewardkit", "version": 2}
    assert not (path / ".tmp-config.json").exists()


def test_init_does_not_finish_a_folder_that_holds_objects(repo: Repository, tiny_tensors) -> None:
    repo.commit_tensors(tiny_tensors(0), {}, "first")
    (repo.path / "config.json").unlink()
    with pytest.raises(StoreError, match="not an empty folder"):
        Repository.init(repo.path)
    assert repo.commits.count() == 1


def test_the_next_write_removes_old_temp_files(repo: Repository, tiny_tensors) -> None:
    fan = repo.path / "objects" / "ab"
    fan.mkdir()
    old, fresh = fan / ".tmp-killed", fan / ".tmp-running"
    old.write_bytes(b"x" * 100)
    fresh.write_bytes(b"y")
    stamp = time.time() - TMP_GRACE_S - 60
    os.utime(old, (stamp, stamp))
    repo.commit_tensors(tiny_tensors(0), {}, "first")
    assert not old.exists() and fresh.exists()
