"""A repository's ``config.json``: read it, replace it atomically (no torch import, for light callers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rewardkit.errors import StoreError
from rewardkit.store.atomic import write_atomically

CONFIG_FILE = "config.json"


def read_config(repo_path: str | Path) -> dict[str, Any]:
    """Return the repository's ``config.json`` as a dict.

    Raises:
        FileNotFoundError: If there is no ``config.json`` (callers say what that means there).
        StoreError: If it is unreadable or not a JSON object.
    """
    path = Path(repo_path) / CONFIG_FILE
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:
        raise StoreError(f"{path} is unreadable: {exc}") from None
    if not isinstance(config, dict):
        raise StoreError(f"{path} is unreadable: not a JSON object")
    return config


def write_config(repo_path: str | Path, config: dict[str, Any]) -> None:
    """Replace the repository's ``config.json`` by ``config``, atomically."""
    write_atomically(Path(repo_path) / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
