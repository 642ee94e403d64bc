"""Reliability of remotes (issue 7), each against a directory remote and a moto S3 remote.

* Two pushers, one branch, 20 rounds: every commit ends up reachable on the remote, or its
  pusher got the "moved" error; none is lost.
* A push killed (SIGKILL) at random points, 20 times: the remote passes fsck_remote and the
  next push completes.
* Wrong credentials: a one-line error.
"""

from __future__ import annotations

import os
import random
import select
import signal
import threading
import time
from pathlib import Path

import pytest
import torch

from rewardkit.errors import RefMovedError, StoreError
from rewardkit.store import Repository
from rewardkit.store.merge import commit_merge, plan_merge
from rewardkit.store.remote import Remote, fetch, fsck_remote, push

FILES = {"config.json": b'{"model_type": "tiny"}\n'}
ROUNDS = 20


def model(seed: int) -> dict[str, torch.Tensor]:
    """A one-tensor model: each version is two new objects (tensor, manifest), so 20 rounds stay fast on moto."""
    return {"w": torch.randn(4, 4, generator=torch.Generator().manual_seed(seed))}


def read_byte(pid: int, pipe: int, timeout: float = 60.0) -> bytes:
    """Read one byte the child writes; kill it and fail rather than hang if it never does."""
    ready, _, _ = select.select([pipe], [], [], timeout)
    if not ready:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail(f"the pushing child said nothing for {timeout:.0f} s")
    return os.read(pipe, 1)


def remote_history(remote: Remote, branch: str = "main") -> set[str]:
    """Ids of every commit reachable from the remote branch (parents and lineage)."""
    seen: set[str] = set()
    todo = [remote.branch(branch)]
    while todo:
        id = todo.pop()
        if id is None or id in seen:
            continue
        seen.add(id)
        c = remote.get_commit(id)
        todo.extend([*c.parents, *c.base_commits()])
    return seen


