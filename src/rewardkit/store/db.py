"""The metadata database: commits, refs and the reflog, through SQLAlchemy Core.

The engine URL is pluggable (``sqlite:///…`` by default, ``postgresql://…`` later). On
SQLite every connection runs in WAL mode with a busy timeout, and every transaction is
``BEGIN IMMEDIATE``, so a read-then-write (the ref compare-and-swap) holds the write lock
from its first read: SQLite's own driver would otherwise begin the transaction only at
the first write.

A damaged SQLite file ("database disk image is malformed", "file is not a database") is
reported as a :class:`~rewardkit.errors.StoreError` naming the file and the way out,
whichever query meets the damage first.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Connection,
    Engine,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    inspect,
)
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import DatabaseError

from rewardkit.errors import StoreError

SQLITE_BUSY_TIMEOUT_MS = 30_000

metadata = MetaData()

commits_table = Table(
    "commits",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("manifest_id", String(64), nullable=False),
    Column("parents", JSON, nullable=False),
    Column("message", Text, nullable=False),
    Column("author", String(255), nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("params", JSON, nullable=False),
    Column("metrics", JSON, nullable=False),
    Column("data_fingerprint", String(255), nullable=True),
    Column("backbone", String(255), nullable=True),
)

refs_table = Table(
    "refs",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("commit_id", String(64), ForeignKey("commits.id"), nullable=False),
)

reflog_table = Table(
    "reflog",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("ref", String(255), nullable=False, index=True),
    Column("old", String(64), nullable=True),
    Column("new", String(64), nullable=True),
    Column("message", Text, nullable=False),
    Column("time", String(40), nullable=False),
)


def sqlite_url(path: str | Path) -> str:
    """Return the SQLAlchemy URL of an SQLite database file."""
    return f"sqlite:///{Path(path).absolute().as_posix()}"


def connect(url: str, *, create: bool = True) -> Engine:
    """Create an engine for ``url``; with ``create``, create the tables that do not exist.

    Args:
        url: SQLAlchemy database URL, e.g. ``sqlite:////data/repo/meta.db``.
        create: Create missing tables (``False`` to look before creating, see
            :func:`has_tables`).

    Raises:
        StoreError: If the database file is damaged.
    """
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        event.listen(engine, "handle_error", _sqlite_on_error)
    if create:
        create_tables(engine)
    return engine


def create_tables(engine: Engine) -> None:
    """Create the tables that do not exist yet (a no-op on a complete database).

    Raises:
        StoreError: If the database file is damaged.
    """
    try:
        metadata.create_all(engine)
    except DatabaseError as exc:  # not SQLite, or damage seen before any handler ran
        raise StoreError(f"cannot use the metadata database {engine.url!r}: {exc.orig}") from exc


def has_tables(engine: Engine) -> bool:
    """Return True if the database holds the ``commits`` table (False for a new or empty file).

    A missing or zero-length SQLite file is answered without connecting, so looking
    leaves it as it was.

    Raises:
        StoreError: If the database file is damaged.
    """
    path = engine.url.database if engine.dialect.name == "sqlite" else None
    if path and path != ":memory:" and (not Path(path).is_file() or Path(path).stat().st_size == 0):
        return False
    try:
        return inspect(engine).has_table(commits_table.name)
    except DatabaseError as exc:
        raise StoreError(f"cannot read the metadata database {engine.url!r}: {exc.orig}") from exc


@contextmanager
def transaction(engine: Engine, conn: Connection | None = None) -> Iterator[Connection]:
    """Yield ``conn`` if given (the caller owns its transaction), else a new transaction."""
    if conn is not None:
        yield conn
        return
    with engine.begin() as new:
        yield new


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # let the "begin" event emit BEGIN itself
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
    except sqlite3.DatabaseError as exc:
        if type(exc) is not sqlite3.DatabaseError:
            raise
        path = next((row[2] for row in dbapi_connection.execute("PRAGMA database_list")), "")
        raise _damaged(path, exc) from exc
    finally:
        cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_on_error(context: ExceptionContext) -> None:
    """Turn SQLite's "malformed"/"not a database" errors into a StoreError saying what to do."""
    error = context.original_exception
    if type(error) is sqlite3.DatabaseError:  # subclasses (locked, constraint) are other problems
        path = context.engine.url.database if context.engine is not None else None
        raise _damaged(path or "", error) from error


def _damaged(path: str, error: Exception) -> StoreError:
    return StoreError(
        f"the metadata database {path or 'meta.db'} is damaged ({error}): the commit history "
        "cannot be read; restore it from a backup, and keep objects/ (the models are there)"
    )
