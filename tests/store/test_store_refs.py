from __future__ import annotations

import re
import threading
from itertools import count

import pytest
import torch
from sqlalchemy import delete

from rewardkit.errors import RefError, RefMovedError, StoreError
from rewardkit.store import ANY, Repository
from rewardkit.store.commits import Commit
from rewardkit.store.db import commits_table

pytestmark = pytest.mark.backends()  # each test's `repo` on SQLite, then on PostgreSQL


def _commits(repo: Repository, n: int) -> list[Commit]:
    return [repo.commit_tensors({"w": torch.full((2,), i)}, {}, f"commit {i}") for i in range(n)]


def test_set_ref_compare_and_swap(repo: Repository) -> None:
    c1, c2 = _commits(repo, 2)  # main: c1 -> c2
    with pytest.raises(StoreError, match=f"branch main moved: expected {c1.id}, found {c2.id}"):
        repo.refs.set_ref("refs/heads/main", c1.id, c1.id)
    with pytest.raises(StoreError, match="branch main moved: expected \\(no ref\\)"):
        repo.refs.set_ref("refs/heads/main", c1.id, None)
    repo.refs.set_ref("refs/heads/exp", c1.id, None)  # create
    repo.refs.set_ref("refs/heads/exp", c2.id, c1.id)  # move
    repo.refs.set_ref("refs/heads/exp", c1.id, ANY, "reset")  # plain set
    repo.refs.set_ref("refs/heads/exp", None, c1.id)  # delete
    assert repo.branches() == {"main": c2.id}
    assert [(e.old, e.new, e.message) for e in repo.refs.reflog("refs/heads/exp")] == [
        (None, c1.id, ""),
        (c1.id, c2.id, ""),
        (c2.id, c1.id, "reset"),
        (c1.id, None, ""),
    ]
    assert [e.message for e in repo.refs.reflog("refs/heads/main")] == ["commit: commit 0", "commit: commit 1"]


def test_set_ref_refuses_unknown_commits_and_bad_names(repo: Repository) -> None:
    with pytest.raises(StoreError, match="no such commit"):
        repo.refs.set_ref("refs/heads/main", "f" * 64, None)
    (c,) = _commits(repo, 1)
    for bad in ["", "-x", "a..b", "a~1", "a b", "x/", ".hidden", "a:b"]:
        with pytest.raises(RefError, match="invalid branch name"):
            repo.refs.set_ref("refs/heads/" + bad, c.id, ANY)


@pytest.mark.parametrize("stale", ["none", "old"])
def test_swap_refuses_a_move_between_read_and_write(
    repo: Repository, monkeypatch: pytest.MonkeyPatch, stale: str
) -> None:
    """Another writer moves the ref after set_ref's re-read: the conditional write refuses."""
    c1, c2, c3 = _commits(repo, 3)
    if stale == "none":  # main exists, but the re-read saw no ref
        monkeypatch.setattr(repo.refs, "get", lambda name, conn=None: None)
        expected = None
    else:  # main is at c3, the re-read saw c2
        monkeypatch.setattr(repo.refs, "get", lambda name, conn=None: c2.id)
        expected = c2.id
    with pytest.raises(StoreError, match="branch main moved"):
        repo.refs.set_ref("refs/heads/main", c1.id, expected)
    monkeypatch.undo()
    assert repo.branches() == {"main": c3.id}
    assert len(repo.refs.reflog("refs/heads/main")) == 3


