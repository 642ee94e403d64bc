"""The metadata database records its schema version; old ones are migrated, newer ones refused.

Every test runs on SQLite and on PostgreSQL; the helpers read the database through SQLAlchemy.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest
from sqlalchemy import URL, Connection, create_engine, inspect, text

from rewardkit.errors import StoreError
from rewardkit.store import Repository, migrations
from rewardkit.store.db import schema_version, shown
from rewardkit.store.migrations import SCHEMA_VERSION, STEPS

pytestmark = pytest.mark.backends()  # each test's `repo` on SQLite, then on PostgreSQL

TABLES = ("commits", "refs", "reflog")
#: The database's own description of its tables and indexes, as text (what the inspector may smooth over).
CATALOG = {
    "sqlite": "SELECT type, name, tbl_name, sql FROM sqlite_master",
    "postgresql": "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'",
}


def _files(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _sql(url: URL, query: str, **params: object) -> list[tuple]:
    """Run ``query`` in its own transaction and connection (closed after: SQLite checkpoints its WAL)."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            result = conn.execute(text(query), params)
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        engine.dispose()


def _rows(url: URL) -> dict[str, list[tuple]]:
    return {t: _sql(url, f"SELECT * FROM {t} ORDER BY 1") for t in TABLES}


def _schema(url: URL) -> tuple[dict, set[tuple]]:
    """Every table's columns, key, indexes and foreign keys, and the database's catalog text of them."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            insp = inspect(conn)
            tables = {
                t: (
                    [(c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(t)],
                    insp.get_pk_constraint(t)["constrained_columns"],
                    sorted((i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in insp.get_indexes(t)),
                    sorted((f["referred_table"], tuple(f["constrained_columns"])) for f in insp.get_foreign_keys(t)),
                )
                for t in insp.get_table_names()
            }
            catalog = {tuple(row) for row in conn.execute(text(CATALOG[conn.dialect.name]))}
    finally:
        engine.dispose()
    return tables, catalog


def _state(repo: Repository) -> tuple[object, ...]:
    """What a refused open must leave as it was: the folder's files, the rows and the schema."""
    return _files(repo.path), _rows(repo.engine.url), _schema(repo.engine.url)


def _index_names(url: URL) -> set[str]:
    return {name for table in _schema(url)[0].values() for name, _, _ in table[2]}


def _version(repo: Repository) -> int:
    with repo.engine.connect() as conn:
        return schema_version(conn)


@pytest.fixture
def fresh_url(backend: str, request: pytest.FixtureRequest) -> str | None:
    """A second new database on the test's backend (None: SQLite in the repository folder)."""
    return request.getfixturevalue("postgres_server").create_database() if backend == "postgresql" else None


def _make_version_1(repo: Repository, tiny_tensors) -> URL:
    """A repository with history whose database is turned back into version 1 (as rewardkit
    wrote it before schema versioning: no version table, no reflog.time index)."""
    repo.commit_tensors(tiny_tensors(0), {"config.json": b"{}"}, "first")
    repo.create_branch("side")
    repo.commit_tensors(tiny_tensors(1), {"config.json": b"{}"}, "second")
    repo.close()
    url = repo.engine.url
    _sql(url, "DROP TABLE schema_version")
    _sql(url, "DROP INDEX ix_reflog_time")
    assert set(_schema(url)[0]) == set(TABLES) and _index_names(url) == {"ix_reflog_ref"}
    return url


def test_the_steps_lead_to_the_current_version() -> None:
    assert sorted(STEPS) == list(range(1, SCHEMA_VERSION))
    assert SCHEMA_VERSION == 2


def test_a_new_repository_has_the_current_version(tmp_path: Path, db_url: str | None) -> None:
    with Repository.init(tmp_path / "r", db_url=db_url) as repo:
        assert _version(repo) == SCHEMA_VERSION
    assert _sql(repo.engine.url, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]


def test_a_version_1_database_is_migrated_and_keeps_every_row(
    repo: Repository, tiny_tensors, tmp_path: Path, fresh_url: str | None
) -> None:
    db = _make_version_1(repo, tiny_tensors)
    before = _rows(db)
    assert len(before["commits"]) == 2 and len(before["refs"]) == 2 and len(before["reflog"]) == 3

    with Repository.open(repo.path) as opened:
        assert _version(opened) == SCHEMA_VERSION
        assert [c.message for c in opened.log()] == ["second", "first"]
        assert set(opened.branches()) == {"main", "side"}
    assert _rows(db) == before
    with Repository.init(tmp_path / "fresh", db_url=fresh_url) as fresh:
        assert _schema(db) == _schema(fresh.engine.url)  # migrated == created new

    with Repository.open(repo.path) as again:  # the current version: nothing more to do
        assert _version(again) == SCHEMA_VERSION
    assert _sql(db, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]


def test_a_newer_schema_is_refused_and_nothing_is_written(repo: Repository, tiny_tensors) -> None:
    repo.commit_tensors(tiny_tensors(0), {}, "first")
    repo.close()
    _sql(repo.engine.url, "UPDATE schema_version SET version = :v", v=SCHEMA_VERSION + 1)
    before = _state(repo)
    with pytest.raises(
        StoreError,
        match=rf"^the metadata database {re.escape(shown(repo.engine.url))} has schema version "
        rf"{SCHEMA_VERSION + 1}; this rewardkit reads up to {SCHEMA_VERSION}: upgrade rewardkit$",
    ):
        Repository.open(repo.path)
    assert _state(repo) == before


def test_a_failed_migration_step_rolls_back(
    repo: Repository, tiny_tensors, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = _make_version_1(repo, tiny_tensors)
    before = _state(repo)

    def half_done(conn: Connection) -> None:
        migrations._index_reflog_time(conn)  # the real step's change, then a failure
        raise RuntimeError("step failed")

    monkeypatch.setitem(STEPS, 1, half_done)
    with pytest.raises(RuntimeError, match="step failed"):
        Repository.open(repo.path)
    assert _state(repo) == before  # no index, no version table: version 1 as it was

    monkeypatch.undo()
    with Repository.open(repo.path) as opened:
        assert _version(opened) == SCHEMA_VERSION
    assert "ix_reflog_time" in _index_names(db)


def test_concurrent_opens_of_a_version_1_database_migrate_it_once(repo: Repository, tiny_tensors) -> None:
    db = _make_version_1(repo, tiny_tensors)
    errors: list[BaseException] = []

    def open_it() -> None:
        try:
            Repository.open(repo.path).close()
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _sql(db, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]


@pytest.mark.parametrize("rows", [0, 2])
def test_a_version_table_without_exactly_one_row_is_refused(repo: Repository, rows: int) -> None:
    repo.close()
    _sql(repo.engine.url, "DELETE FROM schema_version")
    for _ in range(rows):
        _sql(repo.engine.url, "INSERT INTO schema_version VALUES (:v)", v=SCHEMA_VERSION)
    with pytest.raises(StoreError, match=rf"^the metadata database {re.escape(shown(repo.engine.url))} has {rows} "
                       "rows in its schema_version table, expected one"):
        Repository.open(repo.path)


def test_the_cli_refuses_a_newer_schema_in_one_line_exit_2(repo: Repository, capsys, monkeypatch) -> None:
    from rewardkit.cli.main import main

    repo.close()
    _sql(repo.engine.url, "UPDATE schema_version SET version = :v", v=SCHEMA_VERSION + 1)
    monkeypatch.setenv("REWARDKIT_REPO", str(repo.path))
    assert main(["log"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "upgrade rewardkit" in err, err
