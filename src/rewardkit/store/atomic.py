"""Atomic file writes: a unique temp file beside the target, fsync, rename, fsync the folder.

Every small file the store rewrites in place (``config.json``, ``HEAD``) goes through
:func:`write_atomically`, so a reader sees the old content or the new, never a mix, and two
writers at once never share a temp file. Temp files are named ``.tmp-*`` (:data:`TMP_PREFIX`):
a killed writer's leftovers are what gc removes and fsck reports.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import suppress
from pathlib import Path

TMP_PREFIX = ".tmp-"


def write_atomically(path: str | Path, data: bytes | str) -> None:
    """Replace ``path`` by ``data`` (text is UTF-8 encoded) in one rename, durably."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{TMP_PREFIX}{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
