"""PostgreSQL metadata: `init --db`, no password in config.json, one-line errors for what cannot connect.

The store's behaviour on PostgreSQL (refs, commits, merge, gc, concurrency, schema) is the same suite as on
SQLite (tests marked `backends`); this file covers what only a server URL has. Tests that need no server
(a refused URL, a missing driver, nothing listening) run everywhere.
"""

from __future__ import annotations

import json
import shutil
import socket
import sys
import threading
from dataclasses import asdict
from pathlib import Path

import pytest
from sqlalchemy import create_engine, insert, text

from rewardkit.cli.main import main
from rewardkit.errors import StoreError
from rewardkit.store import Commit, Repository
from rewardkit.store.db import PG_DRIVER, commits_table, parse_url


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket closes


def test_init_db_stores_the_history_in_postgresql(postgres_url: str, tmp_path: Path, tiny_tensors, capsys,
                                                  monkeypatch) -> None:
    path = tmp_path / "repo"
    assert main(["init", str(path), "--db", postgres_url]) == 0
    assert json.loads((path / "config.json").read_text())["db_url"] == postgres_url
    assert not (path / "meta.db").exists()
    with Repository.open(path) as repo:
        assert repo.engine.dialect.name == "postgresql" and repo.engine.url.drivername == PG_DRIVER
        repo.commit_tensors(tiny_tensors(0), {"config.json": b"{}"}, "first")
    with create_engine(parse_url(postgres_url)).connect() as conn:  # the rows are in the server's database
        assert conn.execute(text("SELECT message FROM commits")).scalars().all() == ["first"]
        assert conn.execute(text("SELECT name FROM refs")).scalars().all() == ["refs/heads/main"]
    capsys.readouterr()
    monkeypatch.setenv("REWARDKIT_REPO", str(path))
    assert main(["log", "--json"]) == 0
    assert [c["message"] for c in json.loads(capsys.readouterr().out)] == ["first"]


