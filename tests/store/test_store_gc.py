"""gc removes exactly what no ref, tag, alias or reflog entry reaches, and nothing younger than its grace period."""

from __future__ import annotations

import os
import threading
import time

import pytest
import torch
from sqlalchemy import delete

from rewardkit.errors import StoreError
from rewardkit.store import Commit, Repository
from rewardkit.store.db import reflog_table, transaction
from rewardkit.store.fsck import fsck
from rewardkit.store.gc import gc
from rewardkit.store.lock import FileLock
from rewardkit.store.objects import LOCK_FILE

pytestmark = pytest.mark.backends()  # each test's `repo` on SQLite, then on PostgreSQL

HOUR = 3600.0


def _age(repo: Repository, ids: list[str], seconds: float) -> None:
    """Make objects look ``seconds`` old (gc judges them by modification time)."""
    stamp = time.time() - seconds
    for id in ids:
        os.utime(repo.objects.path(id), (stamp, stamp))


def _age_all(repo: Repository, seconds: float) -> None:
    _age(repo, list(repo.objects.ids()), seconds)


def test_gc_removes_an_orphan_object_and_keeps_every_reachable_one(repo: Repository, tiny_tensors) -> None:
    repo.commit_tensors(tiny_tensors(0), {"config.json": b"{}"}, "first")
    repo.commit_tensors(tiny_tensors(1), {"config.json": b"{}"}, "second")
    orphan = repo.objects.put_tensor(torch.arange(1000.0))  # a killed commit's object
    _age_all(repo, 3 * HOUR)
    before = set(repo.objects.ids())

    dry = gc(repo, dry_run=True)
    assert dry.removed_objects == [orphan.id] and set(repo.objects.ids()) == before
    report = gc(repo)
    assert report.removed_objects == [orphan.id] and not report.dry_run
    assert report.bytes_freed == len(b"tensor F32 [1000] 4000\0") + 4000
    assert set(repo.objects.ids()) == before - {orphan.id}
    assert fsck(repo).findings == []
    for ref in ("main", "main~1"):
        repo.load_tensors(ref)  # every reachable object is there, intact


def test_gc_keeps_unreachable_objects_younger_than_the_grace_period(repo: Repository, tiny_tensors) -> None:
    """A concurrent commit's or merge's objects exist before its commit row: the grace period keeps them."""
    repo.commit_tensors(tiny_tensors(0), {}, "first")
    _age_all(repo, 3 * HOUR)
    in_flight = repo.objects.put_tensor(torch.arange(5.0)).id  # written just now, not committed yet
    report = gc(repo)
    assert report.removed_objects == [] and report.young_objects == 1 and repo.objects.has(in_flight)
    assert gc(repo, grace_s=0).removed_objects == [in_flight]


def test_what_only_the_reflog_reaches_is_kept(repo: Repository, tiny_tensors) -> None:
    """A branch moved back (a reset) leaves its old commit in the reflog: gc keeps it, checkout still works."""
    first = repo.commit_tensors(tiny_tensors(0), {}, "first")
    second = repo.commit_tensors(tiny_tensors(1), {}, "second")
    repo.reset(first.id)
    _age_all(repo, 3 * HOUR)
    assert gc(repo).removed_objects == []
    assert torch.equal(repo.load_tensors(second.id)["embed.weight"], tiny_tensors(1)["embed.weight"])


def test_an_unreachable_commit_and_its_objects_are_removed_after_the_grace_period(
    repo: Repository, tiny_tensors
) -> None:
    first = repo.commit_tensors(tiny_tensors(0), {}, "first")
    second = repo.commit_tensors(tiny_tensors(1), {}, "second")
    repo.reset(first.id)
    with transaction(repo.engine) as conn:  # the reflog forgets second (as an expired reflog would)
        conn.execute(delete(reflog_table).where(reflog_table.c.new == second.id))
        conn.execute(delete(reflog_table).where(reflog_table.c.old == second.id))
    only_second = set(repo.objects.ids()) - set(_objects_of(repo, first))
    _age_all(repo, 3 * HOUR)
    assert gc(repo).removed_commits == []  # second was made just now: within the grace period
    old = Commit.create(second.manifest_id, second.parents, "old", "me", created_at="2020-01-01T00:00:00.000000Z")
    repo.commits.add(old)
    report = gc(repo, grace_s=0)
    assert set(report.removed_commits) == {second.id, old.id}
    assert set(report.removed_objects) == only_second
    assert not repo.commits.has(second.id) and repo.commits.has(first.id)
    assert fsck(repo).findings == []


def _objects_of(repo: Repository, commit: Commit) -> list[str]:
    manifest = repo.manifest(commit)
    return [commit.manifest_id, *(e.id for e in manifest.tensors.values()), *manifest.files.values()]


