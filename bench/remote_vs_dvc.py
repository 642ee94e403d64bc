"""rewardkit's push and clone against ``dvc push`` / ``dvc pull``, to a directory remote and to moto S3.

One run builds the chain of versions of ``store_vs_dvc_mlflow.py`` (a BERT reward model of at
least ``--size-gib``, then head-only changes, the top two layers, one full fine-tune and a last
head-only change; see that script) and, for each kind of remote in ``--remote``, gives the same
chain to both tools:

- rewardkit: ``Repository.commit_dir`` (not timed), then ``rewardkit.store.remote.push`` after
  every version; a clone is ``Repository.init`` + ``fetch`` + ``checkout`` of the fetched
  ``main`` into a folder, once with every version's objects and once with the last version's
  only (``fetch(..., objects_for=[head])``);
- DVC: ``dvc add`` + ``git commit`` (not timed), then ``dvc push`` after every version; a clone
  is ``git clone`` + ``dvc pull`` (the last version), and ``git clone`` + ``dvc pull
  --all-commits`` (every version).

The remotes are a fresh folder (``dir``) and a bucket on a moto S3 server (``s3``) that this
script starts in a child process on a free loopback port (``moto.server.ThreadedMotoServer``,
``AWS_*`` test credentials), one server per tool so its memory is that tool's. DVC talks to it
through dvc-s3 with the remote's ``endpointurl``; rewardkit through s3fs with ``endpoint_url``.

Bytes moved by a push are the bytes of the objects newly present on the remote after it (a
listing before and after: new keys, or keys rewritten with another size or time), for both
tools; rewardkit's own ``TransferReport.bytes`` is shown beside it. The changed tensors of a
version are those whose object id differs from its parent's in rewardkit's manifests; their
raw size is ``prod(shape) x dtype size``. Target (issue 7): after the first version, a push
moves at most 1.05x the changed tensors' bytes.

    PYTHONPATH=src .venv/bin/python bench/remote_vs_dvc.py --json bench/remote_vs_dvc.json
    PYTHONPATH=src .venv/bin/python bench/remote_vs_dvc.py --smoke --remote dir   # < 1 min
    PYTHONPATH=src .venv/bin/python bench/remote_vs_dvc.py --report bench/remote_vs_dvc.json

Method, columns and results: bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import io
import json
import logging
import math
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cpu_meter import CpuMeter
from store_vs_dvc_mlflow import (
    WEIGHTS,
    _version,
    apply_change,
    build_base,
    changed_names,
    digest,
    file_digest,
    peak_rss,
    tree_bytes,
    version_plan,
    write_model_files,
    write_version,
)

REMOTES = ("dir", "s3")
TOOLS = ("rewardkit", "dvc")
LABELS = {"rewardkit": "rewardkit", "dvc": "DVC", "dir": "directory remote", "s3": "moto S3 remote"}
TARGET_PUSH_VS_CHANGED = 1.05
ATTEMPTS = 3  # a failed push is tried again (and reported), as a user would
SMOKE = {"size_gib": 0.005, "versions": 4}
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                  "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
DTYPE_BYTES = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2,
               "U16": 2, "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


# -- the moto S3 server, in a child process ----------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_moto(port: int) -> None:
    """``--moto-server PORT``: run moto's S3 server on 127.0.0.1:PORT until killed."""
    import logging
    import threading

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False).start()
    threading.Event().wait()


