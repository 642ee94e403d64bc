"""Remotes: a repository's objects, commits and branches on any fsspec filesystem.

Layout under the remote's root (no database, no single refs file that every push rewrites)::

    objects/ab/cdef…      object files, byte for byte as in a local store (see objects.py)
    commits/<id>.json     canonical JSON of a commit's fields (commit_id(fields) == id)
    refs/heads/<branch>   one small file per ref: the commit id and a newline

Objects travel as their stored files, so what arrives is checked by re-hashing it exactly as
a local store checks itself. A push writes objects first, then commits, and moves the
remote ref last, so a remote ref never names a commit whose objects are not all there.

This is the first slice of issue 7: directory remotes (fsspec ``file`` protocol) for push;
fetch reads any fsspec filesystem. No CLI, no S3 conditional writes, no remote reflog yet.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import fsspec

from rewardkit.errors import RefMovedError, StoreError
from rewardkit.store.atomic import TMP_PREFIX, fsync_dir
from rewardkit.store.commits import Commit, commit_id
from rewardkit.store.gc import used_objects
from rewardkit.store.manifest import Manifest
from rewardkit.store.objects import ObjectStore, canonical_json, is_object_id
from rewardkit.store.refs import HEADS, REMOTES, check_ref_name

if TYPE_CHECKING:
    from rewardkit.store.repository import Repository

LOCK_SUFFIX = ".lock"


@dataclass(frozen=True)
class TransferReport:
    """What one push or fetch moved.

    Attributes:
        commits: Commits sent or received.
        objects: Objects sent or received (only those the other side lacked).
        bytes: Bytes of object files moved (as stored: compressed or delta-encoded).
        refs: Ref name -> commit id it was set to (remote refs for push, remote-tracking refs for fetch).
    """

    commits: int
    objects: int
    bytes: int
    refs: dict[str, str]


class Remote:
    """A remote repository: an fsspec filesystem and a root path on it."""

    def __init__(self, name: str, url: str, **storage_options: Any) -> None:
        """Use the remote called ``name`` at ``url`` (a directory path or any fsspec URL).

        Raises:
            StoreError: If fsspec knows no filesystem for the URL's scheme.
        """
        self.name = check_ref_name(name, "remote")
        try:
            self.fs, self.root = fsspec.core.url_to_fs(url, **storage_options)
        except (ValueError, ImportError) as exc:
            raise StoreError(f"remote {name}: cannot open {url!r}: {exc}") from exc
        self.root = self.root.rstrip("/")
        self.url = url

    @property
    def is_local(self) -> bool:
        """True for a directory remote (fsspec ``file`` protocol)."""
        protocols = self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        return "file" in protocols

    def path(self, *parts: str) -> str:
        """Return the remote path of ``parts`` joined under the root."""
        return "/".join((self.root, *parts))

    def object_path(self, id: str) -> str:
        """Return the remote path of object ``id`` (same fan-out as a local store)."""
        if not is_object_id(id):
            raise StoreError(f"invalid object id {id!r}: expected 64 lowercase hex characters")
        return self.path("objects", id[:2], id[2:])

    def commit_path(self, id: str) -> str:
        """Return the remote path of commit ``id``'s JSON file."""
        if not is_object_id(id):
            raise StoreError(f"invalid commit id {id!r} on remote {self.name}")
        return self.path("commits", f"{id}.json")

    def branches(self) -> dict[str, str]:
        """Return branch name -> commit id for every branch on the remote, sorted by name."""
        base = self.path("refs", "heads")
        if not self.fs.isdir(base):
            return {}
        out = {}
        for p in sorted(self.fs.find(base)):
            name = p[len(base) + 1:] if p.startswith(base) else p
            if not name.endswith(LOCK_SUFFIX) and not name.rsplit("/", 1)[-1].startswith(TMP_PREFIX):
                out[name] = self._read_ref(p)
        return out

    def branch(self, name: str) -> str | None:
        """Return the commit id of remote branch ``name``, or None if it does not exist."""
        p = self.path("refs", "heads", check_ref_name(name))
        return self._read_ref(p) if self.fs.exists(p) else None

    def _read_ref(self, p: str) -> str:
        id = self.fs.cat_file(p).decode("ascii", "replace").strip()
        if not is_object_id(id):
            raise StoreError(f"remote {self.name}: ref file {p} is damaged: expected a commit id, found {id[:80]!r}")
        return id

    def get_commit(self, id: str) -> Commit:
        """Read commit ``id`` from the remote and check it hashes to its id.

        Raises:
            StoreError: If it is missing, unreadable or does not hash to ``id``.
        """
        p = self.commit_path(id)
        try:
            fields = json.loads(self.fs.cat_file(p))
        except FileNotFoundError:
            raise StoreError(f"remote {self.name}: commit {id} is missing ({p})") from None
        except ValueError as exc:
            raise StoreError(f"remote {self.name}: commit {id} at {p} is corrupt: {exc}") from None
        if not isinstance(fields, dict) or "id" in fields or commit_id(fields) != id:
            raise StoreError(f"remote {self.name}: commit {id} at {p} is corrupt: it does not hash to its id")
        try:
            return Commit(id=id, **fields)
        except TypeError as exc:
            raise StoreError(f"remote {self.name}: commit {id} at {p} is corrupt: {exc}") from None

    @contextmanager
    def ref_lock(self, branch: str) -> Iterator[None]:
        """Hold the remote's lock on ``branch`` for a compare-and-swap of its ref file.

        Why a lock file rather than a conditional write: a directory has no "replace if
        the content is still X"; ``O_CREAT | O_EXCL`` is the one primitive every local and
        network filesystem (NFS v3+, SMB) makes atomic, and it is what git uses
        (``refs/heads/main.lock``). ``os.open`` is used rather than fsspec's ``open("xb")``
        because the local fsspec filesystem does not promise that its ``x`` mode maps to
        ``O_EXCL``. For object stores (S3) a lock file is not atomic; they will use
        ``If-Match``/``If-None-Match`` on the ref object instead, so pushing to them is
        refused until that is written. A lock left by a killed push is not broken
        automatically (a lease needs clocks we do not trust across hosts): the error names
        the file to delete.

        Raises:
            StoreError: If the remote is not a directory, or another push holds the lock.
        """
        if not self.is_local:
            raise StoreError(
                f"remote {self.name}: push to {self.url} is not supported yet; only directory remotes take pushes"
            )
        lock = Path(self.path("refs", "heads", branch + LOCK_SUFFIX))
        lock.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            raise StoreError(
                f"remote {self.name}: branch {branch} is locked by another push ({lock}); "
                "retry, or delete that file if no push is running"
            ) from None
        try:
            os.write(fd, f"{os.getpid()}\n".encode())
            os.close(fd)
            yield
        finally:
            lock.unlink(missing_ok=True)

    def write_file(self, p: str, data: bytes | Path) -> int:
        """Write ``data`` (bytes, or a local file streamed) to remote path ``p`` atomically.

        A directory remote gets a temp file beside ``p``, fsync, then a rename; an object
        store writes whole objects atomically by itself.

        Returns:
            The number of bytes written.
        """
        parent = p.rsplit("/", 1)[0]
        self.fs.makedirs(parent, exist_ok=True)
        if not self.is_local:
            if isinstance(data, Path):
                self.fs.put_file(str(data), p)
                return data.stat().st_size
            self.fs.pipe_file(p, data)
            return len(data)
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=TMP_PREFIX)
        try:
            with os.fdopen(fd, "wb") as f:
                if isinstance(data, Path):
                    with open(data, "rb") as src:
                        shutil.copyfileobj(src, f, 1 << 20)
                else:
                    f.write(data)
                f.flush()
                os.fsync(f.fileno())
                n = f.tell()
            os.replace(tmp, p)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        fsync_dir(Path(parent))
        return n


