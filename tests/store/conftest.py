from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from sqlalchemy import text

from rewardkit.store import Repository

# -- one store suite, every backend ----------------------------------------------------------------------
# A test (or a module, by `pytestmark`) marked `backends` runs once per metadata database: its `repo` is on
# SQLite, then on a fresh database of the throwaway PostgreSQL server (tests/postgres.py; skipped, with the
# reason, where none can start). `@pytest.mark.backends("sqlite")` keeps a test that reads meta.db itself on
# SQLite. Unmarked tests run on SQLite only.

BACKENDS = ("sqlite", "postgresql")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("backends")
    if marker is not None and "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", marker.args or BACKENDS)


@pytest.fixture
def backend() -> str:
    """The metadata database of `repo` (parametrised for tests marked `backends`)."""
    return "sqlite"


@pytest.fixture
def db_url(backend: str, request: pytest.FixtureRequest) -> str | None:
    """URL of the test's metadata database: None (SQLite in the repository) or a new PostgreSQL database."""
    return request.getfixturevalue("postgres_url") if backend == "postgresql" else None


@pytest.fixture
def repo(tmp_path: Path, db_url: str | None) -> Repository:
    with Repository.init(tmp_path / "repo", db_url=db_url) as r:
        yield r


def tiny_tensors(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "embed.weight": torch.randn(10, 4, generator=g),
        "head.weight": torch.randn(1, 4, generator=g).to(torch.bfloat16),
        "head.bias": torch.zeros(1),
        "position_ids": torch.arange(8, dtype=torch.int64),
    }


def write_model(folder: Path, tensors: dict[str, torch.Tensor] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    save_file(
        tensors or tiny_tensors(), str(folder / "model.safetensors"), metadata={"format": "pt"}
    )
    (folder / "config.json").write_text('{"model_type": "tiny"}\n')
    (folder / "tokenizer").mkdir(exist_ok=True)
    (folder / "tokenizer" / "vocab.txt").write_text("[PAD]\nhello\n")
    return folder


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return write_model(tmp_path / "model")


def snapshot(repo: Repository) -> tuple[object, ...]:
    """Everything a failed operation must leave unchanged."""
    objects = sorted(str(p.relative_to(repo.path)) for p in (repo.path / "objects").rglob("*"))
    return (repo.branches(), objects, repo.commits.count(), repo.refs.reflog("refs/heads/main"))


# Test modules get the helpers as fixtures: tests/ is not a package, so they cannot import them.
@pytest.fixture(name="tiny_tensors")
def _tiny_tensors_fixture():
    return tiny_tensors


@pytest.fixture(name="write_model")
def _write_model_fixture():
    return write_model


@pytest.fixture(name="snapshot")
def _snapshot_fixture():
    return snapshot


def wait_until_blocked(repo: Repository) -> None:
    """Return once another connection waits for a lock in ``repo``'s database.

    On PostgreSQL, seen in ``pg_stat_activity``; on SQLite (whose waiter polls a file lock, unseen) after 1 s.
    """
    if repo.engine.dialect.name != "postgresql":
        time.sleep(1)
        return
    query = text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = "
                 "'Lock'")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with repo.engine.connect() as conn:
            if conn.execute(query).scalar_one():
                return
        time.sleep(0.02)
    raise AssertionError("no connection waited for a lock within 30 s")


@pytest.fixture(name="wait_until_blocked")
def _wait_until_blocked_fixture():
    return wait_until_blocked
