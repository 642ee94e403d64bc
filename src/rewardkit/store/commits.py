"""Commits: one manifest plus its history and provenance, named by a hash.

A commit id is the SHA-256 of the canonical JSON of every other field
(:func:`commit_id`), so equal commits have equal ids and any change to a field changes it.
Commits are rows of the ``commits`` table (:class:`CommitStore`), written once.
"""

from __future__ import annotations

import hashlib
import heapq
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select
from sqlalchemy.exc import IntegrityError

from rewardkit.errors import StoreError
from rewardkit.store.db import commits_table, transaction
from rewardkit.store.objects import canonical_json


def utc_now() -> str:
    """Return the current time as ISO-8601 UTC, e.g. ``2025-01-31T12:00:00.000001Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def commit_id(fields: dict[str, Any]) -> str:
    """Return the id of a commit from all of its fields except ``id``."""
    return hashlib.sha256(canonical_json(fields)).hexdigest()


@dataclass(frozen=True)
class Commit:
    """One model version.

    Attributes:
        id: SHA-256 hex of the canonical JSON of all other fields.
        manifest_id: Id of the manifest blob listing the tensors and files.
        parents: Parent commit ids, first parent first; empty for a root commit.
        message: What changed, in the author's words.
        author: Who made the commit.
        created_at: ISO-8601 UTC time, e.g. ``2025-01-31T12:00:00.000001Z``.
        params: Training parameters (JSON values).
        metrics: Evaluation results (JSON values, finite numbers).
        data_fingerprint: Fingerprint of the training data, if known.
        backbone: Name of the pretrained backbone the model started from, if any.
    """

    id: str
    manifest_id: str
    parents: list[str]
    message: str
    author: str
    created_at: str
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    data_fingerprint: str | None = None
    backbone: str | None = None

    @classmethod
    def create(
        cls,
        manifest_id: str,
        parents: list[str],
        message: str,
        author: str,
        *,
        created_at: str | None = None,
        params: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
        data_fingerprint: str | None = None,
        backbone: str | None = None,
    ) -> Commit:
        """Build a commit and compute its id; ``created_at`` defaults to now.

        Raises:
            StoreError: If ``message`` is empty, params/metrics are not JSON values, or a text
                field holds a NUL character or is longer than its column (author, data
                fingerprint, backbone: 255 characters). PostgreSQL stores neither, so no
                backend accepts them: a history reads the same on every database.
        """
        if not message.strip():
            raise StoreError("commit message is empty; say what changed, e.g. -m 'lr 1e-5'")
        for column, value in (("message", message), ("author", author), ("data_fingerprint", data_fingerprint),
                              ("backbone", backbone)):
            what = column.replace("_", " ")
            if value is not None and "\x00" in value:
                raise StoreError(f"commit {what} {value[:40]!r} holds a NUL character (\\x00); remove it")
            limit = commits_table.c[column].type.length  # type: ignore[attr-defined]
            if value is not None and limit is not None and len(value) > limit:
                raise StoreError(f"commit {what} is {len(value)} characters long; at most {limit} fit")
        fields: dict[str, Any] = {
            "manifest_id": manifest_id,
            "parents": list(parents),
            "message": message,
            "author": author,
            "created_at": created_at or utc_now(),
            # Round-trip through canonical JSON: tuples become lists, bad values fail here.
            "params": json.loads(canonical_json(params or {})),
            "metrics": json.loads(canonical_json(metrics or {})),
            "data_fingerprint": data_fingerprint,
            "backbone": backbone,
        }
        return cls(id=commit_id(fields), **fields)

    def fields(self) -> dict[str, Any]:
        """Return every field except ``id``: the content :func:`commit_id` hashes."""
        out = asdict(self)
        del out["id"]
        return out

    def __hash__(self) -> int:
        return hash(self.id)

    @property
    def parent(self) -> str | None:
        """The first parent, or None for a root commit."""
        return self.parents[0] if self.parents else None

    def object_ids(self) -> list[str]:
        """Every object this commit needs: its manifest, then its probe set and rewards.

        The probe objects are named in ``params["probe"]`` (``{"pairs": id, "rewards": id}``,
        written by ``train --commit``). gc, fsck and push go through this method, never
        through ``manifest_id`` alone.
        """
        probe = self.params.get("probe") if isinstance(self.params, dict) else None
        extra = [probe.get(k) for k in ("pairs", "rewards")] if isinstance(probe, dict) else []
        return [self.manifest_id, *(id for id in extra if isinstance(id, str))]

    def base_commits(self) -> list[str]:
        """Commits this one descends from besides its parents (its lineage): adapter and transfer bases.

        Named in ``params["adapter"]["base"]`` for a LoRA adapter, whose tensors are useless
        without the base's, and in ``params["base"]`` for a model initialised from a stored
        version (``train --init-from REF`` or ``--base-model REF``). gc and push keep them
        reachable, fsck checks they exist, ``show`` and ``log`` display them.
        """
        params = self.params if isinstance(self.params, dict) else {}
        found = [self.adapter_base(), params.get("base")]
        return list(dict.fromkeys(base for base in found if isinstance(base, str)))

    def adapter_base(self) -> str | None:
        """The commit whose tensors this one's model needs: a LoRA adapter's base, else None.

        Of the lineage (:meth:`base_commits`) only this base is needed to rebuild the model; a
        transfer base was only the starting point, so a partial clone does not fetch its tensors.
        """
        adapter = self.params.get("adapter") if isinstance(self.params, dict) else None
        base = adapter.get("base") if isinstance(adapter, dict) else None
        return base if isinstance(base, str) else None


class CommitStore:
    """Commits in the metadata database."""

    def __init__(self, engine: Engine) -> None:
        """Use the database behind ``engine`` (tables already created)."""
        self.engine = engine

    def add(self, commit: Commit, conn: Connection | None = None) -> None:
        """Write ``commit`` (a no-op if a commit with its id exists).

        Two writers adding the same commit at once (say, two fetches of one remote into a
        shared PostgreSQL database, which does not serialise them as SQLite does) both
        succeed: the second one's insert fails on the key inside a savepoint, and the row
        the first one committed is the same commit.

        Raises:
            StoreError: If ``commit.id`` does not match its fields.
        """
        if commit_id(commit.fields()) != commit.id:
            raise StoreError(
                f"commit {commit.id} does not hash to its id; build it with Commit.create"
            )
        with transaction(self.engine, conn) as c:
            if self._has(c, commit.id):
                return
            try:
                with c.begin_nested():
                    c.execute(insert(commits_table).values(**asdict(commit)))
            except IntegrityError:
                if not self._has(c, commit.id):
                    raise

    def get(self, id: str, conn: Connection | None = None) -> Commit:
        """Return commit ``id``.

        Raises:
            StoreError: If there is no such commit.
        """
        with transaction(self.engine, conn) as c:
            query = select(commits_table).where(commits_table.c.id == id)
            row = c.execute(query).mappings().first()
        if row is None:
            raise StoreError(f"commit {id} is not in the repository")
        return Commit(**row)

    def has(self, id: str, conn: Connection | None = None) -> bool:
        """Return True if commit ``id`` exists."""
        with transaction(self.engine, conn) as c:
            return self._has(c, id)

    def with_prefix(self, prefix: str, limit: int = 10) -> list[str]:
        """Return up to ``limit`` commit ids starting with ``prefix`` (lowercase hex), sorted."""
        query = (
            select(commits_table.c.id)
            .where(commits_table.c.id.startswith(prefix, autoescape=True))
            .order_by(commits_table.c.id)
            .limit(limit)
        )
        with self.engine.connect() as c:
            return list(c.execute(query).scalars())

    def walk(self, ids: Iterable[str], *, lineage: bool = False) -> list[Commit]:
        """Return every commit reachable from ``ids`` through all parents, newest first.

        The order is topological (a commit always comes before its parents, as
        ``git log --topo-order``); among commits whose children are all listed, the newest
        comes first. Used by ``log --all``/``--graph``, merge-base and gc.

        Args:
            ids: Commit ids to start from (duplicates are fine).
            lineage: Also follow :meth:`Commit.base_commits` (an adapter's base), as gc must.

        Raises:
            StoreError: If a commit on the way is missing.
        """
        found: dict[str, Commit] = {}
        stack = list(ids)
        while stack:
            id = stack.pop()
            if id not in found:
                found[id] = commit = self.get(id)
                stack.extend(_edges(commit, lineage))
        children = dict.fromkeys(found, 0)
        for commit in found.values():
            for id in set(_edges(commit, lineage)):
                children[id] += 1
        rank = {id: i for i, id in enumerate(sorted(found, key=lambda i: (found[i].created_at, i)))}
        ready = [(-rank[id], id) for id, n in children.items() if n == 0]
        heapq.heapify(ready)
        order: list[Commit] = []
        while ready:
            _, id = heapq.heappop(ready)
            order.append(found[id])
            for parent in set(_edges(found[id], lineage)):
                children[parent] -= 1
                if children[parent] == 0:
                    heapq.heappush(ready, (-rank[parent], parent))
        return order

    def count(self) -> int:
        """Return the number of commits."""
        with self.engine.connect() as c:
            return int(c.execute(select(func.count()).select_from(commits_table)).scalar_one())

    @staticmethod
    def _has(conn: Connection, id: str) -> bool:
        query = select(commits_table.c.id).where(commits_table.c.id == id)
        return conn.execute(query).first() is not None

    def all(self) -> list[Commit]:
        """Return every commit, in no particular order (fsck and gc read them all)."""
        with self.engine.connect() as c:
            return [Commit(**row) for row in c.execute(select(commits_table)).mappings()]


def _edges(commit: Commit, lineage: bool) -> list[str]:
    return [*commit.parents, *(commit.base_commits() if lineage else ())]