def push(repo: Repository, remote: Remote, branch: str, *, force: bool = False) -> TransferReport:
    """Send ``branch`` and everything it needs to ``remote``, then move the remote branch.

    Only commits the remote lacks travel (walked through parents and lineage, e.g. an
    adapter's base), and of the objects they use (:func:`~rewardkit.store.gc.used_objects`)
    only those the remote lacks. Objects go first, then commit files, then the ref, by
    compare-and-swap under :meth:`Remote.ref_lock`: the remote branch must be an ancestor
    of what is pushed (a fast-forward) unless ``force``.

    Args:
        repo: The local :class:`~rewardkit.store.repository.Repository`.
        remote: Where to push.
        branch: Local branch name, e.g. ``main``; the remote branch of the same name moves.
        force: Move the remote branch even if it is not an ancestor (its commits may be lost).

    Returns:
        Counts and bytes sent; ``refs`` maps ``refs/heads/<branch>`` to the pushed commit.

    Raises:
        RefMovedError: If the remote branch moved to a commit we do not build on
            ("remote main moved: pull and merge"); nothing on the remote changed except
            objects and commits no ref names (harmless, reused by the next push).
        StoreError: If the branch does not exist, or the remote cannot take pushes.
    """
    check_ref_name(branch)
    head = repo.refs.get(HEADS + branch)
    if head is None:
        raise StoreError(f"cannot push {branch}: no such branch")
    _check_fast_forward(repo, remote, branch, remote.branch(branch), head, force)
    new: list[Commit] = []
    for c in repo.commits.walk([head], lineage=True):
        if not remote.fs.exists(remote.commit_path(c.id)):
            new.append(c)
    n_objects = n_bytes = 0
    for id in sorted(used_objects(repo.objects, new)):
        if remote.fs.exists(remote.object_path(id)):
            continue
        n_bytes += remote.write_file(remote.object_path(id), repo.objects.path(id))
        n_objects += 1
    for c in reversed(new):  # parents before children
        remote.write_file(remote.commit_path(c.id), canonical_json(c.fields()))
    with remote.ref_lock(branch):
        old = remote.branch(branch)  # re-read under the lock: another push may have moved it
        _check_fast_forward(repo, remote, branch, old, head, force)
        if old != head:
            remote.write_file(remote.path("refs", "heads", branch), f"{head}\n".encode())
    return TransferReport(commits=len(new), objects=n_objects, bytes=n_bytes, refs={HEADS + branch: head})


