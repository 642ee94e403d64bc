"""The repository write lock: one writer at a time, on every platform.

The lock is a file created with ``O_CREAT | O_EXCL`` (atomic on every local filesystem,
with or without ``fcntl``), holding JSON ``{"pid", "host", "since", "lease_s", "token"}``.
While it is held, a heartbeat thread refreshes the file's modification time every
``lease_s / 4`` seconds. A waiter takes the lock over when it is stale:

* its process is dead (same host only: a pid means nothing elsewhere), or
* its file was not refreshed for the holder's ``lease_s`` seconds: the holder died on
  another host, or is stopped (``SIGSTOP``, a suspended laptop), which freezes its
  heartbeat too, or
* its file is still empty or half-written :data:`HALF_WRITTEN_S` after it was created: the
  holder was killed between creating and filling it (a holder fills it at once).

The takeover itself runs under a second ``O_EXCL`` file (``<lock>.break``) held for a few
microseconds, and re-checks staleness under it, so two waiters never both take over.
A holder that was taken over finds out with :meth:`FileLock.held` and must then neither
commit nor delete anything.

:func:`sigterm_raises` makes ``SIGTERM`` raise :class:`SystemExit` like ``SIGINT`` raises
:class:`KeyboardInterrupt`, so ``finally`` blocks and undo handlers run when a process is
terminated.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType

#: A lock whose file was not refreshed for this long is taken over (seconds).
LEASE_S = 30.0
#: A lock file still empty or half-written this long after its creation is a killed holder's, and so is a
#: takeover guard (``<lock>.break``) this old: both are held for microseconds (seconds).
HALF_WRITTEN_S = 2.0
#: A waiter says once, on stderr, what it waits for after this long (seconds).
NOTICE_AFTER_S = 3.0


@dataclass(frozen=True)
class Holder:
    """Who holds a lock, as its lock file says.

    Attributes:
        pid: Process id on ``host``.
        host: Host name of the holder.
        since: When it took the lock, Unix time in seconds.
        lease_s: How long the lock stays valid without a heartbeat, in seconds.
        token: Random id of this holding, to tell a takeover from our own lock.
    """

    pid: int
    host: str
    since: float
    lease_s: float
    token: str

    def describe(self) -> str:
        """E.g. ``"pid 1234 on host gpu-3 since 12:00:01 UTC"``."""
        return f"pid {self.pid} on host {self.host} since {time.strftime('%H:%M:%S UTC', time.gmtime(self.since))}"


class FileLock:
    """An exclusive lock on ``path`` that dead or stopped holders cannot keep for ever.

    Use as a context manager; not reentrant. Entering waits as long as the holder is alive
    and refreshing its lease (printing once on stderr what it waits for).

    Args:
        path: The lock file, e.g. ``<repo>/objects/.lock``.
        what: What the lock protects, for the waiting notice, e.g. ``"repository /data/repo"``.
        lease_s: A holder that has not refreshed its file for this long is taken over.
        notice_after_s: Say what we wait for after waiting this long.
    """

    def __init__(
        self,
        path: str | Path,
        what: str,
        *,
        lease_s: float = LEASE_S,
        notice_after_s: float = NOTICE_AFTER_S,
    ) -> None:
        self.path = Path(path)
        self.what = what
        self.lease_s = lease_s
        self.notice_after_s = notice_after_s
        self._token: str | None = None
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def acquire(self) -> None:
        """Wait until the lock is ours, taking over a stale one."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex
        started, noticed, pause = time.monotonic(), False, 0.01
        while not self._try_create(token):
            holder, age = _read(self.path)
            if age is None:  # released meanwhile
                continue
            if self._is_stale(holder, age):
                self._take_over()
                continue
            if not noticed and time.monotonic() - started >= self.notice_after_s:
                noticed = True
                who = holder.describe() if holder else "a process that is just starting"
                print(
                    f"waiting for the lock of {self.what} ({self.path}), held by {who}; it is "
                    f"taken over if that process dies or stops for {holder.lease_s if holder else self.lease_s:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
            time.sleep(pause)
            pause = min(pause * 2, 0.25)
        self._token = token
        self._stop.clear()
        self._heartbeat = threading.Thread(target=self._refresh, name="rewardkit-lock", daemon=True)
        self._heartbeat.start()

    def held(self) -> bool:
        """Return True if the lock file is still ours (False after a takeover)."""
        holder, _ = _read(self.path)
        return self._token is not None and holder is not None and holder.token == self._token

    def release(self) -> None:
        """Stop the heartbeat and remove the lock file if it is still ours."""
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
            self._heartbeat = None
        if self.held():
            with suppress(FileNotFoundError):
                self.path.unlink()
        self._token = None

    # -- internals -------------------------------------------------------------------------

    def _try_create(self, token: str) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.time(),
            "lease_s": self.lease_s,
            "token": token,
        }
        with os.fdopen(fd, "w") as f:
            json.dump(holder, f)
        return True

    def _is_stale(self, holder: Holder | None, age: float) -> bool:
        if age > (holder.lease_s if holder else min(self.lease_s, HALF_WRITTEN_S)):
            return True
        return holder is not None and holder.host == socket.gethostname() and not _pid_alive(holder.pid)

    def _take_over(self) -> None:
        """Remove a stale lock file, re-checked under ``<lock>.break`` so only one waiter does."""
        guard = self.path.with_name(self.path.name + ".break")
        try:
            fd = os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            with suppress(FileNotFoundError):  # a breaker that died within its microseconds
                if time.time() - guard.stat().st_mtime > min(self.lease_s, HALF_WRITTEN_S):
                    guard.unlink()
            time.sleep(0.01)
            return
        os.close(fd)
        try:
            holder, age = _read(self.path)
            if age is not None and self._is_stale(holder, age):
                self.path.unlink()
        finally:
            guard.unlink()

    def _refresh(self) -> None:
        while not self._stop.wait(self.lease_s / 4):
            if self.held():
                with suppress(OSError):
                    os.utime(self.path)


def _read(path: Path) -> tuple[Holder | None, float | None]:
    """Return the holder (None while its file is being written) and the file's age in seconds."""
    try:
        age = time.time() - path.stat().st_mtime
        raw = json.loads(path.read_bytes())
        fields = int(raw["pid"]), str(raw["host"]), float(raw["since"]), float(raw["lease_s"]), str(raw["token"])
        return Holder(*fields), age
    except FileNotFoundError:
        return None, None
    except (ValueError, KeyError, TypeError):  # empty or half-written: judge by age only
        return None, age


def _pid_alive(pid: int) -> bool:
    """Return False if no process ``pid`` runs on this host (zombies count as dead)."""
    if os.name != "posix":  # os.kill(pid, 0) would terminate it on Windows; rely on the lease
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc (macOS), or it just exited
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block, ``SIGTERM`` raises ``SystemExit(143)`` once, so cleanup code runs.

    Later ``SIGTERM`` signals in the block are ignored, so they cannot interrupt that
    cleanup. A no-op outside the main thread, where Python cannot install handlers.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    raised = False

    def handler(signum: int, _frame: FrameType | None) -> None:
        nonlocal raised
        if not raised:
            raised = True
            raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
