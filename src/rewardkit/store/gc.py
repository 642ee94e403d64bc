"""Garbage collection: remove what no ref, tag, alias or reflog entry reaches (``rewardkit gc``).

Reachable commits are every commit :meth:`Repository.walk` reaches, through all parents
and adapter bases (``lineage=True``: a LoRA commit needs its base's tensors), from every
ref (:meth:`Repository.all_refs`: branches, tags, aliases) and from the old and new
commit of every reflog entry, so nothing a reset, a branch deletion or an alias
move left behind is lost. Used objects are everything those commits use
(:func:`used_objects`). Everything else is garbage, except what is younger than the
grace period (by file modification time for objects, by ``created_at`` for commits): a
concurrent commit's or merge's objects exist before its commit row does, and are never
collected.

gc holds the object store's write lock (the one :meth:`ObjectStore.undo_on_error` takes),
so no commit writes or reuses an object while it decides and deletes. It removes
unreachable commit rows first (one transaction, which re-checks that no ref moved onto
them), then objects, then stale ``.tmp-*`` files: killed at any point it leaves only
garbage for the next gc, never a commit without its objects.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.exc import IntegrityError

from rewardkit.errors import StoreError
from rewardkit.store.atomic import TMP_PREFIX
from rewardkit.store.commits import Commit
from rewardkit.store.db import commits_table, reflog_table, refs_table, transaction
from rewardkit.store.graph import closure
from rewardkit.store.lock import FileLock, sigterm_raises
from rewardkit.store.manifest import Manifest
from rewardkit.store.objects import LOCK_FILE, TMP_GRACE_S, ObjectStore
from rewardkit.store.repository import Repository

#: Objects and commits younger than this are never collected (seconds): 2 hours, as git's
#: ``gc.pruneExpire`` is 2 weeks for a tool whose writes take milliseconds, not weeks.
DEFAULT_GRACE_S = 7200.0


@dataclass(frozen=True)
class GcReport:
    """What :func:`gc` removed (or, with ``dry_run``, would remove).

    Attributes:
        dry_run: True if nothing was removed.
        grace_s: The grace period used, in seconds.
        reachable_commits: Commits reachable from refs and the reflog.
        kept_objects: Objects kept because a reachable commit uses them.
        young_objects: Unreachable objects kept because they are younger than ``grace_s``.
        removed_objects: Ids of the objects removed.
        bytes_freed: Total size of the removed object files, in bytes.
        removed_commits: Ids of the unreachable commits removed.
        removed_temp_files: Paths (relative to the repository) of the ``.tmp-*`` files removed.
        expired_reflog_entries: Reflog entries older than ``expire_reflog_s`` dropped first
            (``git reflog expire``), so what only they reached can be collected.
    """

    dry_run: bool
    grace_s: float
    reachable_commits: int = 0
    kept_objects: int = 0
    young_objects: int = 0
    removed_objects: list[str] = field(default_factory=list)
    bytes_freed: int = 0
    removed_commits: list[str] = field(default_factory=list)
    removed_temp_files: list[str] = field(default_factory=list)
    expired_reflog_entries: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def gc(repo: Repository, grace_s: float = DEFAULT_GRACE_S, dry_run: bool = False,
       expire_reflog_s: float | None = None) -> GcReport:
    """Remove the objects and commits that nothing reaches, and stale temp files.

    Args:
        repo: The repository.
        grace_s: Keep anything younger than this many seconds (0: collect everything
            unreachable; only safe when no other process writes to the repository).
        dry_run: Report what would be removed, remove nothing.
        expire_reflog_s: First drop reflog entries older than this many seconds (``git reflog
            expire``; git's default is 90 days), so a deleted branch or a reset-away commit
            that only they reach is collected too. None: keep the whole reflog, so gc
            removes only what nothing ever pointed to (a killed operation's leftovers).

    Returns:
        What was (or would be) removed.

    Raises:
        StoreError: If ``grace_s`` is negative, or the repository is damaged (a ref or
            reflog entry names a missing commit, a reachable manifest is missing or
            corrupt: run ``rewardkit fsck``); nothing is removed then.
    """
    for what, value in (("grace period", grace_s), ("reflog expiry", expire_reflog_s)):
        if value is not None and not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
            raise StoreError(f"gc {what} must be a non-negative number of seconds, got {value!r}")
    root = repo.objects.root
    root.mkdir(parents=True, exist_ok=True)
    with sigterm_raises(), FileLock(root / LOCK_FILE, f"object store {root}") as lock:
        now = time.time()
        cutoff = None if expire_reflog_s is None else _iso(now - expire_reflog_s)
        try:
            live = repo.walk(sorted(roots(repo, since=cutoff)), lineage=True)
            live_ids = {c.id for c in live}
            dead = [c for c in repo.commits.all() if c.id not in live_ids]
            young = [c for c in dead if now - _timestamp(c.created_at) < grace_s]
            keep = used_objects(repo.objects, _fetched(repo, [*live, *young]))
        except StoreError as exc:
            raise StoreError(f"gc removed nothing: the repository is damaged ({exc}); run `rewardkit fsck`") from exc
        doomed_commits = sorted(c.id for c in dead if c not in young)
        old: list[tuple[str, int]] = []
        young_objects: list[str] = []
        for id in repo.objects.ids():
            if id in keep:
                continue
            try:
                stat = repo.objects.path(id).stat()
            except FileNotFoundError:
                continue
            if now - stat.st_mtime < grace_s:
                young_objects.append(id)
            else:
                old.append((id, stat.st_size))
        n_young = len(young_objects)
        needed = _closure(repo.objects, young_objects)  # a young delta object needs its (maybe old) base
        doomed = [(id, size) for id, size in old if id not in needed]
        temp_files = _stale_temp_files(repo, now - min(grace_s, TMP_GRACE_S))
        n_expired = 0 if cutoff is None else sum(e.time < cutoff for e in repo.reflog(None))
        if not dry_run:
            if not lock.held():
                raise StoreError(f"gc removed nothing: the write lock of {root} was taken over while this process "
                                 "was stopped; run gc again")
            if cutoff is not None:
                n_expired = _expire_reflog(repo, cutoff)
            _remove_commits(repo, doomed_commits)
            for id, _ in doomed:
                repo.objects.delete(id)
            for tmp in temp_files:
                tmp.unlink(missing_ok=True)
    return GcReport(
        dry_run=dry_run,
        grace_s=float(grace_s),
        reachable_commits=len(live),
        kept_objects=len(keep),
        young_objects=n_young,
        removed_objects=sorted(id for id, _ in doomed),
        bytes_freed=sum(size for _, size in doomed),
        removed_commits=doomed_commits,
        removed_temp_files=[str(t.relative_to(repo.path)) for t in temp_files],
        expired_reflog_entries=n_expired,
    )


def roots(repo: Repository, since: str | None = None) -> set[str]:
    """Return the commit ids every ref names and every reflog entry's old and new commit.

    Args:
        repo: The repository.
        since: Only reflog entries at or after this ISO-8601 UTC time (None: all).
    """
    ids = set(repo.all_refs().values())
    for entry in repo.reflog(None):
        if since is None or entry.time >= since:
            ids.update(id for id in (entry.old, entry.new) if id is not None)
    return ids


def _iso(timestamp: float) -> str:
    """A Unix time in the reflog's format (:func:`rewardkit.store.commits.utc_now`)."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _expire_reflog(repo: Repository, cutoff: str) -> int:
    """Delete the reflog entries older than ``cutoff`` (ISO-8601 UTC); return how many."""
    with transaction(repo.engine) as conn:
        return conn.execute(delete(reflog_table).where(reflog_table.c.time < cutoff)).rowcount


def _closure(objects: ObjectStore, ids: Iterable[str]) -> set[str]:
    """Return ``ids`` and everything they need to be read, transitively (unreadable ones skipped)."""

    def edges(id: str) -> list[str]:
        try:
            return objects.dependencies(id)
        except StoreError:
            return []

    return closure(ids, edges)


def _fetched(repo: Repository, commits: list[Commit]) -> list[Commit]:
    """``commits``, less those a partial clone never fetched the model of (they use no local object)."""
    from rewardkit.store.remote.partial import partial_clone  # fsspec: only needed here

    if partial_clone(repo.path) is None:
        return commits
    return [c for c in commits if repo.objects.has(c.manifest_id)]


def used_objects(objects: ObjectStore, commits: Iterable[Commit], *, intact: set[str] | None = None) -> set[str]:
    """Return every object ``commits`` use.

    That is each commit's :meth:`Commit.object_ids` (its manifest, probe set...), each
    manifest's tensors and files, and everything those need
    (:meth:`ObjectStore.dependencies`), transitively.

    Args:
        objects: The object store.
        commits: The commits.
        intact: Read only objects in this set (fsck passes the intact ones and reports the
            rest itself); None reads every manifest and raises if one cannot be read.

    Raises:
        StoreError: If ``intact`` is None and a manifest is missing or corrupt.
    """
    todo: list[str] = []
    for c in commits:
        todo.extend(c.object_ids())
        if intact is not None and c.manifest_id not in intact:
            continue
        try:
            manifest = Manifest.from_bytes(objects.get_bytes(c.manifest_id, verify=True))
        except StoreError as exc:
            if intact is not None:
                continue
            raise StoreError(f"manifest {c.manifest_id} of commit {c.id}: {exc}") from exc
        todo.extend(e.id for e in manifest.tensors.values())
        todo.extend(manifest.files.values())
    return closure(todo, lambda id: objects.dependencies(id) if intact is None or id in intact else ())


def _remove_commits(repo: Repository, ids: list[str]) -> None:
    """Delete unreachable commit rows, in one transaction that re-checks nothing points to them.

    Raises:
        StoreError: If a ref or reflog entry now names one of them (moved there during gc; on
            PostgreSQL a move committed while the delete ran is caught by the refs' foreign key).
    """
    if not ids:
        return
    with transaction(repo.engine) as conn:
        named = conn.execute(select(refs_table.c.name).where(refs_table.c.commit_id.in_(ids))).first()
        logged = conn.execute(
            select(reflog_table.c.ref).where(or_(reflog_table.c.old.in_(ids), reflog_table.c.new.in_(ids)))
        ).first()
        if named or logged:
            raise StoreError(f"gc removed nothing: {(named or logged)[0]} moved onto an unreachable commit while gc "
                             "ran; run gc again")
        try:
            conn.execute(delete(commits_table).where(commits_table.c.id.in_(ids)))
        except IntegrityError as exc:  # PostgreSQL's foreign key: a ref moved there after the check above
            raise StoreError("gc removed nothing: a ref moved onto an unreachable commit while gc ran; run gc "
                             "again") from exc


def temp_files(path: Path, objects: ObjectStore) -> list[Path]:
    """Every ``.tmp-*`` file in the repository folder ``path`` and in the object fan-out folders, sorted."""
    return sorted([*path.glob(f"{TMP_PREFIX}*"), *objects.root.glob(f"*/{TMP_PREFIX}*")])


def _stale_temp_files(repo: Repository, cutoff: float) -> list[Path]:
    """The ``.tmp-*`` files last modified before ``cutoff`` (Unix time)."""
    stale = []
    for tmp in temp_files(repo.path, repo.objects):
        try:
            if tmp.stat().st_mtime < cutoff:
                stale.append(tmp)
        except FileNotFoundError:  # renamed into place or removed meanwhile
            continue
    return stale


def _timestamp(created_at: str) -> float:
    """Unix time of a commit's ``created_at`` (ISO-8601 UTC, e.g. ``2025-01-31T12:00:00.000001Z``)."""
    return datetime.strptime(created_at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