class MotoServer:
    """A moto S3 server in a child process, on a free loopback port, with its own temp folder.

    moto keeps every object in a ``SpooledTemporaryFile``: in memory up to 5 MiB, then an
    unlinked temp file in ``TMPDIR`` (here ``tmp``, under the scratch folder), so its disk use
    ends with the process. A multipart upload is joined in memory on completion and a GET
    reads the whole object, so the server's peak memory is a few times the largest object it
    handles (DVC's whole ``model.safetensors``, rewardkit's largest tensor): read it with
    :meth:`peak_rss`.
    """

    def __init__(self, tmp: Path) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = tmp.parent / "moto.log"  # a file, not a pipe: a full pipe nobody reads would stall the server
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--moto-server", str(self.port)],
                env=os.environ | {"TMPDIR": str(tmp)}, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                break
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the moto server did not start: {self.output()}")
            time.sleep(0.1)

    def output(self) -> str:
        """The end of what the server printed (its errors)."""
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""

    def _status(self, key: str) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) * 1024
        return 0

    def peak_rss(self) -> int:
        """The server's peak resident memory so far (bytes; ``VmHWM``), 0 if unreadable."""
        try:
            return self._status("VmHWM:")
        except OSError:
            return 0

    def reset_peak(self) -> None:
        """Start the server's ``VmHWM`` afresh (``/proc/PID/clear_refs``), so the next reading is one operation's."""
        with contextlib.suppress(OSError):
            Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")

    def cpu_seconds(self) -> float:
        """CPU time the server has used so far (user + system), 0 if unreadable."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def create_bucket(self, name: str) -> None:
        import boto3

        boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1").create_bucket(Bucket=name)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# -- a remote, as both tools see it: a URL and a listing ---------------------------------------


class RemotePlace:
    """Where one tool pushes: a folder, or a prefix in a bucket on a moto server."""

    def __init__(self, kind: str, root: Path, tool: str, server: MotoServer | None) -> None:
        self.kind, self.server = kind, server
        if kind == "dir":
            self.folder = root / "remote"
            self.folder.mkdir(parents=True)
            self.url = str(self.folder)
        else:
            assert server is not None
            self.bucket = f"bench-{tool}"
            server.create_bucket(self.bucket)
            self.url = f"s3://{self.bucket}/{tool}"

    @property
    def endpoint(self) -> str | None:
        return self.server.endpoint if self.server else None

    def listing(self) -> dict[str, tuple[int, str]]:
        """Every object on the remote: key (relative to the remote's root) -> (size, version stamp)."""
        if self.kind == "dir":
            out = {}
            for folder, _, files in os.walk(self.folder):
                for name in files:
                    st = os.lstat(os.path.join(folder, name))
                    out[os.path.relpath(os.path.join(folder, name), self.folder)] = (st.st_size, str(st.st_mtime_ns))
            return out
        import boto3

        client = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1")
        prefix = self.url.split("/", 3)[3] + "/"
        out = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for o in page.get("Contents", []):
                out[o["Key"][len(prefix):]] = (o["Size"], o["ETag"] + str(o["LastModified"]))
        return out


def moved(before: dict[str, tuple[int, str]], after: dict[str, tuple[int, str]]) -> dict[str, int]:
    """Keys new on the remote, or rewritten, between two listings -> their size (bytes)."""
    return {k: v[0] for k, v in after.items() if before.get(k) != v}


# -- timing one operation ----------------------------------------------------------------------


def timed(server: MotoServer | None, fn: Any) -> tuple[Any, dict]:
    """Run ``fn()`` after ``os.sync()``; returns its result and seconds, other CPU, the server's CPU and peak memory.

    The moto server is another process, so its work shows as other CPU in ``cpu_meter``; it
    is subtracted (and reported as ``server_cpu_seconds``), so ``other_cpu`` is the rest of
    the machine.
    """
    os.sync()  # the previous step's dirty pages are written now, not charged to this operation
    if server:
        server.reset_peak()
    server_before = server.cpu_seconds() if server else 0.0
    with CpuMeter() as meter:
        start = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - start
    server_cpu = (server.cpu_seconds() - server_before) if server else 0.0
    u = meter.usage
    other = None if u.other_cpu_seconds is None else \
        min(1.0, max(0.0, u.other_cpu_seconds - server_cpu) / (u.wall_seconds * u.cores))
    return result, {"seconds": seconds, "own_cpu_seconds": u.own_cpu_seconds, "server_cpu_seconds": server_cpu,
                    "server_peak_rss": server.peak_rss() if server else None, "other_cpu": other}


def _git(*argv: str, cwd: Path) -> None:
    subprocess.run(["git", *argv], cwd=cwd, check=True, stdout=subprocess.DEVNULL)


# -- the two tools -----------------------------------------------------------------------------


class RewardkitTool:
    """A rewardkit repository in ``root/repo`` pushing to ``place``; clones into ``root/clone-*``."""

    name = "rewardkit"

    def __init__(self, root: Path, place: RemotePlace) -> None:
        from rewardkit.store import Repository

        self.root, self.place = root, place
        self.model = root / "model"
        self.repo_path = root / "repo"
        Repository.init(self.repo_path).close()
        self.heads: list[str] = []
        self.manifests: list[str] = []

    def remote(self):  # noqa: ANN201 (rewardkit.store.remote.Remote)
        from rewardkit.store.remote import Remote

        options = {"endpoint_url": self.place.endpoint} if self.place.endpoint else {}
        return Remote("origin", self.place.url, **options)

    def commit(self, message: str) -> None:
        from rewardkit.store import Repository

        with Repository.open(self.repo_path) as repo:
            commit = repo.commit_dir(self.model, message)
        self.heads.append(commit.id)
        self.manifests.append(commit.manifest_id)

    def push(self) -> dict:
        from rewardkit.store import Repository
        from rewardkit.store.remote import push

        with Repository.open(self.repo_path) as repo:
            branch = repo.current_branch()
            remote = self.remote()
            # the pinned signature takes a list of branches; the first slice took one branch
            names = "branches" in inspect.signature(push).parameters
            report, op = timed(self.place.server, lambda: push(repo, remote, [branch] if names else branch))
        return op | {"report_bytes": report.bytes, "report_objects": report.objects, "report_commits": report.commits}

    def changed_tensors(self) -> list[dict[str, Any]]:
        """Per version: the tensors whose object id differs from the parent's, and their raw bytes."""
        from rewardkit.store import Repository

        out, previous = [], {}
        with Repository.open(self.repo_path) as repo:
            for id in self.heads:
                tensors = repo.manifest(id).tensors
                names = [n for n, e in tensors.items() if previous.get(n) != e.id]
                raw = sum(math.prod(tensors[n].shape) * DTYPE_BYTES[tensors[n].dtype] for n in names)
                out.append({"names": names, "raw_bytes": raw})
                previous = {n: e.id for n, e in tensors.items()}
        return out

    def clone(self, which: str) -> tuple[dict, Path]:
        """Init a repository, fetch from the remote (every version, or the last one's objects), check out main."""
        from rewardkit.store import Repository
        from rewardkit.store.remote import fetch

        dest = self.root / f"clone-{which}"
        remote = self.remote()
        partial = "objects_for" in inspect.signature(fetch).parameters
        if which == "last" and not partial:
            return {"skipped": "this rewardkit's fetch has no objects_for (partial clone)"}, Path()
        head = self.heads[-1]

        def clone() -> Any:
            repo = Repository.init(dest / "repo")
            try:
                report = fetch(repo, remote, objects_for=[head]) if which == "last" else fetch(repo, remote)
                fetched = report.refs.get("refs/remotes/origin/main")
                if fetched != head:
                    raise RuntimeError(f"clone fetched origin/main = {fetched}, expected {head}")
                repo.checkout(head, dest / "model")
            finally:
                repo.close()
            return report

        report, op = timed(self.place.server, clone)
        fetched = tree_bytes(dest / "repo" / "objects")["apparent"]
        return op | {"report_bytes": report.bytes, "report_objects": report.objects,
                     "bytes_fetched": fetched}, dest / "model" / WEIGHTS

    def drop_clone(self, which: str) -> None:
        shutil.rmtree(self.root / f"clone-{which}", ignore_errors=True)


class DvcTool:
    """A git + DVC repository in ``root/repo`` whose default remote is ``place``."""

    name = "dvc"

    def __init__(self, root: Path, place: RemotePlace) -> None:
        self.root, self.place = root, place
        self.repo = root / "repo"
        self.model = self.repo / "model"  # DVC tracks files inside its repository
        self.repo.mkdir(parents=True)
        _git("init", "-q", cwd=self.repo)
        _git("config", "user.name", "bench", cwd=self.repo)
        _git("config", "user.email", "bench@example.invalid", cwd=self.repo)
        self.dvc("init", "-q", cwd=self.repo)
        self.dvc("config", "core.analytics", "false", cwd=self.repo)
        self.dvc("config", "core.check_update", "false", cwd=self.repo)
        self.dvc("remote", "add", "-d", "origin", place.url, cwd=self.repo)
        if place.endpoint:
            self.dvc("remote", "modify", "origin", "endpointurl", place.endpoint, cwd=self.repo)
        _git("add", "-A", cwd=self.repo)
        _git("commit", "-q", "-m", "dvc init", cwd=self.repo)

    @staticmethod
    def dvc(*argv: str, cwd: Path) -> None:
        """``dvc ARGV`` in this process, in ``cwd`` (DVC's own ``main``, as the command line runs it)."""
        from dvc.cli import main

        output = io.StringIO()  # its messages, kept for the error: `-q` would hide the errors too
        # DVC's log handlers hold the stdout/stderr of their set-up; point them here for the call
        handlers = [h for h in logging.getLogger("dvc").handlers if isinstance(h, logging.StreamHandler)]
        streams = [h.stream for h in handlers]
        for h in handlers:
            h.stream = output  # not setStream: it flushes the old stream, which a test may have closed
        try:
            with contextlib.chdir(cwd), contextlib.redirect_stdout(output):
                code = main(list(argv))
        finally:
            for h, stream in zip(handlers, streams, strict=True):
                h.stream = stream
        if code != 0:
            said = " | ".join(line.strip() for line in output.getvalue().splitlines() if line.strip())
            raise RuntimeError(f"dvc {' '.join(argv)} exited with {code} in {cwd}: {said[-1500:]}")

    def commit(self, message: str) -> None:
        self.dvc("add", "-q", "model", cwd=self.repo)
        _git("add", "model.dvc", ".gitignore", cwd=self.repo)
        _git("commit", "-q", "-m", message, cwd=self.repo)

    def push(self) -> dict:
        return timed(self.place.server, lambda: self.dvc("push", cwd=self.repo))[1]

    def drop_local_cache(self) -> None:
        """Delete the pushing repository's cache (the clones do not need it; it saves a chain's worth of disk)."""
        shutil.rmtree(self.repo / ".dvc" / "cache", ignore_errors=True)

    def clone(self, which: str) -> tuple[dict, Path]:
        """``git clone`` the repository, then ``dvc pull`` (``--all-commits`` for every version)."""
        dest = self.root / f"clone-{which}"

        def clone() -> None:
            _git("clone", "-q", str(self.repo), str(dest), cwd=self.root)
            self.dvc("pull", *(["--all-commits"] if which == "all" else []), cwd=dest)

        _, op = timed(self.place.server, clone)
        return op | {"bytes_fetched": tree_bytes(dest / ".dvc" / "cache")["apparent"]}, dest / "model" / WEIGHTS

    def drop_clone(self, which: str) -> None:
        shutil.rmtree(self.root / f"clone-{which}", ignore_errors=True)


# -- one tool, one remote: the chain, then the clones ------------------------------------------


def bench_pair(kind: str, tool_name: str, scratch: Path, config: Any, base: dict, plan: list[str],
               expected: dict[int, str], seed: int) -> dict:
    """Commit and push every version of the chain with one tool to a fresh remote of ``kind``; clone it back.

    Returns:
        ``{"pushes": [...], "clones": {...}, "server_peak_rss": ..., "changed": [...] (rewardkit)}``.
    """
    root = scratch / f"{kind}-{tool_name}"
    root.mkdir()
    server = MotoServer(root / "moto-tmp") if kind == "s3" else None
    try:
        place = RemotePlace(kind, root, tool_name, server)
        tool = (RewardkitTool if tool_name == "rewardkit" else DvcTool)(root, place)
        write_model_files(tool.model, config)
        state = {n: t.clone() for n, t in base.items()}
        pushes, changed_by_plan = [], []
        for index, version in enumerate(plan):
            changed_by_plan.append(apply_change(state, version, seed=seed + index,
                                                num_layers=config.num_hidden_layers) if index else list(state))
            write_version(tool.model, state)
            tool.commit(f"v{index}: {version}")
            before = place.listing()
            op = attempt(tool.push, f"{kind} {tool_name} push v{index}", server)
            new = moved(before, place.listing())  # a failed attempt's leftovers count too
            manifest = getattr(tool, "manifests", [None])[-1]
            op |= {"kind": version, "bytes_moved": sum(new.values()), "keys_moved": len(new),
                   "bytes_by_area": by_area(new, manifest)}
            pushes.append(op)
            extra = f"  report {op['report_bytes'] / 2**20:9.2f} MiB" if "report_bytes" in op else ""
            extra += f"  moto peak {op['server_peak_rss'] / 2**20:6.0f} MiB" if server else ""
            print(f"  {kind:3s} {tool_name:9s} push v{index} ({version:6s}) {op['seconds']:7.2f} s  "
                  f"moved {op['bytes_moved'] / 2**20:9.2f} MiB in {op['keys_moved']:4d} keys{extra}", flush=True)
        out: dict[str, Any] = {"pushes": pushes}
        if tool_name == "rewardkit":
            out["changed"] = tool.changed_tensors()
            for index, (c, names) in enumerate(zip(out["changed"], changed_by_plan, strict=True)):
                if set(c["names"]) != set(names):  # the manifests must say what the chain changed
                    raise RuntimeError(f"v{index}: the manifests changed {sorted(set(c['names']) ^ set(names))[:5]} "
                                       "unlike the chain")
        else:
            tool.drop_local_cache()
        del state
        clones = {}
        for which in ("last", "all"):
            op, weights = tool.clone(which)
            if "skipped" not in op:
                op["identical"] = file_digest(weights) == expected[len(plan) - 1]
                peak = f"  moto peak {op['server_peak_rss'] / 2**20:6.0f} MiB" if server else ""
                print(f"  {kind:3s} {tool_name:9s} clone ({which:4s}) {op['seconds']:7.2f} s  fetched "
                      f"{op['bytes_fetched'] / 2**20:9.2f} MiB  bit-identical: {op['identical']}{peak}", flush=True)
            else:
                print(f"  {kind:3s} {tool_name:9s} clone ({which}) skipped: {op['skipped']}", flush=True)
            clones[which] = op
            tool.drop_clone(which)
        out["clones"] = clones
        out["remote_bytes"] = sum(v[0] for v in place.listing().values())
        ops = pushes + [c for c in clones.values() if "seconds" in c]
        out["server_peak_rss"] = max(o["server_peak_rss"] for o in ops) if server else None
        return out
    finally:
        if server:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


def attempt(fn: Any, what: str, server: MotoServer | None = None) -> dict:
    """``fn()``, tried up to ``ATTEMPTS`` times as a user would rerun a failed push; the failures are kept.

    On a loaded machine the moto server can be slow enough for a client to give up (a 1 GiB
    multipart upload is joined in the server's memory); the retry is timed alone, and the
    table's footnote names every failed attempt.

    Raises:
        RuntimeError: Every attempt failed.
    """
    failures = []
    for _ in range(ATTEMPTS):
        try:
            return fn() | {"failed_attempts": failures}
        except Exception as exc:  # noqa: BLE001 (either tool's error, kept and reported)
            said = server.output()[-500:].strip() if server else ""
            failures.append(f"{type(exc).__name__}: {exc}"[-2000:] + (f" | moto's log: {said}" if said else ""))
            print(f"  {what} failed ({failures[-1][-300:]}); trying again", flush=True)
    raise RuntimeError(f"{what} failed {ATTEMPTS} times; last: {failures[-1]}")


def by_area(new: dict[str, int], manifest: str | None = None) -> dict[str, int]:
    """Bytes moved by the remote's top folder: ``objects``, ``commits``, ``refs``, ``logs``; ``files`` (DVC).

    rewardkit's manifest object (id ``manifest``) is counted apart, as ``manifest``.
    """
    manifest_key = f"objects/{manifest[:2]}/{manifest[2:]}" if manifest else None
    out: dict[str, int] = {}
    for key, size in new.items():
        area = "manifest" if key == manifest_key else key.split("/", 1)[0]
        out[area] = out.get(area, 0) + size
    return out


# -- summary and report ------------------------------------------------------------------------


def summarize(results: dict[str, dict[str, dict]], plan: list[str]) -> dict:
    """Per remote: per-version bytes and seconds of both tools, ratios, totals, clones, and the target."""
    summary: dict[str, Any] = {}
    for kind, tools in results.items():
        rk, dvc = tools["rewardkit"], tools["dvc"]
        changed = [c["raw_bytes"] for c in rk["changed"]]
        versions = []
        for i, version in enumerate(plan):
            r, d = rk["pushes"][i], dvc["pushes"][i]
            versions.append({
                "version": i, "kind": version, "changed_bytes": changed[i],
                "rewardkit_bytes": r["bytes_moved"], "rewardkit_report_bytes": r["report_bytes"],
                "rewardkit_tensor_object_bytes": r["bytes_by_area"].get("objects", 0),
                "dvc_bytes": d["bytes_moved"], "rewardkit_seconds": r["seconds"], "dvc_seconds": d["seconds"],
                "bytes_ratio": r["bytes_moved"] / d["bytes_moved"] if d["bytes_moved"] else None,
                "seconds_ratio": r["seconds"] / d["seconds"],
                "rewardkit_vs_changed": r["bytes_moved"] / changed[i] if changed[i] else None,
                "dvc_vs_changed": d["bytes_moved"] / changed[i] if changed[i] else None,
            })
        later = versions[1:]
        changed_later = sum(v["changed_bytes"] for v in later)
        rk_later = sum(v["rewardkit_bytes"] for v in later)
        dvc_later = sum(v["dvc_bytes"] for v in later)
        worst = max(later, key=lambda v: v["rewardkit_vs_changed"] or 0)
        tensors_only = max(v["rewardkit_tensor_object_bytes"] / v["changed_bytes"] for v in later)
        overhead = [v["rewardkit_bytes"] - v["rewardkit_tensor_object_bytes"] for v in later]
        summary[kind] = {
            "versions": versions,
            "push_seconds_total": {t: sum(p["seconds"] for p in tools[t]["pushes"]) for t in TOOLS},
            "push_bytes_total": {t: sum(p["bytes_moved"] for p in tools[t]["pushes"]) for t in TOOLS},
            "remote_bytes": {t: tools[t]["remote_bytes"] for t in TOOLS},
            "clones": {t: tools[t]["clones"] for t in TOOLS},
            "server_peak_rss": {t: tools[t]["server_peak_rss"] for t in TOOLS},
            "failed_attempts": [f"{t} push v{i}: {f}" for t in TOOLS for i, p in enumerate(tools[t]["pushes"])
                                for f in p.get("failed_attempts", [])],
            "other_cpu_max": max((o["other_cpu"] or 0.0) for t in TOOLS for o in tools[t]["pushes"]
                                 + [c for c in tools[t]["clones"].values() if "seconds" in c]),
            "after_first": {"changed_bytes": changed_later, "rewardkit_bytes": rk_later, "dvc_bytes": dvc_later,
                            "rewardkit_vs_changed": rk_later / changed_later,
                            "dvc_vs_changed": dvc_later / changed_later,
                            "worst_version": worst["version"], "worst_rewardkit_vs_changed":
                            worst["rewardkit_vs_changed"], "worst_rewardkit_bytes": worst["rewardkit_bytes"],
                            "worst_changed_bytes": worst["changed_bytes"],
                            "tensor_objects_vs_changed_max": tensors_only,
                            "overhead_bytes_min": min(overhead), "overhead_bytes_max": max(overhead)},
            "target_met": rk_later <= TARGET_PUSH_VS_CHANGED * changed_later,
            "target_met_every_version": all(v["rewardkit_bytes"] <= TARGET_PUSH_VS_CHANGED * v["changed_bytes"]
                                            for v in later),
        }
    return summary


def _size(n: float) -> str:
    if n >= 2**30:
        return f"{n / 2**30:.2f} GiB"
    if n >= 2**20:
        return f"{n / 2**20:.1f} MiB"
    return f"{n / 2**10:.1f} KiB"


def _ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}x" if x < 100 else f"{x:,.0f}x"


