r"""Content-addressed objects on the local filesystem.

An object is a canonical header followed by a payload, named by the SHA-256 of both::

    tensor <dtype> <shape as JSON> <nbytes>\0<raw little-endian bytes>
    blob <nbytes>\0<bytes>

The file at ``objects/ab/cdef…`` holds exactly those bytes, so re-hashing a file verifies it.
The headers are defined once (:func:`tensor_header`, :func:`blob_header`), and so are the ids
(:func:`tensor_id`, :func:`blob_id`). Objects are written once, atomically (temp file
``.tmp-*``, fsync, rename), and never modified; only :meth:`ObjectStore.undo_on_error`
deletes the ones its failed block created, and a damaged object found while writing the
same content again is replaced by the correct bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import torch

from rewardkit.errors import StoreError
from rewardkit.store.lock import FileLock, sigterm_raises

_ID_RE = re.compile(r"^[0-9a-f]{64}$")
_TMP_PREFIX = ".tmp-"
_HEADER_MAX = 4096
LOCK_FILE = ".lock"
#: An existing object up to this size is re-read and compared before dedup reuses it (bytes).
VERIFY_EXISTING_MAX = 1 << 20
#: A ``.tmp-*`` file older than this is a leftover of a killed writer, removed by the next
#: write (seconds).
TMP_GRACE_S = 600.0

#: torch dtype <-> safetensors dtype name, for every dtype both sides know.
_DTYPE_NAMES: dict[torch.dtype, str] = {
    dtype: name
    for attr, name in [
        ("float64", "F64"),
        ("float32", "F32"),
        ("float16", "F16"),
        ("bfloat16", "BF16"),
        ("float8_e4m3fn", "F8_E4M3"),
        ("float8_e5m2", "F8_E5M2"),
        ("int64", "I64"),
        ("int32", "I32"),
        ("int16", "I16"),
        ("int8", "I8"),
        ("uint64", "U64"),
        ("uint32", "U32"),
        ("uint16", "U16"),
        ("uint8", "U8"),
        ("bool", "BOOL"),
    ]
    if isinstance(dtype := getattr(torch, attr, None), torch.dtype)
}
_DTYPES: dict[str, torch.dtype] = {name: dtype for dtype, name in _DTYPE_NAMES.items()}


def canonical_json(value: object) -> bytes:
    """Serialize ``value`` the one way the store hashes JSON: sorted keys, compact, UTF-8.

    Raises:
        StoreError: If ``value`` holds something JSON cannot represent, or a NaN/infinity.
    """
    try:
        text = json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise StoreError(
            f"cannot store {value!r:.200}: {exc}; use only str, int, finite float, bool, None, "
            "lists and dicts with string keys"
        ) from exc
    return text.encode("utf-8")


def is_object_id(value: object) -> bool:
    """Return True if ``value`` is an object id: 64 lowercase hex characters."""
    return isinstance(value, str) and _ID_RE.match(value) is not None


def dtype_name(dtype: torch.dtype) -> str:
    """Return the safetensors name of a torch dtype (``torch.float32`` -> ``"F32"``).

    Raises:
        StoreError: If the dtype has no safetensors name (e.g. complex types).
    """
    try:
        return _DTYPE_NAMES[dtype]
    except KeyError:
        raise StoreError(
            f"cannot store a tensor of dtype {dtype}; convert it to one of "
            f"{', '.join(str(d) for d in _DTYPE_NAMES)}"
        ) from None


def torch_dtype(name: str) -> torch.dtype:
    """Return the torch dtype for a safetensors dtype name (``"BF16"`` -> ``torch.bfloat16``)."""
    try:
        return _DTYPES[name]
    except KeyError:
        raise StoreError(f"unknown tensor dtype {name!r} in the store") from None


def tensor_header(dtype: str, shape: Sequence[int], nbytes: int) -> bytes:
    r"""Return the canonical header of a tensor object, e.g. ``b"tensor F32 [2,3] 24\0"``."""
    return f"tensor {dtype} {json.dumps(list(shape), separators=(',', ':'))} {nbytes}\0".encode()


def blob_header(nbytes: int) -> bytes:
    r"""Return the canonical header of a blob object, e.g. ``b"blob 24\0"``."""
    return f"blob {nbytes}\0".encode()


def _object_id(header: bytes, payload: bytes | bytearray | memoryview) -> str:
    digest = hashlib.sha256(header)
    digest.update(payload)
    return digest.hexdigest()


def tensor_id(dtype: str, shape: Sequence[int], payload: bytes | bytearray | memoryview) -> str:
    """Return the id of the tensor object with this dtype, shape and raw little-endian bytes."""
    return _object_id(tensor_header(dtype, shape, len(payload)), payload)


def blob_id(payload: bytes | bytearray | memoryview) -> str:
    """Return the id of the blob object holding ``payload``."""
    return _object_id(blob_header(len(payload)), payload)


def tensor_bytes(tensor: torch.Tensor) -> memoryview:
    """Return the raw little-endian bytes of a tensor (C order), without copying if possible."""
    if sys.byteorder != "little":  # pragma: no cover - no big-endian CI
        raise StoreError("the rewardkit store needs a little-endian machine")
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().data


@dataclass(frozen=True)
class TensorRef:
    """A tensor object as a manifest lists it.

    Attributes:
        id: Object id (SHA-256 hex).
        dtype: Safetensors dtype name, e.g. ``"F32"``.
        shape: Tensor shape; ``()`` for a scalar.
        nbytes: Size of the raw data in bytes.
    """

    id: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int


@dataclass(frozen=True)
class ObjectStats:
    """Counts of the object files in a store (temp files excluded).

    Attributes:
        objects: Number of objects.
        bytes: Total size of the object files in bytes.
    """

    objects: int
    bytes: int


@dataclass(frozen=True)
class ObjectHeader:
    """What an object's header says about it.

    Attributes:
        kind: ``"tensor"`` or ``"blob"``.
        nbytes: Size of the payload in bytes.
        dtype: Safetensors dtype name of a tensor; ``None`` for a blob.
        shape: Shape of a tensor; ``None`` for a blob.
    """

    kind: str
    nbytes: int
    dtype: str | None = None
    shape: tuple[int, ...] | None = None

    @classmethod
    def parse(cls, text: str) -> ObjectHeader:
        """Parse a header without its trailing NUL, e.g. ``"tensor F32 [2,3] 24"``.

        Raises:
            ValueError: If ``text`` is not a header.
        """
        fields = text.split(" ")
        if fields[0] == "blob" and len(fields) == 2:
            return cls("blob", _natural(fields[1]))
        if fields[0] == "tensor" and len(fields) == 4:
            shape = json.loads(fields[2])
            if not isinstance(shape, list):
                raise ValueError(f"bad shape {fields[2]!r}")
            return cls("tensor", _natural(fields[3]), fields[1], tuple(_natural(n) for n in shape))
        raise ValueError(f"bad header {text!r}")


def _natural(value: object) -> int:
    """Return ``value`` as a non-negative int (from an int or a decimal string)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"not a count: {value!r}")
    number = int(value)
    if number < 0 or (isinstance(value, str) and not value.isdigit()):
        raise ValueError(f"not a count: {value!r}")
    return number


