"""The metadata database: commits, refs and the reflog, through SQLAlchemy Core.

Two backends run the same statements: SQLite (``sqlite:///…/meta.db``, the embedded
default) and PostgreSQL (``postgresql://user@host:port/dbname``, through the psycopg 3
driver whatever driver SQLAlchemy would pick by default; ``pip install
'rewardkit[postgres]'``). Other URLs are refused: only these two are tested. On
SQLite every connection runs in WAL mode with a busy timeout, and every transaction is
``BEGIN IMMEDIATE``, so a read-then-write (the ref compare-and-swap) holds the write lock
from its first read: SQLite's own driver would otherwise begin the transaction only at
the first write. PostgreSQL runs at its default isolation, READ COMMITTED: the ref
compare-and-swap is a conditional ``UPDATE … WHERE commit_id = old``, which waits for a
concurrent writer of the same row and then re-checks its condition on the committed
row, so of two writers one gets "moved" (see :func:`rewardkit.store.refs._swap`).

A PostgreSQL URL never carries a password into ``config.json``: :func:`check_saved_url`
refuses one, and libpq reads it from ``PGPASSWORD`` or ``~/.pgpass`` instead. A server
that is unreachable, refuses the login or lacks the database is a one-line
:class:`~rewardkit.errors.StoreError` naming the URL (without a password).

A damaged SQLite file ("database disk image is malformed", "file is not a database") is
reported as a :class:`~rewardkit.errors.StoreError` naming the file and the way out,
whichever query meets the damage first.

Schema versioning: the one-row table ``schema_version`` records the version of the
tables (:data:`~rewardkit.store.migrations.SCHEMA_VERSION`; version 1 is commits, refs
and reflog without that table, as rewardkit wrote them before it existed). Every open
goes through :func:`ensure_schema`, one transaction that (a) creates a new database's
tables already stamped, (b) refuses a database of a newer version than this rewardkit
knows before writing anything, or (c) runs the migration steps of
:mod:`rewardkit.store.migrations` from the stored version and stamps the new one. On
SQLite that transaction is ``BEGIN IMMEDIATE`` and on PostgreSQL it takes an advisory
lock first, so of two processes opening an old database, one migrates and the other then
sees the new version.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    URL,
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
    delete,
    event,
    insert,
    inspect,
    make_url,
    select,
    text,
)
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import ArgumentError, DatabaseError

from rewardkit.errors import StoreError
from rewardkit.store.migrations import SCHEMA_VERSION, migrate

SQLITE_BUSY_TIMEOUT_MS = 30_000
#: SQLAlchemy driver name used for ``postgresql://`` URLs (psycopg 3, not SQLAlchemy's default psycopg2).
PG_DRIVER = "postgresql+psycopg"
#: Seconds libpq waits for a PostgreSQL server to answer (unless the URL sets ``connect_timeout``).
PG_CONNECT_TIMEOUT_S = 10

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
    Column("time", String(40), nullable=False, index=True),  # since version 2
)

#: One row: the schema version of the tables above (absent: version 1).
schema_version_table = Table(
    "schema_version",
    metadata,
    Column("version", Integer, nullable=False),
)

#: Key of the PostgreSQL advisory lock that serialises :func:`ensure_schema` ("rkschema").
_PG_SCHEMA_LOCK = 0x726B736368656D61


def sqlite_url(path: str | Path) -> str:
    """Return the SQLAlchemy URL of an SQLite database file."""
    return f"sqlite:///{Path(path).absolute().as_posix()}"


def parse_url(url: str) -> URL:
    """Parse a metadata database URL; a ``postgresql://`` one gets the psycopg 3 driver.

    Args:
        url: ``sqlite:///PATH`` or ``postgresql://USER@HOST:PORT/DBNAME`` (an explicit
            driver such as ``postgresql+psycopg2://`` is kept).

    Raises:
        StoreError: If ``url`` is not a URL of one of those two databases.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        parsed = None
    if parsed is None or parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise StoreError(
            f"unsupported metadata database URL {_without_password(url)!r}: expected "
            "sqlite:///PATH or postgresql://USER@HOST:PORT/DBNAME"
        )
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername=PG_DRIVER)
    return parsed


def check_saved_url(url: str) -> str:
    """Return ``url`` if it may be saved in ``config.json``: a supported URL without a password.

    Raises:
        StoreError: If ``url`` is unsupported (see :func:`parse_url`) or holds a password,
            which would sit in a plain file; libpq reads it from ``PGPASSWORD`` or
            ``~/.pgpass`` instead.
    """
    if parse_url(url).password is not None:
        raise StoreError(
            f"the database URL {_without_password(url)} holds a password, which would be saved in "
            "config.json: remove it from the URL and give it in PGPASSWORD or ~/.pgpass"
        )
    return url


