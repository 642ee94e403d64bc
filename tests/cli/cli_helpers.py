"""Helpers the CLI tests import (conftest.py is for fixtures only)."""

import json
from pathlib import Path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def repo_snapshot(repo: Path) -> tuple:
    """What must not change when a command fails: object files, refs, commits."""
    import sqlite3

    objects = sorted(str(p.relative_to(repo)) for p in (repo / "objects").rglob("*") if p.is_file())
    with sqlite3.connect(repo / "meta.db") as db:
        refs = sorted(db.execute("select * from refs").fetchall())
        commits = sorted(r[0] for r in db.execute("select id from commits").fetchall())
    return objects, refs, commits


def repo_bytes(repo: Path) -> dict[str, bytes]:
    """Every file of a repository with its bytes: a failed command must leave all of them as they were."""
    return {str(p.relative_to(repo)): p.read_bytes() for p in sorted(repo.rglob("*")) if p.is_file()}
