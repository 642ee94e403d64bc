"""The metadata database records its schema version; old ones are migrated, newer ones refused."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import Connection

from rewardkit.errors import StoreError
from rewardkit.store import Repository, migrations
from rewardkit.store.db import schema_version
from rewardkit.store.migrations import SCHEMA_VERSION, STEPS

TABLES = ("commits", "refs", "reflog")


def _files(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _sql(db: Path, query: str, *params: object) -> list[tuple]:
    with sqlite3.connect(db) as conn:  # commits on leaving the block
        rows = conn.execute(query, params).fetchall()
    conn.close()  # the last connection checkpoints the WAL into the file
    return rows


def _rows(db: Path) -> dict[str, list[tuple]]:
    return {t: _sql(db, f"SELECT * FROM {t} ORDER BY 1") for t in TABLES}


def _schema(db: Path) -> set[tuple]:
    """(type, name, table, SQL) of every table and index: the schema, whatever the page order."""
    return set(_sql(db, "SELECT type, name, tbl_name, sql FROM sqlite_master"))


def _version(repo: Repository) -> int:
    with repo.engine.connect() as conn:
        return schema_version(conn)


def _make_version_1(repo: Repository, tiny_tensors) -> Path:
    """A repository with history whose meta.db is turned back into version 1 (as rewardkit
    wrote it before schema versioning: no version table, no reflog.time index)."""
    repo.commit_tensors(tiny_tensors(0), {"config.json": b"{}"}, "first")
    repo.create_branch("side")
    repo.commit_tensors(tiny_tensors(1), {"config.json": b"{}"}, "second")
    repo.close()
    db = repo.path / "meta.db"
    _sql(db, "DROP TABLE schema_version")
    _sql(db, "DROP INDEX ix_reflog_time")
    assert {name for _, name, _, _ in _schema(db)} == {
        "commits", "refs", "reflog", "ix_reflog_ref", "sqlite_autoindex_commits_1", "sqlite_autoindex_refs_1"}
    return db


def test_the_steps_lead_to_the_current_version() -> None:
    assert sorted(STEPS) == list(range(1, SCHEMA_VERSION))
    assert SCHEMA_VERSION == 2


def test_a_new_repository_has_the_current_version(tmp_path: Path) -> None:
    with Repository.init(tmp_path / "r") as repo:
        assert _version(repo) == SCHEMA_VERSION
    assert _sql(tmp_path / "r" / "meta.db", "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]


def test_a_version_1_database_is_migrated_and_keeps_every_row(repo: Repository, tiny_tensors, tmp_path) -> None:
    db = _make_version_1(repo, tiny_tensors)
    before = _rows(db)
    assert len(before["commits"]) == 2 and len(before["refs"]) == 2 and len(before["reflog"]) == 3

    with Repository.open(repo.path) as opened:
        assert _version(opened) == SCHEMA_VERSION
        assert [c.message for c in opened.log()] == ["second", "first"]
        assert set(opened.branches()) == {"main", "side"}
    assert _rows(db) == before
    Repository.init(tmp_path / "fresh").close()
    assert _schema(db) == _schema(tmp_path / "fresh" / "meta.db")  # migrated == created new

    with Repository.open(repo.path) as again:  # the current version: nothing more to do
        assert _version(again) == SCHEMA_VERSION
    assert _sql(db, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]


def test_a_newer_schema_is_refused_and_nothing_is_written(repo: Repository, tiny_tensors) -> None:
    repo.commit_tensors(tiny_tensors(0), {}, "first")
    repo.close()
    db = repo.path / "meta.db"
    _sql(db, "UPDATE schema_version SET version = ?", SCHEMA_VERSION + 1)
    before = _files(repo.path)
    with pytest.raises(
        StoreError,
        match=rf"^the metadata database {db} has schema version {SCHEMA_VERSION + 1}; this rewardkit "
        rf"reads up to {SCHEMA_VERSION}: upgrade rewardkit$",
    ):
        Repository.open(repo.path)
    assert _files(repo.path) == before


def test_a_failed_migration_step_rolls_back(
    repo: Repository, tiny_tensors, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = _make_version_1(repo, tiny_tensors)
    before = _files(repo.path)

    def half_done(conn: Connection) -> None:
        migrations._index_reflog_time(conn)  # the real step's change, then a failure
        raise RuntimeError("step failed")

    monkeypatch.setitem(STEPS, 1, half_done)
    with pytest.raises(RuntimeError, match="step failed"):
        Repository.open(repo.path)
    assert _files(repo.path) == before  # no index, no version table: version 1 as it was

    monkeypatch.undo()
    with Repository.open(repo.path) as opened:
        assert _version(opened) == SCHEMA_VERSION
    assert ("index", "ix_reflog_time", "reflog") in {row[:3] for row in _schema(db)}


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
    db = repo.path / "meta.db"
    _sql(db, "DELETE FROM schema_version")
    for _ in range(rows):
        _sql(db, "INSERT INTO schema_version VALUES (?)", SCHEMA_VERSION)
    with pytest.raises(StoreError, match=rf"meta.db has {rows} rows in its schema_version table, expected one"):
        Repository.open(repo.path)


def test_the_cli_refuses_a_newer_schema_in_one_line_exit_2(repo: Repository, capsys, monkeypatch) -> None:
    from rewardkit.cli.main import main

    repo.close()
    _sql(repo.path / "meta.db", "UPDATE schema_version SET version = ?", SCHEMA_VERSION + 1)
    monkeypatch.setenv("REWARDKIT_REPO", str(repo.path))
    assert main(["log"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "upgrade rewardkit" in err, err