def test_gc_keeps_what_a_kept_object_depends_on(repo: Repository, tiny_tensors, monkeypatch) -> None:
    """A compressed object stored as a delta needs its base: gc keeps the base (ObjectStore.dependencies)."""
    commit = repo.commit_tensors(tiny_tensors(0), {}, "first")
    base = repo.objects.put_tensor(torch.arange(9.0)).id  # no commit lists it
    head = repo.manifest(commit).tensors["head.weight"].id
    monkeypatch.setattr(repo.objects, "dependencies", lambda id: [base] if id == head else [], raising=False)
    _age_all(repo, 3 * HOUR)
    assert gc(repo, grace_s=0).removed_objects == []
    assert fsck(repo).findings == []
    repo.objects.delete(base)
    assert [(f.problem, f.name) for f in fsck(repo).errors] == [("missing", base)]


def test_gc_refuses_a_damaged_repository_and_removes_nothing(repo: Repository, tiny_tensors) -> None:
    commit = repo.commit_tensors(tiny_tensors(0), {}, "first")
    orphan = repo.objects.put_tensor(torch.arange(3.0)).id
    repo.objects.delete(commit.manifest_id)
    with pytest.raises(StoreError, match=f"gc removed nothing: .*manifest {commit.manifest_id}.*rewardkit fsck"):
        gc(repo, grace_s=0)
    assert repo.objects.has(orphan)


def test_gc_removes_stale_temp_files(repo: Repository, tiny_tensors) -> None:
    repo.commit_tensors(tiny_tensors(0), {}, "first")
    fan = next(p for p in repo.objects.root.iterdir() if p.is_dir())
    stale, young = fan / ".tmp-killed", fan / ".tmp-writing"
    stale.write_bytes(b"x")
    young.write_bytes(b"y")
    old = time.time() - 2 * HOUR
    os.utime(stale, (old, old))
    report = gc(repo)
    assert report.removed_temp_files == [str(stale.relative_to(repo.path))]
    assert not stale.exists() and young.exists()


def test_gc_waits_for_the_object_store_lock(repo: Repository, tiny_tensors) -> None:
    """A commit holds the lock while it writes objects and its row: gc never sees it half done."""
    repo.commit_tensors(tiny_tensors(0), {}, "first")
    holding = threading.Event()

    def commit_in_progress() -> None:
        with FileLock(repo.objects.root / LOCK_FILE, "test"):
            holding.set()
            time.sleep(0.5)

    thread = threading.Thread(target=commit_in_progress)
    thread.start()
    assert holding.wait(5)
    start = time.monotonic()
    gc(repo, grace_s=0)
    assert time.monotonic() - start >= 0.4
    thread.join()


def test_gc_refuses_a_negative_grace_period(repo: Repository) -> None:
    with pytest.raises(StoreError, match="non-negative"):
        gc(repo, grace_s=-1)


def test_what_only_a_deleted_branch_tag_or_alias_reached_is_kept(repo: Repository, tiny_tensors) -> None:
    repo.commit_tensors(tiny_tensors(0), {}, "first")
    repo.create_branch("exp")
    on_exp = repo.commit_tensors(tiny_tensors(1), {}, "on exp", branch="exp")
    repo.create_tag("v1", on_exp.id)
    repo.set_alias("production", on_exp.id)
    repo.delete_branch("exp")
    _age_all(repo, 3 * HOUR)
    assert gc(repo, grace_s=0).removed_objects == []  # the tag and the alias reach it
    repo.remove_alias("production")
    assert gc(repo, grace_s=0).removed_objects == []  # and the reflog still does
    assert torch.equal(repo.load_tensors(on_exp.id)["embed.weight"], tiny_tensors(1)["embed.weight"])


def test_an_adapter_commit_keeps_its_base(repo: Repository, tiny_tensors) -> None:
    """A LoRA commit needs its base commit's tensors (params["adapter"]["base"]), even when nothing else reaches it."""
    base = repo.commit_tensors(tiny_tensors(0), {}, "base", branch="base")
    adapter = repo.commit_tensors({"lora_A": torch.ones(2, 4)}, {}, "adapter", branch="lora",
                                  params={"adapter": {"base": base.id}})
    repo.switch("lora")
    repo.delete_branch("base")
    with transaction(repo.engine) as conn:  # and the reflog forgot it
        conn.execute(delete(reflog_table).where(reflog_table.c.ref == "refs/heads/base"))
    _age_all(repo, 3 * HOUR)
    report = gc(repo, grace_s=0)
    assert report.removed_objects == [] and report.removed_commits == []
    assert repo.commits.has(base.id) and repo.load_tensors(base.id)
    assert fsck(repo).findings == [] and adapter.base_commits() == [base.id]


def test_a_reused_old_dangling_object_is_young_again(repo: Repository) -> None:
    """A merge reuses an old dangling object before its commit lands: dedup refreshes its time, as git does."""
    old = repo.objects.put_tensor(torch.arange(2000.0)).id  # left by an earlier, abandoned operation
    _age(repo, [old], 3 * HOUR)
    assert repo.objects.put_tensor(torch.arange(2000.0)).id == old  # reused by dedup, not rewritten
    assert gc(repo).removed_objects == [] and repo.objects.has(old)


