"""A throwaway PostgreSQL server for the tests: its own cluster in a temp folder, on a free loopback port.

:func:`start` finds ``initdb``/``pg_ctl`` (on ``PATH``, else the newest ``/usr/lib/postgresql/*/bin``, where
Debian's packages put them), creates a cluster in a new temp folder (a test server only: C locale, no fsync;
the ``postgres`` superuser logs in without a password, other roles with one), and starts it on 127.0.0.1 on a
free port with its socket in that folder, so a system cluster on 5432 (Debian's postinst starts one) never
gets in the way. As root it runs both as the ``postgres`` system user (``runuser``), since PostgreSQL refuses
to run as root. Every test gets a database of its own (:meth:`Server.create_database`), so tests never see
each other's rows.

Anything missing (the binaries, psycopg, the ``postgres`` user when root) or a server that does not start is
returned as a reason to skip, never raised: a machine without PostgreSQL skips those tests visibly.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

SKIP = "PostgreSQL tests skipped: "


@dataclass
class Server:
    """A running throwaway cluster.

    Attributes:
        bin: Folder of its binaries.
        folder: Temp folder holding the cluster (``data/``), its log and its socket.
        port: TCP port on 127.0.0.1.
        run_as: Prefix running a command as the cluster's owner (``runuser -u postgres --`` as root).
    """

    bin: Path
    folder: Path
    port: int
    run_as: list[str]
    databases: int = 0
    _admin_thread: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, "postgres-admin"))
    _next: Future[str] | None = None

    @property
    def url(self) -> str:
        """URL of the server's ``postgres`` database, as the superuser (no password: trust login)."""
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        """URL of database ``name`` on this server."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def create_database(self) -> str:
        """Return the URL of a new empty database. The next one is made meanwhile, in the background (about
        0.2 s each: PostgreSQL copies ``template1``), as old ones are dropped, so a test waits for neither."""
        ready = self._next or self._admin_thread.submit(self._create)
        self._next = self._admin_thread.submit(self._create)
        return ready.result()

    def drop_database(self, url: str) -> None:
        """Drop the database of ``url`` in the background, closing whatever connections a test left open to it."""
        self._admin_thread.submit(self._admin, f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")

    def stop(self) -> None:
        """Stop the server at once and delete its folder."""
        self._admin_thread.shutdown(wait=False, cancel_futures=True)
        subprocess.run([*self.run_as, str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "immediate",
                        "-w", "stop"], capture_output=True, check=False)
        shutil.rmtree(self.folder, ignore_errors=True)

    def _create(self) -> str:
        self.databases += 1  # only the admin thread counts
        name = f"test_{self.databases}"
        self._admin(f"CREATE DATABASE {name}")
        return self.database_url(name)

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(sql)


def find_bin() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``: on ``PATH``, else the newest ``/usr/lib/postgresql/N/bin``."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).resolve().parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start() -> Server | str:
    """Start a throwaway server; return it, or the reason (starting with :data:`SKIP`) it cannot run here."""
    try:
        import psycopg  # noqa: F401 - the driver rewardkit uses for postgresql:// URLs
    except ImportError:
        return SKIP + "psycopg is not installed (pip install 'rewardkit[postgres]')"
    bin = find_bin()
    if bin is None:
        return SKIP + "no initdb/pg_ctl on PATH or in /usr/lib/postgresql/*/bin (apt-get install postgresql)"
    run_as: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="rewardkit-pg-"))
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(folder)
            return SKIP + "running as root and there is no 'postgres' user to run the server as"
        os.chown(folder, owner.pw_uid, owner.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    data, log = folder / "data", folder / "server.log"
    steps = [
        [str(bin / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--encoding=UTF8",
         "--locale=C", "--no-sync"],
    ]
    port = _free_port()
    options = (f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync=off -c synchronous_commit=off "
               "-c full_page_writes=off -c max_connections=300")
    steps.append([str(bin / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start"])
    for step in steps:
        if step[0].endswith("pg_ctl"):  # the superuser logs in without a password, any other role with one
            (data / "pg_hba.conf").write_text("local all all trust\nhost all postgres 127.0.0.1/32 trust\n"
                                              "host all all 127.0.0.1/32 scram-sha-256\n")
        try:
            done = subprocess.run([*run_as, *step], capture_output=True, text=True, check=False, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            shutil.rmtree(folder, ignore_errors=True)
            return SKIP + f"{Path(step[0]).name} did not run: {exc}"
        if done.returncode != 0:
            tail = " ".join((done.stderr + (log.read_text() if log.exists() else "")).split())[-300:]
            Server(bin, folder, port, run_as).stop()
            return SKIP + f"{Path(step[0]).name} failed (exit {done.returncode}): {tail}"
    return Server(bin, folder, port, run_as)