class ObjectStore:
    """Objects under ``root/ab/cdef…``, one file per object id."""

    def __init__(self, root: str | Path) -> None:
        """Use the object folder ``root`` (created on first write)."""
        self.root = Path(root)
        self._created: list[str] | None = None  # ids written inside undo_on_error()
        self._lock: FileLock | None = None

    def path(self, id: str) -> Path:
        """Return the file path of object ``id``.

        Raises:
            StoreError: If ``id`` is not 64 lowercase hex characters.
        """
        if not is_object_id(id):
            raise StoreError(f"invalid object id {id!r}: expected 64 lowercase hex characters")
        return self.root / id[:2] / id[2:]

    def has(self, id: str) -> bool:
        """Return True if object ``id`` is in the store."""
        return self.path(id).is_file()

    def put_blob(self, data: bytes, *, verify_existing: bool = False) -> str:
        """Store ``data`` as a blob object and return its id.

        If the object is already stored it is reused, after checking it (see
        :meth:`put_tensor`).
        """
        header = blob_header(len(data))
        id = _object_id(header, data)
        self._write(id, header, data, verify_existing)
        return id

    def put_tensor(self, tensor: torch.Tensor, *, verify_existing: bool = False) -> TensorRef:
        """Store a tensor (any device, any layout) as a tensor object.

        An object already stored under the same id is reused (dedup) only if it is intact:
        its size is always checked, and its bytes too when it is at most
        :data:`VERIFY_EXISTING_MAX` bytes or ``verify_existing`` is set. A damaged one is
        replaced by the correct bytes (with a warning on stderr).

        Raises:
            StoreError: If the dtype has no safetensors name.
        """
        dtype = dtype_name(tensor.dtype)
        shape = tuple(int(n) for n in tensor.shape)
        payload = tensor_bytes(tensor)
        header = tensor_header(dtype, shape, len(payload))
        id = _object_id(header, payload)
        self._write(id, header, payload, verify_existing)
        return TensorRef(id=id, dtype=dtype, shape=shape, nbytes=len(payload))

    @contextmanager
    def undo_on_error(self) -> Iterator[None]:
        """Hold the store's write lock; delete the objects written in the block if it raises.

        Only objects the block created are deleted; one that was already stored is kept,
        since another commit may use it. The lock (:class:`~rewardkit.store.lock.FileLock`
        on ``root/.lock``, which works with or without ``fcntl``) means no other process
        can start using a new object before the block has kept or deleted it: such blocks
        in other processes wait for each other. ``SIGTERM`` raises inside the block, so a
        terminated commit cleans up like an interrupted one. On entry, ``.tmp-*`` files
        older than :data:`TMP_GRACE_S` (left by killed writers) are removed. If the lock
        was taken over meanwhile (this process was stopped for longer than the lease),
        nothing is deleted: another writer may be using those objects now. Not reentrant.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        with sigterm_raises(), FileLock(self.root / LOCK_FILE, f"object store {self.root}") as lock:
            self._lock = lock
            self._created = created = []
            try:
                self._remove_stale_temp_files()
                yield
            except BaseException:
                if lock.held():
                    for id in reversed(created):
                        self._delete(id)
                raise
            finally:
                self._created = None
                self._lock = None

    def check_lock(self) -> None:
        """Raise if the write lock taken by :meth:`undo_on_error` is no longer ours.

        Raises:
            StoreError: If another process took the lock over because this one was stopped
                (or starved) for longer than the lease.
        """
        if self._lock is not None and not self._lock.held():
            raise StoreError(
                f"the write lock of {self.root} was taken over while this process was stopped for "
                f"longer than {self._lock.lease_s:.0f} s; nothing was committed, commit again"
            )

    def get_bytes(self, id: str, *, verify: bool = False) -> bytes:
        """Return the payload of object ``id`` (blob bytes, or a tensor's raw bytes).

        Args:
            id: Object id.
            verify: Re-hash the object and raise if it does not match its id.

        Raises:
            StoreError: If the object is missing or (with ``verify``) corrupt.
        """
        return bytes(self._read(id, verify)[1])

    def get_tensor(self, id: str, *, verify: bool = False) -> torch.Tensor:
        """Return tensor object ``id`` as a CPU tensor with its stored dtype and shape.

        Raises:
            StoreError: If the object is missing, not a tensor, or (with ``verify``) corrupt.
        """
        header, payload = self._read(id, verify)
        if header.kind != "tensor" or header.dtype is None or header.shape is None:
            raise StoreError(f"object {id} is not a tensor (it is a {header.kind})")
        dtype = torch_dtype(header.dtype)
        if len(payload) == 0:
            return torch.empty(header.shape, dtype=dtype)
        return torch.frombuffer(payload, dtype=torch.uint8).view(dtype).reshape(header.shape)

    def header(self, id: str) -> ObjectHeader:
        """Return the header of object ``id``, reading only the header and the file size.

        Raises:
            StoreError: If the object is missing, has no valid header, or its size does not
                match the header (truncated or extended).
        """
        try:
            with open(self.path(id), "rb") as f:
                header, _ = self._checked_header(id, f)
        except FileNotFoundError:
            raise StoreError(f"object {id} is missing from {self.root}") from None
        return header

    def ids(self) -> Iterator[str]:
        """Yield the id of every object in the store, in no particular order."""
        if not self.root.is_dir():
            return
        for fan in sorted(self.root.iterdir()):
            for entry in sorted(fan.iterdir()) if fan.is_dir() else ():
                if _ID_RE.match(fan.name + entry.name):
                    yield fan.name + entry.name

    def stats(self) -> ObjectStats:
        """Return the number of objects and their total size on disk."""
        sizes = [self.path(id).stat().st_size for id in self.ids()]
        return ObjectStats(objects=len(sizes), bytes=sum(sizes))

    def _checked_header(self, id: str, f: BinaryIO) -> tuple[ObjectHeader, bytes]:
        """Read and parse the header of the open object file ``f`` and check the file's size against it.

        Returns:
            The header and its raw bytes, NUL included; ``f`` is left just after them.

        Raises:
            StoreError: If the header is not valid or the size on disk does not match it.
        """
        path = self.path(id)
        head = f.read(_HEADER_MAX)
        end = head.find(b"\0")
        try:
            if end <= 0:
                raise ValueError("no NUL")
            header = ObjectHeader.parse(head[:end].decode("ascii"))
        except (ValueError, UnicodeDecodeError):
            raise StoreError(f"object {id} at {path} is corrupt: no valid header; {_RESTORE}") from None
        size = os.fstat(f.fileno()).st_size
        if size != end + 1 + header.nbytes:
            raise StoreError(
                f"object {id} at {path} is corrupt: {size} bytes on disk, its header says "
                f"{header.nbytes} bytes of data; {_RESTORE}"
            )
        f.seek(end + 1)
        return header, head[: end + 1]

    def _read(self, id: str, verify: bool) -> tuple[ObjectHeader, bytearray]:
        path = self.path(id)
        try:
            with open(path, "rb") as f:
                header, raw_header = self._checked_header(id, f)
                payload = bytearray(header.nbytes)
                got = f.readinto(payload)
                trailing = f.read(1)
        except FileNotFoundError:
            raise StoreError(f"object {id} is missing from {self.root}") from None
        if got != header.nbytes or trailing or (verify and _object_id(raw_header, payload) != id):
            raise StoreError(
                f"object {id} at {path} is corrupt: its content does not hash to its id; {_RESTORE}"
            )
        return header, payload

    def _is_intact(self, path: Path, header: bytes, payload: bytes | bytearray | memoryview,
                   verify: bool) -> bool:
        """Return True if the existing file ``path`` holds exactly ``header + payload``.

        Checks the size always, and the bytes when they are small or ``verify`` is set.
        """
        size = len(header) + len(payload)
        try:
            if path.stat().st_size != size:
                return False
            if not verify and size > VERIFY_EXISTING_MAX:
                return True
            with open(path, "rb") as f:
                if f.read(len(header)) != header:
                    return False
                view, chunk = memoryview(payload).cast("B"), 1 << 24
                for start in range(0, len(view), chunk):
                    if f.read(chunk) != view[start : start + chunk]:
                        return False
        except OSError:
            return False
        return True

    def _write(
        self, id: str, header: bytes, payload: bytes | bytearray | memoryview, verify_existing: bool = False
    ) -> None:
        path = self.path(id)
        existed = path.exists()
        if existed and self._is_intact(path, header, payload, verify_existing):
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_TMP_PREFIX)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(header)
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o444)
            if existed:
                with suppress(OSError):
                    path.chmod(0o644)  # Windows refuses to replace a read-only file
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        if existed:  # repaired, not created: it stays even if the commit fails
            print(f"warning: object {id} at {path} was damaged; rewrote it with the committed bytes",
                  file=sys.stderr, flush=True)
        elif self._created is not None:
            self._created.append(id)
        _fsync_dir(path.parent)

    def _remove_stale_temp_files(self) -> None:
        """Remove ``.tmp-*`` files older than :data:`TMP_GRACE_S` (left by killed writers)."""
        cutoff = time.time() - TMP_GRACE_S
        for fan in self.root.iterdir():
            for tmp in fan.glob(f"{_TMP_PREFIX}*") if fan.is_dir() else ():
                with suppress(OSError):
                    if tmp.stat().st_mtime < cutoff:
                        tmp.unlink()

    def delete(self, id: str) -> None:
        """Remove object ``id`` for good; for gc, which holds the write lock and knows nothing uses it."""
        self._delete(id)

    def _delete(self, id: str) -> None:
        """Remove object ``id`` and its folder if now empty (best effort: never raises)."""
        path = self.path(id)
        with suppress(OSError):
            path.chmod(0o644)  # objects are read-only, and Windows refuses to delete those
            path.unlink()
        with suppress(OSError):
            path.parent.rmdir()  # fails if other objects are there


_RESTORE = "restore the file from a copy of the repository or re-commit the model"


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
