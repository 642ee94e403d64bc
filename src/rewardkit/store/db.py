"""The metadata database: commits, refs and the reflog, through SQLAlchemy Core.

The engine URL is pluggable (``sqlite:///…`` by default, ``postgresql://…`` later). On
SQLite every connection runs in WAL mode with a busy timeout, and every transaction is
``BEGIN IMMEDIATE``, so a read-then-write (the ref compare-and-swap) holds the write lock
from its first read: SQLite's own driver would otherwise begin the transaction only at
the first write.
"""

from __future__ import annotations

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
)

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


def connect(url: str) -> Engine:
    """Create an engine for ``url`` and create the tables if they do not exist.

    Args:
        url: SQLAlchemy database URL, e.g. ``sqlite:////data/repo/meta.db``.
    """
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
    metadata.create_all(engine)
    return engine


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
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")