def connect(url: str, *, create: bool = True) -> Engine:
    """Create an engine for ``url``; with ``create``, create or migrate its tables.

    Args:
        url: Database URL, e.g. ``sqlite:////data/repo/meta.db`` or
            ``postgresql://rk@db.internal:5432/rewardkit`` (see :func:`parse_url`).
        create: Run :func:`ensure_schema` (``False`` to look first, see
            :func:`has_tables`).

    Raises:
        StoreError: If the URL is unsupported, psycopg is missing for a PostgreSQL URL,
            the server cannot be reached or refuses the login or database (on the
            first query), or the database file is damaged or of a newer schema version.
    """
    parsed = parse_url(url)
    if parsed.get_backend_name() == "postgresql":
        connect_args = {} if "connect_timeout" in parsed.query else {"connect_timeout": PG_CONNECT_TIMEOUT_S}
        try:
            # pool_pre_ping: a pooled connection the server dropped (a restart, an idle timeout) is replaced
            # on its next use, so a long-lived process (a scoring server) outlives it.
            engine = create_engine(parsed, connect_args=connect_args, pool_pre_ping=True)
        except ImportError as exc:
            raise StoreError(
                f"the metadata database {shown(parsed)} is PostgreSQL, and its driver is missing ({exc}): "
                "pip install 'rewardkit[postgres]'"
            ) from exc
        event.listen(engine, "handle_error", _pg_on_error)
    else:
        engine = create_engine(parsed)
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        event.listen(engine, "handle_error", _sqlite_on_error)
    if create:
        ensure_schema(engine)
    return engine


def ensure_schema(engine: Engine) -> None:
    """Create a new database's tables, or migrate an old one's, to :data:`SCHEMA_VERSION`.

    All in one transaction: a new database gets its tables and its version row together;
    an old one gets every migration step and its new version row together, or (a step
    failed) nothing at all. A database at the current version is left untouched.

    Raises:
        StoreError: If the database is of a newer schema version than this rewardkit
            reads (nothing is written), its version row is missing or doubled, or the
            database file is damaged.
    """
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_SCHEMA_LOCK})
            if not inspect(conn).has_table(commits_table.name):
                metadata.create_all(conn)
                conn.execute(insert(schema_version_table).values(version=SCHEMA_VERSION))
                return
            version = schema_version(conn)
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"the metadata database {shown(engine.url)} has schema version {version}; this "
                    f"rewardkit reads up to {SCHEMA_VERSION}: upgrade rewardkit"
                )
            if version < SCHEMA_VERSION:
                migrate(conn, version)
                schema_version_table.create(conn, checkfirst=True)
                conn.execute(delete(schema_version_table))
                conn.execute(insert(schema_version_table).values(version=SCHEMA_VERSION))
    except DatabaseError as exc:  # not SQLite, or damage seen before any handler ran
        raise StoreError(f"cannot use the metadata database {shown(engine.url)}: {_one_line(exc.orig)}") from exc


def schema_version(conn: Connection) -> int:
    """Return the schema version of the database behind ``conn`` (1 if it has no version table).

    Raises:
        StoreError: If the version table does not hold exactly one row.
    """
    if not inspect(conn).has_table(schema_version_table.name):
        return 1
    versions = conn.execute(select(schema_version_table.c.version)).scalars().all()
    if len(versions) != 1:
        raise StoreError(
            f"the metadata database {shown(conn.engine.url)} has {len(versions)} rows in its "
            f"{schema_version_table.name} table, expected one; restore it from a backup"
        )
    return int(versions[0])


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
        raise StoreError(f"cannot read the metadata database {shown(engine.url)}: {_one_line(exc.orig)}") from exc


@contextmanager
def transaction(engine: Engine, conn: Connection | None = None) -> Iterator[Connection]:
    """Yield ``conn`` if given (the caller owns its transaction), else a new transaction."""
    if conn is not None:
        yield conn
        return
    with engine.begin() as new:
        yield new


def shown(url: URL) -> str:
    """The database's file (SQLite) or its URL without the password or driver, for messages."""
    if url.get_backend_name() == "sqlite" and url.database:
        return url.database
    if url.drivername == PG_DRIVER:
        url = url.set(drivername="postgresql")
    return url.render_as_string(hide_password=True)


def _without_password(url: str) -> str:
    """``url`` with its password (if any) shown as ``***``, for messages about a URL not yet parsed."""
    return re.sub(r"(://[^/@:]*:)[^/@]*@", r"\1***@", url)


def _pg_on_error(context: ExceptionContext) -> None:
    """Turn "cannot reach the server, log in or open the database" into a one-line StoreError.

    Errors inside a working session (a constraint, a lock) are left to their callers; a
    pool's pre-ping handles its own failures.
    """
    if context.is_pre_ping or not (context.connection is None or context.is_disconnect):
        return
    where = shown(context.engine.url) if context.engine is not None else "(PostgreSQL)"
    what = "cannot connect to" if context.connection is None else "lost the connection to"
    raise StoreError(f"{what} the metadata database {where}: {_one_line(context.original_exception)}")


def _one_line(error: BaseException) -> str:
    """A driver's message (libpq's run over several lines, with hints) on one line."""
    return " ".join(str(error).split())


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