def test_a_young_delta_object_keeps_its_old_base(repo: Repository) -> None:
    base = repo.objects.put_tensor(torch.linspace(0, 1, 4096)).id
    _age(repo, [base], 3 * HOUR)
    delta = repo.objects.put_tensor(torch.linspace(0, 1, 4096) + 1e-4, delta_base=base).id
    assert repo.objects.dependencies(delta) == [base]  # stored as a delta (compression pays here)
    assert gc(repo).removed_objects == [] and repo.objects.has(base)
    assert torch.equal(repo.objects.get_tensor(delta, verify=True), torch.linspace(0, 1, 4096) + 1e-4)


def _age_reflog(repo: Repository, seconds: float) -> None:
    """Make every reflog entry look ``seconds`` old."""
    from datetime import UTC, datetime

    from sqlalchemy import update

    stamp = datetime.fromtimestamp(time.time() - seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    with transaction(repo.engine) as conn:
        conn.execute(update(reflog_table).values(time=stamp))


def test_expire_reflog_lets_gc_collect_a_deleted_branch(repo: Repository, tiny_tensors) -> None:
    first = repo.commit_tensors(tiny_tensors(0), {}, "first")
    repo.create_branch("exp")
    on_exp = repo.commit_tensors(tiny_tensors(1), {}, "on exp", branch="exp")
    repo.delete_branch("exp")
    _age_all(repo, 100 * 86400)
    _age_reflog(repo, 100 * 86400)
    assert gc(repo, grace_s=0, expire_reflog_s=200 * 86400).removed_commits == []  # younger than the expiry
    dry = gc(repo, grace_s=0, expire_reflog_s=90 * 86400, dry_run=True)
    assert dry.removed_commits == [on_exp.id] and dry.expired_reflog_entries == 4 and len(repo.reflog()) == 4
    report = gc(repo, grace_s=0, expire_reflog_s=90 * 86400)
    assert report.removed_commits == [on_exp.id] and report.expired_reflog_entries == 4
    assert repo.reflog() == [] and repo.branches() == {"main": first.id}  # refs themselves stay
    assert fsck(repo).ok and torch.equal(repo.load_tensors("main")["embed.weight"], tiny_tensors(0)["embed.weight"])
    with pytest.raises(StoreError, match="reflog expiry must be a non-negative number"):
        gc(repo, expire_reflog_s=-1)


def test_gc_keeps_the_base_an_init_from_commit_names_in_its_lineage(repo: Repository, tiny_tensors) -> None:
    """A model initialised from a stored version (params["base"]) keeps that version reachable, as an adapter does."""
    base = repo.commit_tensors(tiny_tensors(0), {}, "base", move_branch=False)  # on no branch: lineage only
    tuned = repo.commit_tensors(tiny_tensors(1), {}, "tuned", params={"base": base.id})
    assert tuned.parents == [] and tuned.base_commits() == [base.id]
    _age_all(repo, 3 * HOUR)
    report = gc(repo, grace_s=0)
    assert base.id not in report.removed_commits and repo.commits.has(base.id)
    assert fsck(repo).findings == []


def test_gc_removes_nothing_when_a_ref_moves_onto_a_doomed_commit_meanwhile(
    repo: Repository, tiny_tensors, backend: str, wait_until_blocked
) -> None:
    """A reset onto an old unreachable commit, committed while gc deletes it: the commit stays, gc says so.

    On PostgreSQL gc does not see the uncommitted move, and its delete waits for it, then meets the foreign key.
    """
    first = repo.commit_tensors(tiny_tensors(0), {}, "first")
    old = Commit.create(first.manifest_id, [first.id], "old", "me", created_at="2020-01-01T00:00:00.000000Z")
    repo.commits.add(old)  # reached by nothing, older than any grace period
    outcome: list[object] = []

    def collect() -> None:
        try:
            outcome.append(gc(repo, grace_s=0))
        except StoreError as exc:
            outcome.append(exc)

    with repo.engine.begin() as mover:
        repo.refs.set_ref("refs/heads/main", old.id, first.id, "reset: moving to old", mover)
        collecting = threading.Thread(target=collect)
        collecting.start()
        wait_until_blocked(repo)
    collecting.join(timeout=60)
    assert repo.branches() == {"main": old.id} and repo.commits.has(old.id)
    if backend == "postgresql":
        assert isinstance(outcome[0], StoreError) and str(outcome[0]) == (
            "gc removed nothing: a ref moved onto an unreachable commit while gc ran; run gc again")
    else:  # gc waited for the write lock, then saw the move
        assert outcome[0].removed_commits == []  # type: ignore[union-attr]
    assert fsck(repo).ok
