"""Schema migrations of the metadata database: one small step per schema version.

``STEPS[v]`` turns a database of schema version ``v`` into version ``v + 1``; the current
version is ``len(STEPS) + 1``. :func:`rewardkit.store.db.upgrade_schema` runs the steps
from the stored version up to the current one, and stamps the new version, in ONE
transaction: a step that fails leaves the database exactly as it was (SQLite and
PostgreSQL both roll back DDL).

Each step is frozen in time: it names the tables and columns it touches itself (a small
``Table`` of its own) instead of importing today's ``db.metadata``, so a later change to
the tables cannot change what an old step does. Adding a version is adding one function
here and changing the tables in :mod:`rewardkit.store.db` to match; a test checks that a
migrated database has exactly the schema of a new one.

Why not Alembic: the schema is three tables and a version row, the steps are a few lines
of SQLAlchemy Core each, and they must run inside ``Repository.open`` (no separate
``alembic upgrade`` for users, no ``alembic.ini`` or script folder shipped in the wheel,
no extra dependency). Alembic's ``alembic_version`` table, ordered revisions and
``upgrade()`` functions are what this module keeps; its branching revision graph and
autogenerate are what a linear, hand-reviewed history of a handful of steps does not
need. The same Core statements run on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Column, Connection, Index, MetaData, String, Table


def _index_reflog_time(conn: Connection) -> None:
    """Version 1 → 2: index ``reflog.time``, which ``gc --expire-reflog`` filters on."""
    reflog = Table("reflog", MetaData(), Column("time", String(40)))
    Index("ix_reflog_time", reflog.c.time).create(conn)


#: ``STEPS[v]`` migrates schema version ``v`` to ``v + 1`` inside the caller's transaction.
STEPS: dict[int, Callable[[Connection], None]] = {
    1: _index_reflog_time,
}

#: The schema version this rewardkit writes (and the newest it reads).
SCHEMA_VERSION = len(STEPS) + 1


def migrate(conn: Connection, from_version: int) -> None:
    """Run the steps from ``from_version`` up to :data:`SCHEMA_VERSION` on ``conn``.

    Args:
        conn: A connection inside the transaction that also stamps the new version.
        from_version: The schema version the database has now (1 ≤ it ≤ SCHEMA_VERSION).
    """
    for version in range(from_version, SCHEMA_VERSION):
        STEPS[version](conn)
