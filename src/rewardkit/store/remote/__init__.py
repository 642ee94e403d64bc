"""TEMPORARY shim (helper remote-cli) until remote-core's package lands: on merge, keep remote-core's file.

Adapts the first slice (``store/remote.py``) to the pinned signatures of design-7.md.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any, Protocol

# ruff: noqa: D101, D102, D103

_spec = importlib.util.spec_from_file_location("rewardkit.store._remote_v1", Path(__file__).parent.parent / "remote.py")
_v1 = importlib.util.module_from_spec(_spec)
sys.modules["rewardkit.store._remote_v1"] = _v1
_spec.loader.exec_module(_v1)

Remote = _v1.Remote
TransferReport = _v1.TransferReport


class Progress(Protocol):
    def start(self, what: str, objects: int, bytes: int) -> None: ...
    def advance(self, bytes: int) -> None: ...


def push(repo: Any, remote: Any, branches: Any = None, *, force: bool = False, jobs: int = 8,
         progress: Any = None) -> Any:
    branches = [branches] if isinstance(branches, str) else list(branches) if branches else [repo.current_branch()]
    reports = [_v1.push(repo, remote, b, force=force) for b in branches]
    return _sum(reports, progress, f"push {remote.name}")


def fetch(repo: Any, remote: Any, branches: Any = None, *, objects_for: Any = None, jobs: int = 8,
          progress: Any = None) -> Any:
    return _sum([_v1.fetch(repo, remote)], progress, f"fetch {remote.name}")


def _sum(reports: list, progress: Any, what: str) -> Any:
    out = TransferReport(commits=sum(r.commits for r in reports), objects=sum(r.objects for r in reports),
                         bytes=sum(r.bytes for r in reports), refs={k: v for r in reports for k, v in r.refs.items()})
    if progress is not None:
        progress.start(what, out.objects, out.bytes)
        for _ in range(out.objects):
            progress.advance(out.bytes // max(out.objects, 1))
    return out
