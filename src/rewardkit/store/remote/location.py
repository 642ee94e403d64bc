"""Where a remote lives: an fsspec filesystem, a root path on it, and how its refs move.

Layout under the remote's root (no database, no single refs file that every push rewrites)::

    objects/ab/cdef…                          object files, byte for byte as in a local store
    commits/<id>.json                         canonical JSON of a commit's fields (commit_id(fields) == id)
    refs/heads/<branch>                       one small file per ref: the commit id and a newline
    logs/refs/heads/<branch>/<utc>-<uuid>.json  one file per move of the ref (the remote's reflog)
    locks/<branch>.lock                       directory remotes only: held while a ref moves

Objects travel as their stored files, so what arrives is checked by re-hashing it exactly as
a local store checks itself. A push writes objects first, then commits, and moves the
remote ref last, so a remote ref never names a commit whose objects are not all there.

Refs move by compare-and-swap (:meth:`Remote.swap_ref`), by the strongest primitive each kind
of storage has:

* **S3 (and S3-compatible stores): conditional writes.** The ref object is read together
  with its ETag, and written back with ``If-Match: <etag>`` (or ``If-None-Match: *`` when
  it is created); if another writer replaced it in between, S3 answers
  ``412 Precondition Failed`` and the push is refused ("remote main moved: pull and
  merge"). We chose this over a lock object with a lease because the check and the write
  are one request that S3 itself makes atomic: there is nothing to leave behind when a
  pusher is killed (a lock object would stay until its lease ran out and block every other
  pusher meanwhile), no clock to trust (a lease compares the lock's age against the
  reader's clock), and one round trip instead of three (take the lock, write, release).
  S3 has had conditional writes since August 2024; moto and MinIO have them too.
* **Directories (local disks, NFS, SMB mounts): a lock file.** A directory has no "replace
  if the content is still X", so the swap runs under an ``O_CREAT | O_EXCL`` lock file, the
  one primitive every local and network filesystem makes atomic (git's
  ``refs/heads/main.lock``), re-reading the ref under the lock. The lock is
  :class:`~rewardkit.store.lock.FileLock`: it records the holder's pid and host name, and a
  waiter breaks it at once when that pid is gone on this host (a push killed by ``SIGKILL``
  never runs its ``finally``), or when the holder's heartbeat has stopped for its lease (a
  holder on another host). So a killed push never blocks the next one for long.
* **Other fsspec filesystems** (GCS, Azure, HTTP, …) have no conditional write that fsspec
  exposes the same way: they can be fetched from, and a push to them is refused with a
  one-line error rather than risk a lost update.

A move of a ref writes its reflog entry after the ref (a file of its own, so no append,
which S3 does not have): a push killed between the two leaves the ref moved and the entry
missing, never an entry for a move that did not happen.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import fsspec
import fsspec.asyn

from rewardkit.errors import RefMovedError, RewardkitError, StoreError
from rewardkit.store.atomic import TMP_PREFIX, fsync_dir
from rewardkit.store.commits import Commit, commit_id, utc_now
from rewardkit.store.lock import FileLock
from rewardkit.store.objects import canonical_json, is_object_id
from rewardkit.store.refs import HEADS, ReflogEntry, check_ref_name

OBJECTS, COMMITS, REFS, LOGS, LOCKS = "objects", "commits", "refs/heads", "logs/refs/heads", "locks"


@dataclass(frozen=True)
class RemoteReflogEntry(ReflogEntry):
    """One move of a remote ref, as its reflog file records it.

    Attributes:
        user: Who moved it: ``login@host`` of the pushing process.
    """

    user: str = ""


@dataclass(frozen=True)
class Listing:
    """What one recursive listing of a remote found (one ``find``: one request per 1000 keys on S3).

    Attributes:
        objects: Object id -> size of its file in bytes.
        commits: Ids of the commit files.
        temp_files: Paths of ``.tmp-*`` files (a killed push's leftovers on a directory remote).
    """

    objects: dict[str, int]
    commits: set[str]
    temp_files: list[str]


def _protocols(fs: Any) -> tuple[str, ...]:
    return fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)


def _io_errors() -> tuple[type[BaseException], ...]:
    """Exceptions of the storage layer that mean "the remote cannot be reached or refused us"."""
    errors: list[type[BaseException]] = [OSError]
    try:  # botocore is there only with the s3 extra; its connection errors are not OSErrors
        from botocore.exceptions import BotoCoreError, ClientError

        errors += [BotoCoreError, ClientError]
    except ImportError:  # pragma: no cover - s3 extra not installed
        pass
    return tuple(errors)


def one_line(exc: BaseException) -> str:
    """Return an exception's message on one line (botocore's span several), at most 300 characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


