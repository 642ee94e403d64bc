"""The repository write lock: portable, and never blocked for ever by a dead or stopped holder."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import rewardkit
from rewardkit.store.lock import FileLock

SRC = str(Path(rewardkit.__file__).resolve().parents[1])  # the code under test, for child processes
posix_only = pytest.mark.skipif(os.name != "posix", reason="needs POSIX signals")


def _holder_process(lock: Path, lease_s: float) -> subprocess.Popen[str]:
    """A process that takes ``lock`` (lease ``lease_s``), says "locked", and waits for stdin to close."""
    code = (
        "import sys\n"
        "from rewardkit.store.lock import FileLock\n"
        f"lock = FileLock({str(lock)!r}, 'test', lease_s={lease_s})\n"
        "lock.acquire()\n"
        "print('locked', flush=True)\n"
        "sys.stdin.read()\n"
        "print('held' if lock.held() else 'lost', flush=True)\n"
    )
    env = {**os.environ, "PYTHONPATH": SRC}
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    assert child.stdout is not None and child.stdout.readline() == "locked\n"
    return child


def test_lock_is_exclusive_and_released(tmp_path: Path) -> None:
    path = tmp_path / ".lock"
    with FileLock(path, "test") as lock:
        holder = json.loads(path.read_text())
        assert (holder["pid"], holder["host"]) == (os.getpid(), socket.gethostname())
        assert lock.held()
        entered = threading.Event()

        def other() -> None:
            with FileLock(path, "test"):
                entered.set()

        thread = threading.Thread(target=other)
        thread.start()
        assert not entered.wait(0.3)
    assert entered.wait(5)
    thread.join()
    assert not path.exists()


def test_a_lock_left_by_a_dead_process_does_not_block(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    path = tmp_path / ".lock"
    path.write_text(
        json.dumps(
            {"pid": int(dead.stdout), "host": socket.gethostname(), "since": time.time(), "lease_s": 3600.0,
             "token": "x"}
        )
    )
    start = time.monotonic()
    with FileLock(path, "test") as lock:
        assert lock.held()
    assert time.monotonic() - start < 2


def test_a_lock_not_refreshed_for_its_lease_is_taken_over(tmp_path: Path) -> None:
    """A holder on another host (pid unknowable) that stopped refreshing, or a half-written lock file."""
    path = tmp_path / ".lock"
    path.write_text(json.dumps({"pid": 1, "host": "elsewhere", "since": 0.0, "lease_s": 1.0, "token": "x"}))
    old = time.time() - 5
    os.utime(path, (old, old))
    with FileLock(path, "test") as lock:
        assert lock.held()
    path.write_text("")  # a writer that died between creating and filling the file
    os.utime(path, (old, old))
    with FileLock(path, "test", lease_s=1.0) as lock:
        assert lock.held()


def test_a_lock_file_left_empty_by_a_killed_holder_does_not_wait_out_the_lease(tmp_path: Path) -> None:
    """SIGKILL between creating the lock file and writing who holds it: no pid to check, but no 30 s wait."""
    path = tmp_path / ".lock"
    path.write_text("")
    old = time.time() - 3
    os.utime(path, (old, old))
    start = time.monotonic()
    with FileLock(path, "test") as lock:  # default lease: 30 s
        assert lock.held()
    assert time.monotonic() - start < 2


@posix_only
def test_a_stopped_holder_loses_the_lock_after_its_lease_and_knows_it(tmp_path: Path) -> None:
    path = tmp_path / ".lock"
    child = _holder_process(path, lease_s=1.0)
    try:
        entered = threading.Event()

        def waiter() -> None:
            with FileLock(path, "test"):
                entered.set()
                time.sleep(0.5)  # hold it while the child wakes up

        thread = threading.Thread(target=waiter)
        thread.start()
        assert not entered.wait(2.0)  # a live holder keeps its lease by its heartbeat
        os.kill(child.pid, signal.SIGSTOP)
        assert entered.wait(10)  # a stopped one does not
        os.kill(child.pid, signal.SIGCONT)
        out, _ = child.communicate("", timeout=30)
        assert out == "lost\n"
        thread.join()
    finally:
        child.kill()
        child.wait()


@posix_only
def test_a_waiter_says_once_what_it_waits_for(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / ".lock"
    child = _holder_process(path, lease_s=30.0)
    try:
        threading.Timer(1.0, child.stdin.close).start()  # type: ignore[union-attr]
        with FileLock(path, "repository R", notice_after_s=0.3):
            pass
    finally:
        child.wait(timeout=30)
    err = capfd.readouterr().err
    assert err.count("waiting for the lock") == 1
    assert f"waiting for the lock of repository R ({path}), held by pid {child.pid} on host" in err
    assert "taken over if that process dies or stops for 30 s" in err


def test_a_takeover_guard_left_by_a_killed_breaker_does_not_wait_out_the_lease(tmp_path: Path) -> None:
    """SIGKILL inside the microseconds a waiter takes over a dead holder's lock leaves <lock>.break behind."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    path = tmp_path / ".lock"
    path.write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(), "since": time.time(),
                                "lease_s": 30.0, "token": "x"}))
    guard = tmp_path / ".lock.break"
    guard.write_text("")
    old = time.time() - 3
    os.utime(guard, (old, old))
    start = time.monotonic()
    with FileLock(path, "test") as lock:
        assert lock.held()
    assert time.monotonic() - start < 2 and not guard.exists()