def report(summary: dict, plan: list[str], info: dict) -> None:
    """Print, per remote, a table of pushes (a row per version) and one of clones, then the target lines."""
    from rich import box
    from rich.table import Table

    from rewardkit.cli.render import console

    def say(line: str) -> None:
        console.print(line, soft_wrap=True, highlight=False)

    def table(title: str, columns: list[str]) -> Table:
        t = Table(title=title, box=box.SIMPLE_HEAD)  # no vertical rules: the tables fit in 120 columns
        for col in columns:
            t.add_column(col, justify="left" if col in ("push", "clone") else "right", no_wrap=True)
        return t

    model = f"{_size(info['weights_bytes'])} BERT reward model ({info['parameters'] / 1e6:.0f}M parameters, fp32)"
    for kind, s in summary.items():
        pushes = table(f"push to a {LABELS[kind]}: {len(plan)} versions of a {model}",
                       ["push", "changed", "rewardkit", "DVC", "rk/DVC", "rk/changed", "DVC/changed",
                        "rk s", "DVC s", "s rk/DVC"])
        for v in s["versions"]:
            pushes.add_row(f"v{v['version']} {v['kind']}", _size(v["changed_bytes"]), _size(v["rewardkit_bytes"]),
                           _size(v["dvc_bytes"]), _ratio(v["bytes_ratio"]),
                           _ratio(v["rewardkit_vs_changed"]), _ratio(v["dvc_vs_changed"]),
                           f"{v['rewardkit_seconds']:.2f}", f"{v['dvc_seconds']:.2f}", _ratio(v["seconds_ratio"]))
        total_b, total_s = s["push_bytes_total"], s["push_seconds_total"]
        a = s["after_first"]
        pushes.add_row(f"v1-v{len(plan) - 1}", _size(a["changed_bytes"]), _size(a["rewardkit_bytes"]),
                       _size(a["dvc_bytes"]), _ratio(a["rewardkit_bytes"] / a["dvc_bytes"]),
                       _ratio(a["rewardkit_vs_changed"]), _ratio(a["dvc_vs_changed"]), "", "", "", end_section=False)
        pushes.add_row("all versions", _size(sum(v["changed_bytes"] for v in s["versions"])),
                       _size(total_b["rewardkit"]), _size(total_b["dvc"]),
                       _ratio(total_b["rewardkit"] / total_b["dvc"]), "", "", f"{total_s['rewardkit']:.2f}",
                       f"{total_s['dvc']:.2f}", _ratio(total_s["rewardkit"] / total_s["dvc"]))
        console.print(pushes)
        for failure in s.get("failed_attempts", []):
            say(f"{kind}: failed attempt, tried again (its time is not in the table): {failure[:400]}")
        reported = sum(v["rewardkit_report_bytes"] for v in s["versions"])
        say(f"{kind}: rewardkit's own TransferReport.bytes, all pushes: {_size(reported)} of object files; the remote "
            f"also got {_size(total_b['rewardkit'] - reported)} of commits, refs and reflog entries")
        clones = table(f"clone from the {LABELS[kind]}: rewardkit init + fetch + checkout, DVC git clone + dvc pull",
                       ["clone", "rewardkit", "its report", "DVC", "rk/DVC", "rk s", "DVC s", "s rk/DVC",
                        "bit-identical"])
        skipped = []
        for which, label in (("all", "every version"), ("last", "last version")):
            r, d = s["clones"]["rewardkit"][which], s["clones"]["dvc"][which]
            if "skipped" in r:
                clones.add_row(label, "skipped", "", _size(d["bytes_fetched"]), "", "", f"{d['seconds']:.2f}", "",
                               "yes" if d["identical"] else "NO")
                skipped.append(f"{kind}: rewardkit clone of the {label} skipped: {r['skipped']}")
                continue
            clones.add_row(label, _size(r["bytes_fetched"]), _size(r["report_bytes"]), _size(d["bytes_fetched"]),
                           _ratio(r["bytes_fetched"] / d["bytes_fetched"]), f"{r['seconds']:.2f}",
                           f"{d['seconds']:.2f}", _ratio(r["seconds"] / d["seconds"]),
                           "yes" if r["identical"] and d["identical"] else "NO")
        console.print(clones)
        for line in skipped:
            say(line)
        say(f"{kind}: after the first version, push moved rewardkit {_size(a['rewardkit_bytes'])} = "
            f"{a['rewardkit_vs_changed']:.3f}x the changed tensors' {_size(a['changed_bytes'])} "
            f"(target <= {TARGET_PUSH_VS_CHANGED}x: {'yes' if s['target_met'] else 'NO'}); "
            f"DVC {_size(a['dvc_bytes'])} = {a['dvc_vs_changed']:.1f}x")
        say(f"{kind}: per version, rewardkit's largest ratio is v{a['worst_version']}: "
            f"{_size(a['worst_rewardkit_bytes'])} for {_size(a['worst_changed_bytes'])} of changed tensors = "
            f"{a['worst_rewardkit_vs_changed']:.3g}x (every version <= {TARGET_PUSH_VS_CHANGED}x: "
            f"{'yes' if s['target_met_every_version'] else 'NO'}); the tensor objects alone are at most "
            f"{a['tensor_objects_vs_changed_max']:.3f}x the changed tensors, the rest is "
            f"{_size(a['overhead_bytes_min'])}-{_size(a['overhead_bytes_max'])} per push of manifest, commit, ref "
            "and reflog entry")
        say(f"{kind}: on the remote after the chain: rewardkit {_size(s['remote_bytes']['rewardkit'])}, "
            f"DVC {_size(s['remote_bytes']['dvc'])}; other CPU (moto excluded) at most {s['other_cpu_max']:.0%}"
            + (f"; moto server peak RSS: rewardkit {_size(s['server_peak_rss']['rewardkit'])}, "
               f"DVC {_size(s['server_peak_rss']['dvc'])}" if s["server_peak_rss"]["rewardkit"] else ""))
    fractions = ", ".join(f"{f * 100:.3g}%" for f in info["changed_fraction"])
    say(f"share of the weights each version changes: {fractions}")
    if "bench_peak_rss" in info:
        say(f"peak RSS of the benchmark's process (both tools run in it; moto in its own): "
            f"{_size(info['bench_peak_rss'])}")
    say(f"machine: {info['machine']}; load average (1, 5, 15 min) before {info['load_before']}, "
        f"after {info.get('load_after')}; versions: {info['versions']}")