class Remote:
    """A remote repository: an fsspec filesystem and a root path on it."""

    def __init__(self, name: str, url: str, **storage_options: Any) -> None:
        """Use the remote called ``name`` at ``url`` (a directory path or any fsspec URL).

        Args:
            name: Short name, e.g. ``origin``; remote-tracking refs are ``refs/remotes/<name>/*``.
            url: A local or mounted directory path, ``s3://bucket/prefix``, or any fsspec URL.
            **storage_options: Passed to the fsspec filesystem, e.g. ``endpoint_url=``,
                ``key=``, ``secret=`` for S3 (otherwise the usual ``AWS_*`` variables).

        Raises:
            StoreError: If fsspec knows no filesystem for the URL's scheme, or its package is missing.
        """
        self.name = check_ref_name(name, "remote")
        self.url = url
        options = dict(storage_options)
        endpoint = options.pop("endpoint_url", None)
        try:
            protocol = fsspec.core.split_protocol(url)[0] or "file"
            if endpoint is not None:
                if protocol not in ("s3", "s3a"):
                    raise ValueError(f"endpoint_url is for s3:// URLs, not {protocol}://")
                options.setdefault("client_kwargs", {})["endpoint_url"] = endpoint
            self.fs, root = fsspec.core.url_to_fs(url, **options)
        except (ValueError, ImportError) as exc:
            raise StoreError(f"remote {name}: cannot open {url!r}: {one_line(exc)}") from exc
        self.root = root.rstrip("/")
        self._etags: dict[str, tuple[str | None, str | None]] = {}  # S3: branch -> (commit id, ETag) last read
        if not self.root:
            raise StoreError(f"remote {name}: cannot open {url!r}: no bucket or folder in the URL")

    def __repr__(self) -> str:
        return f"Remote({self.name!r}, {self.url!r})"

    # -- paths ------------------------------------------------------------------------------

    @property
    def is_local(self) -> bool:
        """True for a directory remote (fsspec ``file`` protocol)."""
        return "file" in _protocols(self.fs)

    @property
    def is_s3(self) -> bool:
        """True for an S3 remote (s3fs), whose refs move by conditional writes."""
        return "s3" in _protocols(self.fs)

    def path(self, *parts: str) -> str:
        """Return the remote path of ``parts`` joined under the root."""
        return "/".join((self.root, *parts))

    def object_path(self, id: str) -> str:
        """Return the remote path of object ``id`` (same fan-out as a local store)."""
        if not is_object_id(id):
            raise StoreError(f"invalid object id {id!r}: expected 64 lowercase hex characters")
        return self.path(OBJECTS, id[:2], id[2:])

    def commit_path(self, id: str) -> str:
        """Return the remote path of commit ``id``'s JSON file."""
        if not is_object_id(id):
            raise StoreError(f"invalid commit id {id!r} on remote {self.name}")
        return self.path(COMMITS, f"{id}.json")

    @contextmanager
    def io(self, doing: str) -> Iterator[None]:
        """Turn the storage layer's errors (unreachable, access denied, no such bucket) into one-line StoreErrors.

        Args:
            doing: What was being done, e.g. ``"push"``, for the message.
        """
        try:
            yield
        except RewardkitError:
            raise
        except _io_errors() as exc:
            raise StoreError(f"remote {self.name} ({self.url}): {doing} failed: {one_line(exc)}") from exc

    # -- reading ----------------------------------------------------------------------------

    def list(self) -> Listing:
        """List every object and commit file on the remote, with one recursive ``find``."""
        self.fs.invalidate_cache()
        try:
            found = self.fs.find(self.root, detail=True)
        except FileNotFoundError:
            found = {}
        objects, commits, temp = {}, set(), []
        prefix = self.root + "/"
        for p, info in found.items():
            rel = p[len(prefix):] if p.startswith(prefix) else p
            parts = rel.split("/")
            if parts[-1].startswith(TMP_PREFIX):
                temp.append(rel)
            elif len(parts) == 3 and parts[0] == OBJECTS and is_object_id(parts[1] + parts[2]):
                objects[parts[1] + parts[2]] = int(info.get("size") or 0)
            elif len(parts) == 2 and parts[0] == COMMITS and parts[1].endswith(".json"):
                commits.add(parts[1][: -len(".json")])
        return Listing(objects, commits, sorted(temp))

    def branch_names(self) -> list[str]:
        """Return the names of the branches on the remote, sorted (their ref files, temp files skipped).

        Raises:
            StoreError: If the remote cannot be read.
        """
        base = self.path(REFS)
        with self.io("listing branches"):
            self.fs.invalidate_cache()
            try:
                found = self.fs.find(base)
            except FileNotFoundError:
                return []
            paths = (p[len(base) + 1:] for p in found if p.startswith(base + "/"))
            return sorted(p for p in paths if not p.rsplit("/", 1)[-1].startswith(TMP_PREFIX))

    def branches(self) -> dict[str, str]:
        """Return branch name -> commit id for every branch on the remote, sorted by name.

        Raises:
            StoreError: If the remote cannot be read, or a ref file is damaged.
        """
        return {name: id for name in self.branch_names() if (id := self.branch(name)) is not None}

    def branch(self, name: str) -> str | None:
        """Return the commit id of remote branch ``name``, or None if it does not exist."""
        return self._read_ref(check_ref_name(name))[0]

    def _read_ref(self, branch: str) -> tuple[str | None, str | None]:
        """Return the commit id of ``branch`` (None: no such ref) and, on S3, the ref object's ETag."""
        p = self.path(REFS, branch)
        with self.io(f"reading branch {branch}"):
            data, etag = self._get(p)
        if data is None:
            self._etags[branch] = (None, None)
            return None, None
        id = data.decode("ascii", "replace").strip()
        if not is_object_id(id):
            raise StoreError(f"remote {self.name}: ref file {p} is damaged: expected a commit id, found {id[:80]!r}")
        self._etags[branch] = (id, etag)
        return id, etag

    def _get(self, p: str) -> tuple[bytes | None, str | None]:
        """Return the bytes of remote file ``p`` (None if there is none) and, on S3, its ETag: one request."""
        if self.is_s3:
            got = self._s3_get(p)
            return got if got is not None else (None, None)
        try:
            return self.fs.cat_file(p), None
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None, None

    def get_commit(self, id: str) -> Commit:
        """Read commit ``id`` from the remote and check it hashes to its id.

        Raises:
            StoreError: If it is missing, unreadable or does not hash to ``id``.
        """
        p = self.commit_path(id)
        with self.io(f"reading commit {id}"):
            data = self._get(p)[0]
        if data is None:
            raise StoreError(f"remote {self.name}: commit {id} is missing ({p})")
        try:
            fields = json.loads(data)
        except ValueError as exc:
            raise StoreError(f"remote {self.name}: commit {id} at {p} is corrupt: {exc}") from None
        if not isinstance(fields, dict) or "id" in fields or commit_id(fields) != id:
            raise StoreError(f"remote {self.name}: commit {id} at {p} is corrupt: it does not hash to its id")
        try:
            return Commit(id=id, **fields)
        except TypeError as exc:
            raise StoreError(f"remote {self.name}: commit {id} at {p} is corrupt: {exc}") from None

    def reflog(self, branch: str) -> list[RemoteReflogEntry]:
        """Return the moves of remote branch ``branch`` (pushes, forced ones marked), oldest first.

        Ordered by the time each pusher recorded (its own clock, just after its move); two
        pushes to S3 within a few milliseconds may show in either order, but each entry's
        ``old`` is exactly the ``new`` of the move it replaced (compare-and-swap).

        Raises:
            StoreError: If the remote cannot be read, or an entry is damaged.
        """
        base = self.path(LOGS, check_ref_name(branch))
        with self.io(f"reading the reflog of {branch}"):
            self.fs.invalidate_cache()
            try:
                files = sorted(p for p in self.fs.ls(base, detail=False) if p.endswith(".json"))
            except FileNotFoundError:
                return []
            entries = []
            for p in files:
                try:
                    entries.append(RemoteReflogEntry(**json.loads(self.fs.cat_file(p))))
                except (ValueError, TypeError) as exc:
                    raise StoreError(f"remote {self.name}: reflog entry {p} is damaged: {exc}") from None
        return sorted(entries, key=lambda e: e.time)

    # -- writing ----------------------------------------------------------------------------

    def check_pushable(self) -> None:
        """Refuse, with a one-line error, a remote whose refs cannot move by compare-and-swap.

        Raises:
            StoreError: If the remote is neither a directory nor S3, or a directory remote's
                parent folder does not exist.
        """
        if not (self.is_local or self.is_s3):
            raise StoreError(
                f"remote {self.name}: cannot push to {self.url}: {'/'.join(_protocols(self.fs))} has no "
                "conditional write to move refs safely; push to a directory or S3 remote (fetching works)"
            )
        parent = os.path.dirname(self.root)
        if self.is_local and not os.path.isdir(parent):  # a typo, or a share that is not mounted
            raise StoreError(
                f"remote {self.name}: cannot push to {self.url}: folder {parent} does not exist "
                "(is the share mounted? a new remote folder is created only inside an existing one)"
            )

    def swap_ref(self, branch: str, new: str, *, expected: str | None, message: str) -> None:
        """Point remote branch ``branch`` at ``new`` if it still points at ``expected``, then log it.

        See the module docstring for how each kind of remote makes this atomic.

        Args:
            branch: Short branch name, e.g. ``main``.
            new: Commit id; its commit file and objects must already be on the remote.
            expected: The commit id the caller read and built on; None: the branch must not exist.
            message: Reflog message, e.g. ``"push"`` or ``"push --force"``.

        Raises:
            RefMovedError: If the branch moved meanwhile ("remote main moved: pull and merge").
            StoreError: If the remote takes no pushes or cannot be written.
        """
        self.check_pushable()
        check_ref_name(branch)
        data = f"{new}\n".encode()
        with self.io(f"moving branch {branch}"):
            if self.is_s3:
                # The ETag of the version we last read, if that is the one the caller built on
                # (saves a request); a newer version makes S3 refuse the write anyway.
                old, etag = self._etags.get(branch, (None, None))
                if old != expected or (old is not None and etag is None):
                    old, etag = self._read_ref(branch)
                self._check_expected(branch, old, expected)
                self._s3_put_if(self.path(REFS, branch), data, etag)
            else:
                with FileLock(self.path(LOCKS, branch + ".lock"), f"remote {self.name} branch {branch}"):
                    old = self._read_ref(branch)[0]  # re-read under the lock: another push may have moved it
                    self._check_expected(branch, old, expected)
                    self.write_file(self.path(REFS, branch), data)
            entry = RemoteReflogEntry(
                ref=HEADS + branch, old=old, new=new, message=message, time=utc_now(), user=_user()
            )
            stamp = entry.time.replace(":", "").replace("-", "")
            self.write_file(self.path(LOGS, branch, f"{stamp}-{uuid.uuid4().hex[:12]}.json"),
                            canonical_json(asdict(entry)))

    def _check_expected(self, branch: str, old: str | None, expected: str | None) -> None:
        if old != expected:
            now = old[:12] if old else "no such branch"
            raise RefMovedError(f"remote {branch} moved: pull and merge (remote {self.name} has {now})")

    def _s3_split(self, p: str) -> tuple[str, str]:
        bucket, key, _ = self.fs.split_path(p)
        return bucket, key

    def _s3_get(self, p: str) -> tuple[bytes, str] | None:
        """Read an S3 object and its ETag in one request (None if there is no such object)."""
        bucket, key = self._s3_split(p)

        async def get() -> tuple[bytes, str] | None:
            try:
                resp = await self.fs._call_s3("get_object", Bucket=bucket, Key=key)
            except FileNotFoundError:
                return None
            try:
                return await resp["Body"].read(), resp["ETag"]
            finally:
                resp["Body"].close()

        return fsspec.asyn.sync(self.fs.loop, get)

    def _s3_put_if(self, p: str, data: bytes, etag: str | None) -> None:
        """Write an S3 object only if its ETag is still ``etag`` (None: only if it does not exist).

        Raises:
            RefMovedError: If S3 answers 412 Precondition Failed (another writer was first).
        """
        bucket, key = self._s3_split(p)
        condition = {"IfMatch": etag} if etag is not None else {"IfNoneMatch": "*"}
        try:
            self.fs.call_s3("put_object", Bucket=bucket, Key=key, Body=data, **condition)
        except OSError as exc:
            cause = getattr(exc.__cause__, "response", None) or {}
            code = cause.get("Error", {}).get("Code") if isinstance(cause, dict) else None
            if isinstance(exc, FileExistsError) or code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                branch = key.rsplit(f"{REFS}/", 1)[-1]
                raise RefMovedError(
                    f"remote {branch} moved: pull and merge (another push to remote {self.name} was first)"
                ) from None
            raise
        self.fs.invalidate_cache(p)

    def write_file(self, p: str, data: bytes | Path) -> int:
        """Write ``data`` (bytes, or a local file streamed) to remote path ``p`` atomically.

        A directory remote gets a temp file beside ``p``, fsync, then a rename; an object
        store writes whole objects atomically by itself.

        Returns:
            The number of bytes written.
        """
        parent = p.rsplit("/", 1)[0]
        if not self.is_local:
            if isinstance(data, Path):
                self.fs.put_file(str(data), p)
                return data.stat().st_size
            self.fs.pipe_file(p, data)
            return len(data)
        os.makedirs(parent, exist_ok=True)
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
            os.chmod(tmp, 0o444)  # readable by the team (mkstemp makes 0600); written once, replaced by rename
            os.replace(tmp, p)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        fsync_dir(Path(parent))
        return n


def _user() -> str:
    try:
        login = getpass.getuser()
    except (OSError, KeyError):  # no login name (e.g. some containers)
        login = "unknown"
    return f"{login}@{socket.gethostname()}"
