"""Helpers the CLI tests import (conftest.py is for fixtures only)."""

import json
import shutil
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


def variant(src: Path, dst: Path, shift: float, config: dict | None = None) -> Path:
    """A copy of the model folder with every float tensor moved by ``shift`` (and config.json updated)."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    tensors = {n: t + shift if t.is_floating_point() else t for n, t in load_file(src / "model.safetensors").items()}
    save_file(tensors, str(dst / "model.safetensors"), metadata={"format": "pt"})
    if config:
        path = dst / "config.json"
        path.write_text(json.dumps(json.loads(path.read_text()) | config, indent=2))
    return dst