def test_rewardkit_db_url_is_the_default_of_init_db(postgres_url: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("REWARDKIT_DB_URL", postgres_url)
    assert main(["init", str(tmp_path / "repo")]) == 0
    assert json.loads((tmp_path / "repo" / "config.json").read_text())["db_url"] == postgres_url


def test_a_password_in_the_url_is_refused_and_nothing_is_created(tmp_path: Path, capsys) -> None:
    url = "postgresql://alice:s3cret@127.0.0.1:5432/models"
    with pytest.raises(StoreError, match=r"^the database URL postgresql://alice:\*\*\*@127.0.0.1:5432/models holds "
                       "a password, which would be saved in config.json: remove it from the URL and give it in "
                       r"PGPASSWORD or ~/.pgpass$"):
        Repository.init(tmp_path / "repo", db_url=url)
    assert main(["init", str(tmp_path / "repo"), "--db", url]) == 2
    assert "s3cret" not in _one_line_error(capsys)
    assert not (tmp_path / "repo").exists()


def test_the_password_comes_from_pgpassword(postgres_server, tmp_path: Path, monkeypatch) -> None:
    """A role that needs a password: PGPASSWORD logs it in; a wrong one is a one-line error without it."""
    admin = create_engine(parse_url(postgres_server.url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("CREATE ROLE alice LOGIN PASSWORD 'right'"))
        conn.execute(text("CREATE DATABASE alice_models OWNER alice"))
    admin.dispose()
    url = postgres_server.database_url("alice_models").replace("postgres@", "alice@")
    monkeypatch.setenv("PGPASSWORD", "wrong")
    with pytest.raises(StoreError, match=rf"^cannot connect to the metadata database {url}: .*password authentication "
                       "failed for user \"alice\"[^\n]*$") as refused:
        Repository.init(tmp_path / "repo", db_url=url)
    assert "wrong" not in str(refused.value) and not (tmp_path / "repo").exists()
    monkeypatch.setenv("PGPASSWORD", "right")
    with Repository.init(tmp_path / "repo", db_url=url) as repo:
        assert repo.branches() == {}
    assert "right" not in (tmp_path / "repo" / "config.json").read_text()


def test_a_missing_database_is_a_one_line_error(postgres_server, tmp_path: Path, capsys) -> None:
    url = postgres_server.database_url("no_such_db")
    with pytest.raises(StoreError, match=rf'^cannot connect to the metadata database {url}: .*database "no_such_db" '
                       "does not exist"):
        Repository.init(tmp_path / "repo", db_url=url)
    assert main(["init", str(tmp_path / "repo"), "--db", url]) == 2
    _one_line_error(capsys)
    assert not (tmp_path / "repo").exists()


def test_an_unreachable_server_is_a_one_line_error_without_the_password(tmp_path: Path, capsys) -> None:
    pytest.importorskip("psycopg", reason="psycopg is not installed: PostgreSQL tests skipped")
    port = _closed_port()
    url = f"postgresql://rk@127.0.0.1:{port}/models"
    assert main(["init", str(tmp_path / "repo"), "--db", url]) == 2
    err = _one_line_error(capsys)
    assert f"cannot connect to the metadata database {url}: " in err and "refused" in err, err
    assert not (tmp_path / "repo").exists()
    Repository.init(tmp_path / "sqlite").close()  # a repository whose URL is given when opened
    with pytest.raises(StoreError, match=rf"^cannot connect to the metadata database postgresql://rk:\*\*\*@127.0.0.1:"
                       rf"{port}/models: ") as refused:
        Repository.open(tmp_path / "sqlite", db_url=f"postgresql://rk:s3cret@127.0.0.1:{port}/models")
    assert "s3cret" not in str(refused.value)


def test_a_missing_driver_says_what_to_install(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg raises ImportError
    with pytest.raises(StoreError, match=r"^the metadata database postgresql://rk@127.0.0.1:5432/models is "
                       r"PostgreSQL, and its driver is missing \(.*\): pip install 'rewardkit\[postgres\]'$"):
        Repository.init(tmp_path / "repo", db_url="postgresql://rk@127.0.0.1:5432/models")
    assert not (tmp_path / "repo").exists()


@pytest.mark.parametrize("url", ["mysql://rk@127.0.0.1/models", "not a url", "postgres:/x"])
def test_an_unsupported_url_is_refused(tmp_path: Path, url: str) -> None:
    with pytest.raises(StoreError, match=r"^unsupported metadata database URL .*: expected sqlite:///PATH or "
                       r"postgresql://USER@HOST:PORT/DBNAME$"):
        Repository.init(tmp_path / "repo", db_url=url)
    assert not (tmp_path / "repo").exists()


def test_two_writers_adding_the_same_commit_both_succeed(postgres_url: str, tmp_path: Path) -> None:
    """PostgreSQL does not serialise writers as SQLite does: the second insert of one commit id waits for the
    first, then hits the key. `CommitStore.add` is a no-op for a commit already there, so that is no error."""
    with Repository.init(tmp_path / "repo", db_url=postgres_url) as repo:
        commit = Commit.create("ab" * 32, [], "fetched twice", "test")
        errors: list[BaseException] = []
        with repo.engine.begin() as first:
            first.execute(insert(commits_table).values(**asdict(commit)))  # not committed yet

            def second() -> None:
                try:
                    repo.commits.add(commit)  # waits for `first` to commit
                except BaseException as exc:  # noqa: BLE001 - reported below
                    errors.append(exc)

            waiting = threading.Thread(target=second)
            waiting.start()
            waiting.join(timeout=1)
            assert waiting.is_alive()  # blocked on the uncommitted row
        waiting.join(timeout=30)
        assert errors == [] and repo.commits.get(commit.id) == commit


def test_refs_are_listed_in_the_same_order_whatever_the_collation(
    postgres_server, tmp_path: Path, tiny_tensors
) -> None:
    """A server's databases often collate like en_US (`a` before `B`); names are still listed as on SQLite."""
    admin = create_engine(parse_url(postgres_server.url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("CREATE DATABASE natural_order TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' "
                          "LOCALE 'C'"))
    admin.dispose()
    names = ["a", "B", "a-b", "a/c", "Z", "_x"]
    for url in (None, postgres_server.database_url("natural_order")):
        with Repository.init(tmp_path / f"repo-{url is None}", db_url=url) as repo:
            repo.commit_tensors(tiny_tensors(0), {}, "first")
            for name in names:
                repo.create_branch(name)
            assert list(repo.branches()) == sorted([*names, "main"]), url


def test_a_machine_without_postgresql_skips_with_the_reason(monkeypatch) -> None:
    """No binaries, or binaries that fail: `start` gives the reason to skip (never raises), and leaves no folder."""
    import tempfile

    import postgres

    monkeypatch.setattr(postgres.shutil, "which", lambda name: None)
    monkeypatch.setattr(postgres.glob, "glob", lambda pattern: [])
    assert postgres.start() == postgres.SKIP + (
        "no initdb/pg_ctl on PATH or in /usr/lib/postgresql/*/bin (apt-get install postgresql)")

    fake = Path(tempfile.mkdtemp(prefix="fake-pg-bin-"))  # outside pytest's 0700 folder: the postgres user (as
    fake.chmod(0o755)  # root, the server runs as that user) must reach the fake binaries
    for name in ("initdb", "pg_ctl"):
        (fake / name).write_text("#!/bin/sh\necho 'initdb: error: no space left on device' >&2\nexit 1\n")
        (fake / name).chmod(0o755)
    monkeypatch.setattr(postgres, "find_bin", lambda: fake)
    before = set(Path(tempfile.gettempdir()).glob("rewardkit-pg-*"))
    reason = postgres.start()
    assert reason == postgres.SKIP + "initdb failed (exit 1): initdb: error: no space left on device", reason
    assert set(Path(tempfile.gettempdir()).glob("rewardkit-pg-*")) == before
    shutil.rmtree(fake)


def test_connections_the_server_dropped_are_replaced(postgres_url: str, tmp_path: Path, tiny_tensors) -> None:
    """A restart or an idle timeout ends a long-lived process's pooled connections: the next call reconnects."""
    with Repository.init(tmp_path / "repo", db_url=postgres_url) as repo:
        first = repo.commit_tensors(tiny_tensors(0), {}, "first")
        admin = create_engine(parse_url(postgres_url), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            ended = conn.execute(text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE "
                                      "datname = current_database() AND pid <> pg_backend_pid()")).scalar_one()
        admin.dispose()
        assert ended >= 1  # the repository's pooled connection
        assert repo.branches() == {"main": first.id}