def test_concurrent_compare_and_swap_has_one_winner(repo: Repository) -> None:
    commits = _commits(repo, 9)
    repo.refs.set_ref("refs/heads/race", commits[0].id, None)
    start = repo.refs.get("refs/heads/race")
    results: list[str] = []

    def worker(target: str) -> None:
        with Repository.open(repo.path) as other:  # own engine, own connections
            try:
                other.refs.set_ref("refs/heads/race", target, start)
                results.append("won")
            except StoreError:
                results.append("lost")

    threads = [threading.Thread(target=worker, args=(c.id,)) for c in commits[1:]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["lost"] * 7 + ["won"]
    assert repo.refs.get("refs/heads/race") in {c.id for c in commits[1:]}


def test_resolve_branch_ancestry_and_ids(repo: Repository) -> None:
    c0, c1, c2 = _commits(repo, 3)
    assert repo.resolve("main") == c2
    assert repo.resolve("main~1") == c1
    assert repo.resolve("main~") == c1
    assert repo.resolve("main~2") == repo.resolve("main~1~1") == c0
    assert repo.resolve("main~0") == c2
    assert repo.resolve(c1.id) == c1
    assert repo.resolve(c1.id[:12].upper()) == c1
    assert repo.resolve(f"{c2.id[:8]}~2") == c0
    with pytest.raises(RefError, match="goes back past the first commit: main has only 3"):
        repo.resolve("main~3")
    with pytest.raises(RefError, match="followed by a number"):
        repo.resolve("main~x")


def test_unknown_refs_say_what_exists(repo: Repository) -> None:
    with pytest.raises(RefError, match="unknown ref 'main'.*none yet"):
        repo.resolve("main")
    _commits(repo, 1)
    with pytest.raises(
        RefError, match=r"unknown ref 'dev': not a branch, tag, alias or commit id \(branches: main\)$"
    ):
        repo.resolve("dev")
    with pytest.raises(RefError, match="at least 4 hex characters"):
        repo.resolve("abc")
    with pytest.raises(RefError, match="unknown ref 'ffff"):
        repo.resolve("ffff" * 16)
    with pytest.raises(RefError, match="empty ref"):
        repo.resolve("")


def test_ambiguous_prefix_lists_candidates(repo: Repository) -> None:
    seen: dict[str, Commit] = {}
    for i in count():  # find two commits whose ids share 4 hex digits (birthday: ~300 tries)
        c = Commit.create("0" * 64, [], f"m{i}", "a", created_at="2025-01-01T00:00:00Z")
        if (other := seen.setdefault(c.id[:4], c)) is not c:
            break
    repo.commits.add(other)
    repo.commits.add(c)
    with pytest.raises(RefError, match="ambiguous commit prefix") as info:
        repo.resolve(c.id[:4])
    assert other.id[:12] in str(info.value) and c.id[:12] in str(info.value)
    assert "type more characters" in str(info.value)
    assert repo.resolve(c.id[:20]) == c


@pytest.mark.parametrize(("ref", "expected"), [("refs/heads/main", "head"), ("refs/tags/t", None)])
def test_a_ref_never_points_at_a_commit_deleted_meanwhile(
    repo: Repository, wait_until_blocked, ref: str, expected: str | None
) -> None:
    """The target commit is deleted (as gc does) after set_ref checked it exists: refused, nothing moves.

    On PostgreSQL the check sees the commit (the delete is not committed), and the write waits for the delete,
    then meets the foreign key; on SQLite the write lock orders them.
    """
    head = _commits(repo, 1)[0]
    gone = Commit.create(head.manifest_id, [head.id], "dangling", "me")
    repo.commits.add(gone)
    before = repo.all_refs()
    errors: list[BaseException] = []

    def move() -> None:
        try:
            repo.refs.set_ref(ref, gone.id, head.id if expected else None, "reset")
        except BaseException as exc:  # noqa: BLE001 - checked below
            errors.append(exc)

    with repo.engine.begin() as gc:
        gc.execute(delete(commits_table).where(commits_table.c.id == gone.id))
        moving = threading.Thread(target=move)
        moving.start()
        wait_until_blocked(repo)
    moving.join(timeout=60)
    assert len(errors) == 1 and isinstance(errors[0], StoreError), errors
    assert re.match(rf"cannot point (branch main|tag t) at {gone.id}: no such commit", str(errors[0]))
    assert repo.all_refs() == before


def test_two_creators_of_one_branch_one_is_told_it_moved(repo: Repository, wait_until_blocked) -> None:
    """Both read "no such branch"; the second insert waits for the first, then meets the key: RefMovedError.

    On PostgreSQL that is the unique index inside a savepoint (the transaction lives on); on SQLite the write
    lock orders them and the second sees the branch on its re-read.
    """
    first, second = _commits(repo, 2)
    errors: list[BaseException] = []

    def create() -> None:
        try:
            repo.refs.set_ref("refs/heads/new", second.id, None, "branch: created")
        except BaseException as exc:  # noqa: BLE001 - checked below
            errors.append(exc)

    with repo.engine.begin() as creator:
        repo.refs.set_ref("refs/heads/new", first.id, None, "branch: created", creator)
        racing = threading.Thread(target=create)
        racing.start()
        wait_until_blocked(repo)
    racing.join(timeout=60)
    assert len(errors) == 1 and isinstance(errors[0], RefMovedError), errors
    assert str(errors[0]).startswith("branch new moved: expected (no ref)")
    assert repo.refs.get("refs/heads/new") == first.id
    assert [(e.old, e.new) for e in repo.refs.reflog("refs/heads/new")] == [(None, first.id)]