# -- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size-gib", type=float, default=None, help="fp32 size of the model, at least (GiB; default 1)")
    p.add_argument("--versions", type=int, default=None, help="versions in the chain, base included (>= 3; 10)")
    p.add_argument("--remote", default=",".join(REMOTES), help=f"comma-separated, of {', '.join(REMOTES)}")
    p.add_argument("--smoke", action="store_true",
                   help=f"tiny: {SMOKE['size_gib']} GiB, {SMOKE['versions']} versions (unless given); < 1 min")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scratch", default=None, help="folder for the scratch repositories and remotes "
                                                   "(default: the system's temp)")
    p.add_argument("--json", default=None, help="write every measurement and the summary to this file")
    p.add_argument("--report", default=None, metavar="JSON", help="print the tables of an earlier run's --json file")
    args = p.parse_args(argv)
    defaults = SMOKE if args.smoke else {"size_gib": 1.0, "versions": 10}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def check_setup(remotes: list[str]) -> None:
    """Refuse unknown remote kinds and missing tools, naming the fix."""
    import importlib.util

    for kind in remotes:
        if kind not in REMOTES:
            raise SystemExit(f"unknown remote kind {kind!r} in --remote; choose from {', '.join(REMOTES)}")
    needed = ["dvc"] + (["moto", "s3fs", "boto3", "dvc_s3"] if "s3" in remotes else [])
    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    if missing:
        raise SystemExit(f"not installed: {', '.join(missing)}: pip install -e '.[dev,bench]' -c constraints.txt"
                         + (", or run --remote dir" if "dvc" not in missing else ""))
    if shutil.which("git") is None:
        raise SystemExit("DVC needs git on PATH")


