"""Refs (branches, tags, aliases) and ref resolution.

Refs have git's full names: ``refs/heads/<branch>``, ``refs/tags/<tag>`` and
``refs/aliases/<alias>`` (MLflow-style deployment names such as ``production``). Every ref
move goes through :meth:`Refs.set_ref`, a compare-and-swap in one database transaction:
re-read the ref, refuse if it is not what the caller expected, write, and append to the
reflog. :func:`resolve` turns what a user types (``main``, ``v1``, ``production``,
``HEAD~2``, ``main^2``, ``3f2a9c``) into one commit id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Final

from sqlalchemy import Connection, Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from rewardkit.errors import RefError, RefMovedError, StoreError
from rewardkit.store.commits import CommitStore, utc_now
from rewardkit.store.db import commits_table, reflog_table, refs_table, transaction

MIN_PREFIX = 4
_HEX_RE = re.compile(r"^[0-9a-fA-F]+$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._/-]*$")
_SUFFIX_RE = re.compile(r"([~^])(\d*)")

HEADS: Final = "refs/heads/"
TAGS: Final = "refs/tags/"
ALIASES: Final = "refs/aliases/"
REMOTES: Final = "refs/remotes/"
#: Kind of ref -> prefix of its full name, in the order a short name is looked up.
KINDS: Final = {"branch": HEADS, "tag": TAGS, "alias": ALIASES, "remote-tracking branch": REMOTES}
HEAD: Final = "HEAD"


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


def check_ref_name(name: str, kind: str = "branch") -> str:
    """Return ``name`` if it is a valid short ref name (git's rules, simplified).

    Args:
        name: A short name, e.g. ``main``, ``exp/lr-1e-5``, ``v1.0``, ``production``.
        kind: What it names (``branch``, ``tag``, ``alias``), for the message.

    Raises:
        RefError: If the name is empty, starts with ``-``/``.``, contains ``..``, ``~``,
            ``^``, ``:``, spaces or ``//``, ends with ``/``, ``.`` or ``.lock``, is ``HEAD``,
            or starts with ``refs/``.
    """
    if (
        not _NAME_RE.match(name)
        or ".." in name
        or "//" in name
        or "/." in name
        or name.endswith(("/", ".", ".lock"))
        or name == HEAD
        or name.startswith("refs/")
    ):
        raise RefError(
            f"invalid {kind} name {name!r}: use letters, digits, '.', '_', '-' and '/', "
            "not starting with '-' or '.', without '..', e.g. 'main', 'exp/lr-1e-5' or 'v1.0'"
        )
    return name


def check_full_name(full: str) -> str:
    """Return ``full`` if it is a full ref name (``refs/heads/main``) with a valid short name.

    Raises:
        RefError: If the prefix is not one of :data:`KINDS`, the short name is invalid, or
            the full name is longer than the refs table holds (255 characters).
    """
    for kind, prefix in KINDS.items():
        if full.startswith(prefix):
            check_ref_name(full[len(prefix):], kind)
            limit = refs_table.c.name.type.length  # type: ignore[attr-defined]
            if len(full) > limit:
                raise RefError(f"{kind} name {full[len(prefix):][:40]}… is too long: {full} has {len(full)} "
                               f"characters, at most {limit} fit")
            return full
    raise RefError(
        f"invalid ref {full!r}: expected refs/heads/, refs/tags/, refs/aliases/ or refs/remotes/ followed by a name"
    )


def short_name(full: str) -> str:
    """Return the short name of a full ref name (``refs/heads/main`` -> ``main``)."""
    for prefix in KINDS.values():
        if full.startswith(prefix):
            return full[len(prefix):]
    return full


def kind_of(full: str) -> str:
    """Return the kind of a full ref name: ``branch``, ``tag``, ``alias`` or ``remote-tracking branch``."""
    return next((kind for kind, prefix in KINDS.items() if full.startswith(prefix)), "ref")


class Refs:
    """Refs (full names, e.g. ``refs/heads/main``) in the metadata database, with their reflog."""

    def __init__(self, engine: Engine) -> None:
        """Use the database behind ``engine`` (tables already created)."""
        self.engine = engine

    def get(self, name: str, conn: Connection | None = None) -> str | None:
        """Return the commit id the full ref ``name`` points to, or None if there is no such ref."""
        with transaction(self.engine, conn) as c:
            query = select(refs_table.c.commit_id).where(refs_table.c.name == name)
            return c.execute(query).scalar_one_or_none()

    def as_dict(self, prefix: str = "refs/") -> dict[str, str]:
        """Return full ref name -> commit id for every ref under ``prefix``, sorted by name.

        Sorted here, by code point, not by the database: a PostgreSQL database's collation
        (``en_US.UTF-8``: ``a`` before ``B``) would order names unlike SQLite.
        """
        query = select(refs_table).where(refs_table.c.name.startswith(prefix, autoescape=True))
        with self.engine.connect() as c:
            return dict(sorted((name, commit) for name, commit in c.execute(query)))

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
            name: Full ref name, e.g. ``"refs/heads/main"``.
            new: Commit id to point to (must exist), or None to delete the ref.
            expected_old: The commit id the caller last read; None: the ref must not exist;
                :data:`ANY`: move it whatever it points to.
            message: Reflog message, e.g. ``"commit: lr 1e-5"``.
            conn: Run inside this connection's transaction instead of a new one.

        Raises:
            RefMovedError: If the ref moved (is not ``expected_old``).
            StoreError: If ``new`` is not a commit.
            RefError: If ``name`` is not a valid full ref name.
        """
        check_full_name(name)
        what = f"{kind_of(name)} {short_name(name)}"
        with transaction(self.engine, conn) as c:
            old = self.get(name, c)
            if expected_old is not ANY and old != expected_old:
                raise RefMovedError(
                    f"{what} moved: expected {expected_old or '(no ref)'}, "
                    f"found {old or '(no ref)'} (another process updated it)"
                )
            if new is not None and not _commit_exists(c, new):
                raise StoreError(f"cannot point {what} at {new}: no such commit")
            try:
                swapped = _swap(c, name, old, new)
            except IntegrityError as exc:  # PostgreSQL: a concurrent gc deleted the commit after the check above
                raise StoreError(f"cannot point {what} at {new}: no such commit (removed meanwhile)") from exc
            if not swapped:
                raise RefMovedError(
                    f"{what} moved: expected {old or '(no ref)'} while updating it "
                    "(another process updated it)"
                )
            c.execute(
                insert(reflog_table).values(
                    ref=name, old=old, new=new, message=message, time=utc_now()
                )
            )

    def reflog(self, name: str | None = None) -> list[ReflogEntry]:
        """Return the moves of the full ref ``name`` (every ref's when None), oldest first."""
        query = select(
            reflog_table.c.ref,
            reflog_table.c.old,
            reflog_table.c.new,
            reflog_table.c.message,
            reflog_table.c.time,
        ).order_by(reflog_table.c.seq)
        if name is not None:
            query = query.where(reflog_table.c.ref == name)
        with self.engine.connect() as c:
            return [ReflogEntry(**row) for row in c.execute(query).mappings()]


def _commit_exists(conn: Connection, id: str) -> bool:
    query = select(commits_table.c.id).where(commits_table.c.id == id)
    return conn.execute(query).first() is not None


def _swap(conn: Connection, name: str, old: str | None, new: str | None) -> bool:
    """Replace ``old`` by ``new`` in one statement; False if another writer got there first.

    Correct on SQLite (the transaction holds the write lock from its first read) and on
    PostgreSQL at READ COMMITTED without that lock: the ``UPDATE``/``DELETE`` waits for a
    concurrent writer of the row, then re-checks ``commit_id = old`` on the row it
    committed and touches nothing if it moved; of two ``INSERT``s of a new ref, the second
    waits, then fails on the key, inside a savepoint so the caller's transaction lives on.

    Raises:
        IntegrityError: If ``new`` is no longer a commit (PostgreSQL's foreign key: a
            concurrent gc deleted it).
    """
    if old is None and new is None:
        return True
    if old is None:
        try:
            with conn.begin_nested():
                conn.execute(insert(refs_table).values(name=name, commit_id=new))
        except IntegrityError:
            if conn.execute(select(refs_table.c.name).where(refs_table.c.name == name)).first() is None:
                raise  # not the key: the foreign key, the commit is gone
            return False
        return True
    where = (refs_table.c.name == name) & (refs_table.c.commit_id == old)
    if new is None:
        return conn.execute(delete(refs_table).where(where)).rowcount == 1
    return conn.execute(update(refs_table).where(where).values(commit_id=new)).rowcount == 1


def full_name(name: str, refs: Refs, head: str | None = None) -> str | None:
    """Return the full name of the ref a user typed, or None if no ref has that name.

    ``HEAD`` is the current branch ``head`` (a full name); ``refs/...`` names are taken as
    they are; a short name is looked up as a branch, then a tag, an alias and a
    remote-tracking branch (:data:`KINDS`), like git.
    """
    if name == HEAD:
        return head
    if name.startswith("refs/"):
        return name if refs.get(name) is not None else None
    for prefix in KINDS.values():
        if refs.get(prefix + name) is not None:
            return prefix + name
    return None


def resolve(spec: str, refs: Refs, commits: CommitStore, head: str | None = None) -> str:
    """Return the commit id that ``spec`` names.

    Args:
        spec: ``HEAD``, a branch, tag or alias (``main``, ``v1``, ``production``), a full ref
            name (``refs/tags/v1``), a full commit id or a unique prefix of at least
            4 hex characters; then any number of ``~N`` (the N-th first-parent ancestor;
            ``~`` alone means ``~1``) and ``^N`` (the N-th parent; ``^`` means ``^1``), as
            in git: ``main~2``, ``HEAD^2`` (a merge's second parent).
        refs: Where refs live.
        commits: Where commits live.
        head: The current branch's full name (what ``HEAD`` means).

    Raises:
        RefError: If ``spec`` names no commit, an ambiguous prefix, a parent that does not
            exist, or goes back past the first commit.
    """
    spec = spec.strip()
    cut = min((i for i in (spec.find("~"), spec.find("^")) if i >= 0), default=len(spec))
    base, tail = spec[:cut], spec[cut:]
    steps = _SUFFIX_RE.findall(tail)
    if "".join(op + n for op, n in steps) != tail:
        raise RefError(f"invalid ref {spec!r}: '~' and '^' must be followed by a number or nothing, e.g. main~2")
    id = _resolve_base(base, refs, commits, head)
    walked = 0
    for op, n in steps:
        count = int(n) if n else 1
        if op == "^":
            if count == 0:
                continue
            parents = commits.get(id).parents
            if count > len(parents):
                raise RefError(f"{spec!r}: commit {id[:10]} has {len(parents)} parent(s), not a parent number {count}")
            id, walked = parents[count - 1], walked + 1
            continue
        for _ in range(count):
            parent = commits.get(id).parent
            if parent is None:
                raise RefError(
                    f"{spec!r} goes back past the first commit: {base} has only {walked + 1} "
                    f"commit(s) in its first-parent history; use {base}~{walked} at most"
                )
            id, walked = parent, walked + 1
    return id


def _resolve_base(base: str, refs: Refs, commits: CommitStore, head: str | None) -> str:
    if not base:
        raise RefError("empty ref: give a branch name or a commit id, e.g. main or main~1")
    if base == HEAD and head is not None and refs.get(head) is None:
        raise RefError(f"HEAD is branch {short_name(head)}, which has no commit yet; commit a model first")
    name = full_name(base, refs, head)
    if name is not None:
        return refs.get(name)  # type: ignore[return-value]  # full_name checked it exists
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
    names = ", ".join(short_name(n) for n in refs.as_dict(HEADS)) or "none yet; commit a model first"
    hint = (
        f"; commit id prefixes need at least {MIN_PREFIX} hex characters"
        if _HEX_RE.match(base) and len(base) < MIN_PREFIX
        else ""
    )
    raise RefError(
        f"unknown ref {base!r}: not a branch, tag, alias or commit id (branches: {names}){hint}"
    )
