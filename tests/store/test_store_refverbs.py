"""Branches, switch, tags, aliases with gates, reset, revert, reflog, walk, and the v1 upgrade."""

from __future__ import annotations

import json
import sqlite3

import pytest
import torch

from rewardkit.errors import RefError, RefMovedError, StoreError
from rewardkit.store import ANY, Repository
from rewardkit.store.commits import Commit
from rewardkit.store.gates import Gate

pytestmark = pytest.mark.backends()  # each test's `repo` on SQLite, then on PostgreSQL


def _commit(repo: Repository, value: float, message: str, **kwargs) -> Commit:
    return repo.commit_tensors({"w": torch.full((2,), value)}, {}, message, **kwargs)


def test_branch_switch_and_commit_advances_the_current_branch(repo: Repository) -> None:
    c0 = _commit(repo, 0, "c0")
    assert repo.current_branch() == "main"
    assert repo.create_branch("exp") == c0.id
    assert repo.switch("exp") == c0.id
    c1 = _commit(repo, 1, "on exp")
    assert repo.branches() == {"exp": c1.id, "main": c0.id}
    assert repo.resolve("HEAD") == c1 and repo.resolve("HEAD~1") == c0
    assert (repo.path / "HEAD").read_text() == "ref: refs/heads/exp\n"
    with Repository.open(repo.path) as again:  # the current branch is stored in the repository
        assert again.current_branch() == "exp"
    repo.switch("side", create=True, start="main")
    assert repo.resolve("HEAD") == c0


def test_ref_errors_are_clear_and_change_nothing(repo: Repository, snapshot) -> None:
    _commit(repo, 0, "c0")
    repo.create_tag("v1")
    before = snapshot(repo)
    for bad in ["../x", "a..b", "-rf", "HEAD", "refs/heads/x", "x.lock", "a b", ""]:
        with pytest.raises(RefError, match="invalid branch name"):
            repo.create_branch(bad)
    with pytest.raises(StoreError, match="a tag with that name exists"):
        repo.create_branch("v1")
    with pytest.raises(StoreError, match="tag 'v1' already exists .* tags never move"):
        repo.create_tag("v1", "HEAD")
    with pytest.raises(StoreError, match="cannot delete branch 'main': it is the current branch"):
        repo.delete_branch("main")
    with pytest.raises(RefError, match="no branch named 'nope'"):
        repo.switch("nope")
    with pytest.raises(RefError, match="no branch named 'nope'"):
        repo.delete_branch("nope")
    with pytest.raises(RefError, match="unknown ref 'nope'"):
        repo.create_branch("x", "nope")
    assert snapshot(repo) == before
    assert repo.current_branch() == "main"


def test_tags_never_move_and_resolve_by_name(repo: Repository) -> None:
    c0 = _commit(repo, 0, "c0")
    repo.create_tag("v1")
    _commit(repo, 1, "c1")
    assert repo.resolve("v1") == c0 and repo.resolve("refs/tags/v1") == c0
    assert repo.tags() == {"v1": c0.id}


def test_alias_gates(repo: Repository, snapshot) -> None:
    weak = _commit(repo, 0, "weak", metrics={"test/accuracy": 0.55, "validation/ece": 0.2})
    strong = _commit(repo, 1, "strong", metrics={"test/accuracy": 0.65, "validation/ece": 0.05})
    assert repo.set_alias("production", weak.id) == weak.id  # no gate
    before = snapshot(repo)
    with pytest.raises(StoreError, match=r"test/accuracy is 0.55, the gate needs >= 0.6"):
        repo.set_alias("production", weak.id, require=["test/accuracy>=0.60"])
    with pytest.raises(StoreError, match="pandalm/accuracy is not among the commit's metrics"):
        repo.set_alias("production", strong.id, require=["pandalm/accuracy>0.5"])
    with pytest.raises(StoreError, match="invalid gate 'accuracy~0.6'"):
        repo.set_alias("production", strong.id, require=["accuracy~0.6"])
    with pytest.raises(StoreError, match="invalid gate"):
        repo.set_alias("production", strong.id, require=["test/accuracy>=nan"])
    assert snapshot(repo) == before and repo.aliases() == {"production": weak.id}
    repo.set_alias("production", "HEAD", require=["test/accuracy>=0.60", "validation/ece<0.1"])
    assert repo.resolve("production") == strong
    moves = repo.reflog("production")
    assert [(m.old, m.new) for m in moves] == [(None, weak.id), (weak.id, strong.id)]
    assert "gates: test/accuracy>=0.6, validation/ece<0.1" in moves[-1].message
    assert repo.remove_alias("production") == strong.id and repo.aliases() == {}
    assert repo.reflog("production")[-1].new is None  # a removed alias keeps its reflog