def _check_fast_forward(repo: Repository, remote: Remote, branch: str, old: str | None, new: str, force: bool) -> None:
    if force or old is None or old == new:
        return
    if not repo.commits.has(old) or old not in {c.id for c in repo.commits.walk([new])}:
        raise RefMovedError(f"remote {branch} moved: pull and merge (remote {remote.name} has {old[:12]})")


def fetch(repo: Repository, remote: Remote) -> TransferReport:
    """Receive every remote branch and what it needs; set ``refs/remotes/<remote>/<branch>``.

    Every object is re-hashed in a staging folder before it enters the local store, so a
    corrupt one is refused (naming its id) and nothing is stored: all objects are checked
    before any is kept, then commits are added, then the remote-tracking refs move.

    Returns:
        Counts and bytes received; ``refs`` maps each remote-tracking ref to its commit.

    Raises:
        StoreError: If a commit or object on the remote is missing or corrupt.
    """
    heads = remote.branches()
    new: dict[str, Commit] = {}
    todo = list(heads.values())
    while todo:
        id = todo.pop()
        if id in new or repo.commits.has(id):
            continue
        new[id] = c = remote.get_commit(id)
        todo.extend([*c.parents, *c.base_commits()])
    with tempfile.TemporaryDirectory(prefix="rewardkit-fetch-") as tmp:
        staging = ObjectStore(Path(tmp), compress=False)
        got = _download(repo, remote, staging, (id for c in new.values() for id in c.object_ids()))
        manifests = [Manifest.from_bytes(_store_of(repo, staging, c.manifest_id).get_bytes(c.manifest_id))
                     for c in new.values()]
        got += _download(repo, remote, staging,
                         (id for m in manifests for id in [*(e.id for e in m.tensors.values()), *m.files.values()]))
        n_bytes = sum(staging.path(id).stat().st_size for id in got)
        for id in sorted(got, key=lambda i: len(staging.dependencies(i))):  # delta bases first
            _install(staging.path(id), repo.objects.path(id))
    for c in sorted(new.values(), key=lambda c: c.created_at):
        repo.commits.add(c)
    refs = {}
    for branch, id in heads.items():
        name = f"{REMOTES}{remote.name}/{branch}"
        if repo.refs.get(name) != id:
            repo.refs.set_ref(name, id, expected_old=repo.refs.get(name), message=f"fetch: {remote.url}")
        refs[name] = id
    return TransferReport(commits=len(new), objects=len(got), bytes=n_bytes, refs=refs)


def _store_of(repo: Repository, staging: ObjectStore, id: str) -> ObjectStore:
    return staging if staging.has(id) else repo.objects


def _download(repo: Repository, remote: Remote, staging: ObjectStore, ids: Iterable[str]) -> list[str]:
    """Copy the objects in ``ids`` (and their delta bases) that neither store holds into ``staging``, verified.

    Raises:
        StoreError: If an object is missing on the remote or does not hash to its id.
    """
    todo, got = list(ids), []
    while todo:
        id = todo.pop()
        if staging.has(id) or repo.objects.has(id):
            continue
        p = staging.path(id)
        p.parent.mkdir(parents=True, exist_ok=True)
        try:
            remote.fs.get_file(remote.object_path(id), str(p))  # streamed, not held in memory
        except FileNotFoundError:
            raise StoreError(f"remote {remote.name}: object {id} is missing ({remote.object_path(id)})") from None
        got.append(id)
        try:
            todo.extend(staging.dependencies(id))
        except StoreError as exc:
            raise StoreError(f"remote {remote.name}: refused object {id}: {exc}") from None
    for id in got:  # bases are all here or local now: a local base is copied in to decode against
        for base in staging.dependencies(id):
            if not staging.has(base):
                staging.path(base).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(repo.objects.path(base), staging.path(base))
        try:
            staging.get_payload(id, verify=True)
        except StoreError as exc:
            raise StoreError(f"remote {remote.name}: refused object {id}: {exc}") from None
    return got


def _install(src: Path, dst: Path) -> None:
    """Copy the verified object file ``src`` into the local store at ``dst`` (temp, fsync, rename)."""
    if dst.exists():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=TMP_PREFIX)
    try:
        with os.fdopen(fd, "wb") as f, open(src, "rb") as s:
            shutil.copyfileobj(s, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o444)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(dst.parent)
