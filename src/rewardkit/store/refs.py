"""Refs (branches) and ref resolution.

Every ref move goes through :meth:`Refs.set_ref`, a compare-and-swap in one database
transaction: re-read the ref, refuse if it is not what the caller expected, write, and
append to the reflog. :func:`resolve` turns what a user types (``main``, ``main~2``,
``3f2a9c``) into one commit id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Final

from sqlalchemy import Connection, Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from rewardkit.errors import RefError, StoreError
from rewardkit.store.commits import CommitStore, utc_now
from rewardkit.store.db import commits_table, reflog_table, refs_table, transaction

MIN_PREFIX = 4
_HEX_RE = re.compile(r"^[0-9a-fA-F]+$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._/-]*$")


class _Any(Enum):
    ANY = "ANY"


#: ``expected_old`` for :meth:`Refs.set_ref` meaning "whatever it is now" (a plain set).
ANY: Final = _Any.ANY


@dataclass(frozen=True)
class ReflogEntry:
    """One move of a ref.

    Attributes:
        ref: Ref name.
        old: Commit id before the move (None if the ref was created).
        new: Commit id after the move (None if the ref was deleted).
        message: Why it moved, e.g. ``"commit: lr 1e-5"``.
        time: ISO-8601 UTC time of the move.
    """

    ref: str
    old: str | None
    new: str | None
    message: str
    time: str


def check_ref_name(name: str) -> str:
    """Return ``name`` if it is a valid branch name (like git's rules, simplified).

    Raises:
        RefError: If the name is empty, starts with ``-``/``.``, or contains ``..``, ``~``,
            ``^``, ``:``, spaces, or a trailing ``/``/``.lock``.
    """
    if (
        not _NAME_RE.match(name)
        or ".." in name
        or "//" in name
        or name.endswith(("/", ".", ".lock"))
    ):
        raise RefError(
            f"invalid branch name {name!r}: use letters, digits, '.', '_', '-' and '/', "
            "e.g. 'main' or 'exp/lr-1e-5'"
        )
    return name


class Refs:
    """Branches in the metadata database, with their reflog."""

    def __init__(self, engine: Engine) -> None:
        """Use the database behind ``engine`` (tables already created)."""
        self.engine = engine

    def get(self, name: str, conn: Connection | None = None) -> str | None:
        """Return the commit id ``name`` points to, or None if there is no such ref."""
        with transaction(self.engine, conn) as c:
            query = select(refs_table.c.commit_id).where(refs_table.c.name == name)
            return c.execute(query).scalar_one_or_none()

    def as_dict(self) -> dict[str, str]:
        """Return every ref name -> commit id, sorted by name."""
        with self.engine.connect() as c:
            rows = c.execute(select(refs_table).order_by(refs_table.c.name)).all()
        return {name: commit for name, commit in rows}

    def set_ref(
        self,
        name: str,
        new: str | None,
        expected_old: str | None | _Any,
        message: str = "",
        conn: Connection | None = None,
    ) -> None:
        """Move ref ``name`` to ``new`` if it still points to ``expected_old``.

        The one way refs move. In one transaction: re-read the ref, compare, write (by a
        conditional update, so the check holds on any database), append to the reflog.

        Args:
            name: Ref name, e.g. ``"main"``.
            new: Commit id to point to (must exist), or None to delete the ref.
            expected_old: The commit id the caller last read; None: the ref must not exist;
                :data:`ANY`: move it whatever it points to.
            message: Reflog message, e.g. ``"commit: lr 1e-5"``.
            conn: Run inside this connection's transaction instead of a new one.

        Raises:
            StoreError: If the ref moved (is not ``expected_old``), or ``new`` is not a commit.
            RefError: If ``name`` is not a valid ref name.
        """
        check_ref_name(name)
        with transaction(self.engine, conn) as c:
            old = self.get(name, c)
            if expected_old is not ANY and old != expected_old:
                raise StoreError(
                    f"ref {name} moved: expected {expected_old or '(no ref)'}, "
                    f"found {old or '(no ref)'}; another process updated it, "
                    "re-read it and try again"
                )
            if new is not None and not _commit_exists(c, new):
                raise StoreError(f"cannot point ref {name} at {new}: no such commit")
            if not _swap(c, name, old, new):
                raise StoreError(
                    f"ref {name} moved: expected {old or '(no ref)'} while updating it; "
                    "another process updated it, re-read it and try again"
                )
            c.execute(
                insert(reflog_table).values(
                    ref=name, old=old, new=new, message=message, time=utc_now()
                )
            )

    def reflog(self, name: str) -> list[ReflogEntry]:
        """Return the moves of ref ``name``, oldest first."""
        query = (
            select(
                reflog_table.c.ref,
                reflog_table.c.old,
                reflog_table.c.new,
                reflog_table.c.message,
                reflog_table.c.time,
            )
            .where(reflog_table.c.ref == name)
            .order_by(reflog_table.c.seq)
        )
        with self.engine.connect() as c:
            return [ReflogEntry(**row) for row in c.execute(query).mappings()]


def _commit_exists(conn: Connection, id: str) -> bool:
    query = select(commits_table.c.id).where(commits_table.c.id == id)
    return conn.execute(query).first() is not None


def _swap(conn: Connection, name: str, old: str | None, new: str | None) -> bool:
    """Replace ``old`` by ``new`` in one statement; False if another writer got there first."""
    if old is None and new is None:
        return True
    if old is None:
        try:
            with conn.begin_nested():
                conn.execute(insert(refs_table).values(name=name, commit_id=new))
        except IntegrityError:
            return False
        return True
    where = (refs_table.c.name == name) & (refs_table.c.commit_id == old)
    if new is None:
        return conn.execute(delete(refs_table).where(where)).rowcount == 1
    return conn.execute(update(refs_table).where(where).values(commit_id=new)).rowcount == 1


def resolve(spec: str, refs: Refs, commits: CommitStore) -> str:
    """Return the commit id that ``spec`` names.

    Args:
        spec: A branch (``main``), a full commit id or a unique prefix of at least
            4 hex characters, optionally followed by ``~N`` (the N-th first-parent
            ancestor; ``~`` alone means ``~1``), e.g. ``main~2``.
        refs: Where branches live.
        commits: Where commits live.

    Raises:
        RefError: If ``spec`` names no commit, an ambiguous prefix, or goes back past
            the first commit.
    """
    base, tilde, tail = spec.strip().partition("~")
    steps = 0
    for part in tail.split("~") if tilde else ():
        if part and not part.isdigit():
            raise RefError(f"invalid ref {spec!r}: '~' must be followed by a number, e.g. main~2")
        steps += int(part) if part else 1
    id = _resolve_base(base, refs, commits)
    for walked in range(steps):
        parent = commits.get(id).parent
        if parent is None:
            raise RefError(
                f"{spec!r} goes back past the first commit: {base} has only {walked + 1} "
                f"commit(s) in its first-parent history; use {base}~{walked} at most"
            )
        id = parent
    return id


def _resolve_base(base: str, refs: Refs, commits: CommitStore) -> str:
    if not base:
        raise RefError("empty ref: give a branch name or a commit id, e.g. main or main~1")
    branch = refs.get(base)
    if branch is not None:
        return branch
    if _HEX_RE.match(base) and len(base) >= MIN_PREFIX:
        matches = commits.with_prefix(base.lower(), limit=11)
        if len(matches) == 1:
            return matches[0]
        if matches:
            many = len(matches) > 10
            shown = ", ".join(m[:12] for m in matches[:10]) + (", …" if many else "")
            number = "more than 10" if many else str(len(matches))
            raise RefError(
                f"ambiguous commit prefix {base!r} matches {number} commits ({shown}); "
                "type more characters of the id"
            )
    names = ", ".join(refs.as_dict()) or "none yet; commit a model first"
    hint = (
        f"; commit id prefixes need at least {MIN_PREFIX} hex characters"
        if _HEX_RE.match(base) and len(base) < MIN_PREFIX
        else ""
    )
    raise RefError(f"unknown ref {base!r}: not a branch or commit id (branches: {names}){hint}")