def check_disk(scratch: Path, weights_bytes: int, versions: int) -> None:
    """Refuse to start without room for DVC's worst moment: its cache and its remote, each a model per version."""
    need = int(2.2 * versions * weights_bytes) + 2**30
    free = shutil.disk_usage(scratch).free
    if free < need:
        raise SystemExit(f"{scratch}: {_size(free)} free, the run needs about {_size(need)} (DVC's cache and "
                         "remote hold a whole model per version); use --scratch or a smaller --size-gib")


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the run, then restore them.

    moto's ``AWS_*`` test credentials (both tools read them) and DVC's site cache folder
    (its index databases, otherwise left in ``/var/tmp/dvc``) under the scratch folder.
    """
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report:
        earlier = json.loads(Path(args.report).read_text())
        report(summarize(earlier["runs"], earlier["plan"]), earlier["plan"], earlier["model"])
        return 0
    remotes = [r.strip() for r in args.remote.split(",") if r.strip()]
    check_setup(remotes)
    plan = version_plan(args.versions)
    import rewardkit

    started = time.perf_counter()
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    config, base = build_base(int(args.size_gib * 2**30), args.seed)
    weights_bytes = sum(t.numel() * t.element_size() for t in base.values())
    info = {
        "parameters": sum(t.numel() for t in base.values()),
        "weights_bytes": weights_bytes,
        "tensors": len(base),
        "changed_fraction": [],
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
        "load_before": [round(x, 2) for x in os.getloadavg()],
        "versions": {"rewardkit": f"{rewardkit.__version__} from {Path(rewardkit.__file__).parent}",
                     **{d: _version(d) for d in ("dvc", "dvc-s3", "moto", "s3fs", "torch")}},
    }
    print(f"model: {info['parameters'] / 1e6:.1f}M parameters, {_size(weights_bytes)}; "
          f"built in {time.perf_counter() - started:.1f} s; chain: {', '.join(plan)}", flush=True)
    expected, state = {}, {n: t.clone() for n, t in base.items()}
    for index, kind in enumerate(plan):
        if index:
            apply_change(state, kind, seed=args.seed + index, num_layers=config.num_hidden_layers)
        names = changed_names(state, kind, config.num_hidden_layers) if index else list(state)
        info["changed_fraction"].append(sum(state[n].numel() * state[n].element_size() for n in names) / weights_bytes)
        if index == len(plan) - 1:
            expected[index] = digest(state)
    del state

    scratch = Path(tempfile.mkdtemp(prefix="rk-remote-bench-", dir=args.scratch))
    results: dict[str, dict[str, dict]] = {}
    try:
        check_disk(scratch, weights_bytes, len(plan))
        with environment(S3_CREDENTIALS | {"DVC_SITE_CACHE_DIR": str(scratch / "dvc-site-cache")}):
            for kind in remotes:
                results[kind] = {}
                for tool in TOOLS:
                    print(f"{LABELS[kind]}, {LABELS[tool]}:", flush=True)
                    results[kind][tool] = bench_pair(kind, tool, scratch, config, base, plan, expected, args.seed)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    info["load_after"] = [round(x, 2) for x in os.getloadavg()]
    info["bench_peak_rss"] = peak_rss()
    summary = summarize(results, plan)
    report(summary, plan, info)
    wall = time.perf_counter() - started
    print(f"time: {wall:.0f} s")
    if args.json:
        out = {"command": " ".join([sys.executable, *sys.argv]), "settings": vars(args), "plan": plan,
               "model": info, "summary": summary, "runs": results, "wall_seconds": wall}
        Path(args.json).write_text(json.dumps(out, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--moto-server"]:
        serve_moto(int(sys.argv[2]))
    else:
        sys.exit(main())