def test_gate_parsing() -> None:
    assert Gate.parse("test/accuracy >= 0.6") == Gate("test/accuracy", ">=", 0.6)
    assert Gate.parse("PandaLM.jsonl/accuracy!=1") == Gate("PandaLM.jsonl/accuracy", "!=", 1.0)
    assert Gate("x", "<", 1).check({"x": True}) == "x is True, not a finite number"


def test_alias_move_is_a_compare_and_swap(repo: Repository, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = _commit(repo, 0, "a"), _commit(repo, 1, "b")
    repo.set_alias("production", a.id)
    get = repo.refs.get
    monkeypatch.setattr(repo.refs, "get", lambda name, conn=None: None if conn is None else get(name, conn))
    with pytest.raises(RefMovedError, match="alias production moved"):
        repo.set_alias("production", b.id)
    monkeypatch.undo()
    assert repo.aliases() == {"production": a.id}


def test_reset_and_revert_lose_nothing(repo: Repository) -> None:
    c0 = _commit(repo, 0, "c0", metrics={"test/accuracy": 0.6})
    c1 = _commit(repo, 1, "c1", metrics={"test/accuracy": 0.5})
    objects = repo.stats().objects
    reverted = repo.revert("HEAD")
    assert reverted.parents == [c1.id] and reverted.manifest_id == c0.manifest_id
    assert reverted.metrics == c0.metrics and reverted.params["revert"] == {"reverted": c1.id, "restored": c0.id}
    assert repo.stats().objects == objects  # no tensor copied
    assert torch.equal(repo.load_tensors("HEAD")["w"], torch.zeros(2))
    assert repo.reset("HEAD~2") == (reverted.id, c0.id)
    assert repo.resolve("main") == c0
    moves = repo.reflog("main")
    assert [m.message.split(":")[0] for m in moves] == ["commit", "commit", "revert", "reset"]
    assert moves[-1].old == reverted.id  # the reflog keeps where main was
    repo.reset(reverted.id)
    assert repo.resolve("main~1") == c1
    with pytest.raises(StoreError, match="is a root commit"):
        repo.revert(c0.id)


def test_walk_is_topological_through_merges(repo: Repository) -> None:
    base = _commit(repo, 0, "base")
    repo.switch("b", create=True)
    side = _commit(repo, 2, "side")
    repo.switch("main")
    main1 = _commit(repo, 1, "main1")
    merge = repo.commit_manifest(main1.manifest_id, "merge b", parents=[main1.id, side.id])
    order = [c.id for c in repo.log()]
    assert order[0] == merge.id and order[-1] == base.id and set(order[1:3]) == {main1.id, side.id}
    assert repo.resolve("HEAD^2") == side and repo.resolve("HEAD^") == main1 and repo.resolve("HEAD^0") == merge
    with pytest.raises(RefError, match="has 2 parent"):
        repo.resolve("HEAD^3")
    assert [c.id for c in repo.log(all=True)] == order
    with pytest.raises(StoreError, match="retry re-parents"):
        repo.commit_manifest(main1.manifest_id, "x", parents=[main1.id], retry=True)


def test_commit_retry_reparents_onto_the_moved_branch(repo: Repository, monkeypatch: pytest.MonkeyPatch) -> None:
    c0 = _commit(repo, 0, "c0")
    other = _commit(repo, 5, "other", branch="other")
    put_blob = repo.objects.put_blob

    def racing_put_blob(data: bytes, **kwargs: bool) -> str:  # another process moves main mid-commit
        repo.refs.set_ref("refs/heads/main", other.id, ANY)
        return put_blob(data, **kwargs)

    monkeypatch.setattr(repo.objects, "put_blob", racing_put_blob)
    with pytest.raises(RefMovedError, match="branch main moved.*nothing was committed: pass --retry"):
        _commit(repo, 1, "lost?")
    repo.reset(c0.id)
    landed = _commit(repo, 1, "lands", retry=True)
    assert landed.parents == [other.id] and repo.resolve("main") == landed


@pytest.mark.backends("sqlite")  # version 1 was SQLite only
def test_v1_repository_is_upgraded_on_open(repo: Repository) -> None:
    c0 = _commit(repo, 0, "c0")
    path = repo.path
    repo.close()
    with sqlite3.connect(path / "meta.db") as db:  # what a version-1 repository holds
        db.execute("update refs set name = 'main'")
        db.execute("update reflog set ref = 'main'")
    (path / "HEAD").unlink()
    (path / "config.json").write_text(json.dumps({"format": "rewardkit", "version": 1}))
    with Repository.open(path) as upgraded:
        assert upgraded.branches() == {"main": c0.id} and upgraded.current_branch() == "main"
        assert upgraded.reflog("main")[0].ref == "refs/heads/main"
    assert json.loads((path / "config.json").read_text())["version"] == 2
    assert (path / "HEAD").read_text() == "ref: refs/heads/main\n"


def test_damaged_head_is_reported(repo: Repository) -> None:
    _commit(repo, 0, "c0")
    (repo.path / "HEAD").write_text("garbage")
    with pytest.raises(StoreError, match="HEAD is damaged: expected 'ref: refs/heads/<branch>'"):
        repo.resolve("HEAD")


def test_reflog_of_unknown_ref(repo: Repository) -> None:
    with pytest.raises(RefError, match="no ref named 'x' has ever existed"):
        repo.reflog("x")


def test_revert_of_an_older_commit_keeps_later_work(repo: Repository) -> None:
    """git revert: undo only what REF changed; a later change to another tensor stays."""
    base = {"body": torch.zeros(3), "head": torch.zeros(1)}
    repo.commit_tensors(base, {}, "v0", metrics={"test/accuracy": 0.5})
    v1 = repo.commit_tensors(base | {"body": torch.ones(3)}, {}, "v1: body")
    repo.commit_tensors({"body": torch.ones(3), "head": torch.ones(1)}, {}, "v2: head", metrics={"test/accuracy": 0.7})
    reverted = repo.revert(v1.id)
    tensors = repo.load_tensors("HEAD")
    assert torch.equal(tensors["body"], torch.zeros(3)) and torch.equal(tensors["head"], torch.ones(1))
    assert reverted.metrics == {} and reverted.params == {"revert": {"reverted": v1.id, "restored": v1.parent}}
    assert reverted.message.startswith('Revert "v1: body"')


def test_revert_refuses_a_conflict_and_a_merge(repo: Repository, snapshot) -> None:
    repo.commit_tensors({"w": torch.zeros(2)}, {}, "v0")
    v1 = repo.commit_tensors({"w": torch.ones(2)}, {}, "v1")
    repo.commit_tensors({"w": torch.full((2,), 2.0)}, {}, "v2 changes w again")
    before = snapshot(repo)
    with pytest.raises(StoreError, match=r"HEAD changed 1 of the entries it changed since \(w\)"):
        repo.revert(v1.id)
    merge = repo.commit_manifest(v1.manifest_id, "merge", parents=[repo.resolve("HEAD").id, v1.id])
    with pytest.raises(StoreError, match="it is a merge"):
        repo.revert(merge.id)
    assert snapshot(repo)[1] == before[1]  # the refused reverts wrote no object


def test_concurrent_switches_never_collide(repo: Repository) -> None:
    """Two `switch` at once each write HEAD through their own temp file: no crash, HEAD always valid."""
    import threading

    _commit(repo, 0, "c0")
    repo.create_branch("a")
    errors: list[BaseException] = []

    def flip(name: str) -> None:
        try:
            for _ in range(100):
                repo.switch(name)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=flip, args=(n,)) for n in ("a", "main", "a", "main")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and repo.current_branch() in {"a", "main"}
    assert not [p for p in repo.path.iterdir() if p.name.startswith(".tmp-")]