@pytest.mark.parametrize("kind", ["dir", "s3"])
def test_two_pushers_one_branch_lose_nothing(kind, make_remote, tmp_path):
    origin = make_remote(kind)
    with Repository.init(tmp_path / "a") as a, Repository.init(tmp_path / "b") as b:
        base = a.commit_tensors(model(0), FILES, "base")
        push(a, origin, ["main"])
        fetch(b, origin)
        b.reset("origin/main")
        barrier = threading.Barrier(2)
        created: dict[str, list[str]] = {"a": [], "b": []}
        pushed: dict[str, list[str]] = {"a": [], "b": []}
        moved: dict[str, list[str]] = {"a": [], "b": []}
        errors: list[BaseException] = []

        def pusher(name: str, repo: Repository, seed: int, integrate: str) -> None:
            try:
                for r in range(ROUNDS):
                    head = repo.commit_tensors(model(seed + r), FILES, f"{name} round {r}")
                    created[name].append(head.id)
                    barrier.wait(timeout=60)  # both push at once, every round
                    while True:
                        try:
                            push(repo, origin, ["main"])
                            pushed[name].append(repo.refs.get("refs/heads/main"))
                            break
                        except RefMovedError:
                            moved[name].append(repo.refs.get("refs/heads/main"))
                            fetch(repo, origin, ["main"])
                            if integrate == "merge":  # fetch + merge (both sides' tensors averaged)
                                plan = plan_merge(repo, ["origin/main"], strategy="average")
                                merged = commit_merge(repo, plan, f"{name}: merge origin/main")
                                created[name].append(merged.id)
                            else:  # rebase: the same model again, on top of what the remote has
                                repo.reset("origin/main")
                                again = repo.commit_tensors(model(seed + r), FILES, f"{name} round {r} again")
                                created[name].append(again.id)
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                errors.append(exc)
                barrier.abort()

        threads = [
            threading.Thread(target=pusher, args=("a", a, 100, "merge")),
            threading.Thread(target=pusher, args=("b", b, 200, "rebase")),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        on_remote = remote_history(origin)
        for name in ("a", "b"):
            assert len(pushed[name]) == ROUNDS
            assert set(pushed[name]) <= on_remote  # every push that succeeded is still there
            lost = [c for c in created[name] if c not in on_remote and c not in moved[name]]
            assert lost == [], f"{name}: commits neither on the remote nor refused as moved"
        assert moved["a"] or moved["b"], "the pushers never raced: the test proves nothing"
        assert base.id in on_remote
        assert fsck_remote(origin).ok
        log = origin.reflog("main")
        assert len(log) == 1 + 2 * ROUNDS and all(e.message == "push" for e in log)
        by_old = {e.old: e for e in log}
        chain, at = [], None
        while at in by_old:  # every move built on the one before it: nothing was overwritten
            chain.append(by_old[at])
            at = by_old[at].new
        assert len(chain) == len(log) and at == origin.branch("main")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork to kill a push cheaply (a fresh interpreter "
                                                  "imports torch in ~3 s, x 40 kills)")
@pytest.mark.parametrize("kind", ["dir", "s3"])
def test_push_killed_at_random_points_leaves_a_sound_remote(kind, repo, make_remote):
    """SIGKILL a pushing process at random points: fsck_remote passes, the next push completes.

    The child is a fork of this process (rewardkit already imported), so a kill costs
    milliseconds instead of a fresh interpreter's seconds (importing torch: about 3 s, times 40);
    it opens the repository and the remote itself, as a separate ``rewardkit push`` would. It
    tells the parent (a byte on a pipe) as each remote write starts (objects, commit file, ref,
    reflog entry); the parent picks a random write, waits for it to start, lets a random 0-3 ms
    pass and sends SIGKILL, so no ``finally`` runs: a directory remote keeps its lock and temp
    files. Kills thus land in every phase of a push however loaded the machine is.
    """
    origin = make_remote(kind)
    url, options = origin.url, {}
    if origin.is_s3:  # the children share one warm botocore session: 0.06 s to set up a client, not 0.6 s
        import aiobotocore.session

        options = {"endpoint_url": origin.fs.client_kwargs["endpoint_url"], "session": aiobotocore.session.AioSession()}
        Remote("origin", url, **options).branch("main")
    repo.commit_tensors(model(0), FILES, "v0")
    push(repo, origin, ["main"])
    rng = random.Random(7)

    def child_push() -> tuple[int, int]:
        """Fork a pusher; its pipe reads b"r" once it is set up, b"w" as each remote write starts, b"d" at the end."""
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                os.close(read)
                real = Remote.write_file

                def announced(self: Remote, p: str, data: bytes | Path) -> int:
                    os.write(write, b"w")
                    return real(self, p, data)

                Remote.write_file = announced  # in the child only
                with Repository.open(repo.path) as mine:
                    remote = Remote("origin", url, **options)
                    remote.branch("main")  # connect first (an S3 client takes a while to set up)
                    os.write(write, b"r")
                    push(mine, remote, ["main"])
                    os.write(write, b"d")
                code = 0
            finally:
                os._exit(code)
        os.close(write)
        return pid, read

    writes = 5  # a one-tensor version: tensor, manifest, commit file, ref, reflog entry
    killed = 0
    for i in range(1, 1 + ROUNDS):
        before = origin.branch("main")
        head = repo.commit_tensors(model(i), FILES, f"v{i}")
        pid, pipe = child_push()
        assert read_byte(pid, pipe) == b"r"
        target, seen = rng.randint(1, writes), 0
        while seen < target and read_byte(pid, pipe) == b"w":
            seen += 1
        time.sleep(rng.uniform(0, 0.003))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        os.close(pipe)
        killed += os.waitstatus_to_exitcode(status) == -signal.SIGKILL
        report = fsck_remote(origin)
        assert report.ok, report.problems
        assert origin.branch("main") in (before, head.id)  # the old head or the new one, nothing between
        push(repo, origin, ["main"])  # completes: a dead pusher's lock is broken, its leftovers reused
        assert origin.branch("main") == head.id
    assert killed >= ROUNDS // 2, f"only {killed} of {ROUNDS} pushes were killed mid-way"
    assert fsck_remote(origin).ok


def test_wrong_credentials_are_one_line(repo, s3_bucket, s3_endpoint, monkeypatch, tmp_path):
    """moto accepts any key unless told to check them: this test makes it check (IAM, no user has the key)."""
    import moto.settings

    repo.commit_tensors(model(0), FILES, "v1")
    monkeypatch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
    remote = Remote("origin", s3_bucket + "/repo", endpoint_url=s3_endpoint, key="AKIAWRONG", secret="wrong")
    with pytest.raises(StoreError, match=r"remote origin \(s3://.*\): .* failed: .*(key|Access|denied)") as info:
        push(repo, remote, ["main"])
    assert "\n" not in str(info.value)
    with Repository.init(tmp_path / "clone") as clone:
        with pytest.raises(StoreError, match="failed"):
            fetch(clone, remote)
        assert clone.refs.as_dict() == {} and clone.commits.count() == 0
    assert Path(repo.path).is_dir() and repo.refs.as_dict() == {"refs/heads/main": repo.refs.get("refs/heads/main")}
