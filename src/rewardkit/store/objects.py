r"""Content-addressed objects on the local filesystem.

An object is a canonical header followed by a payload, named by the SHA-256 of both::

    tensor <dtype> <shape as JSON> <nbytes>\0<raw little-endian bytes>
    blob <nbytes>\0<bytes>

The file at ``objects/ab/cdef…`` holds exactly those bytes, so re-hashing a file verifies it.
The headers are defined once (:func:`tensor_header`, :func:`blob_header`), and so are the ids
(:func:`tensor_id`, :func:`blob_id`). Objects are written once, atomically, and never modified;
only :meth:`ObjectStore.undo_on_error` deletes the ones its failed block created.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import torch

from rewardkit.errors import StoreError

try:
    import fcntl
except ImportError:  # pragma: no cover - e.g. Windows: no lock
    fcntl = None  # type: ignore[assignment]

_ID_RE = re.compile(r"^[0-9a-f]{64}$")
_TMP_PREFIX = ".tmp-"
_HEADER_MAX = 4096

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


class ObjectStore:
    """Objects under ``root/ab/cdef…``, one file per object id."""

    def __init__(self, root: str | Path) -> None:
        """Use the object folder ``root`` (created on first write)."""
        self.root = Path(root)
        self._created: list[str] | None = None  # ids written inside undo_on_error()

    def path(self, id: str) -> Path:
        """Return the file path of object ``id``.

        Raises:
            StoreError: If ``id`` is not 64 lowercase hex characters.
        """
        if not _ID_RE.match(id):
            raise StoreError(f"invalid object id {id!r}: expected 64 lowercase hex characters")
        return self.root / id[:2] / id[2:]

    def has(self, id: str) -> bool:
        """Return True if object ``id`` is in the store."""
        return self.path(id).is_file()

    def put_blob(self, data: bytes) -> str:
        """Store ``data`` as a blob object and return its id (a no-op if already stored)."""
        header = blob_header(len(data))
        id = _object_id(header, data)
        self._write(id, header, data)
        return id

    def put_tensor(self, tensor: torch.Tensor) -> TensorRef:
        """Store a tensor (any device, any layout) as a tensor object.

        Raises:
            StoreError: If the dtype has no safetensors name.
        """
        dtype = dtype_name(tensor.dtype)
        shape = tuple(int(n) for n in tensor.shape)
        payload = tensor_bytes(tensor)
        header = tensor_header(dtype, shape, len(payload))
        id = _object_id(header, payload)
        self._write(id, header, payload)
        return TensorRef(id=id, dtype=dtype, shape=shape, nbytes=len(payload))

    @contextmanager
    def undo_on_error(self) -> Iterator[None]:
        """Delete the objects written in the block if it raises, then re-raise.

        Only objects the block created are deleted; one that was already stored is kept,
        since another commit may use it. The block holds an exclusive lock on the store
        (``flock`` on ``root``), so no other process can start using a new object before
        the block has kept or deleted it: such blocks in other processes wait for each
        other. Not reentrant.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root, os.O_RDONLY)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            self._created = created = []
            try:
                yield
            except BaseException:
                for id in reversed(created):
                    self._delete(id)
                raise
            finally:
                self._created = None
        finally:
            os.close(fd)  # releases the lock

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
        fields = header.split(" ")
        if fields[0] != "tensor" or len(fields) != 4:
            raise StoreError(f"object {id} is not a tensor (header {header!r})")
        dtype, shape = torch_dtype(fields[1]), tuple(json.loads(fields[2]))
        if len(payload) == 0:
            return torch.empty(shape, dtype=dtype)
        return torch.frombuffer(payload, dtype=torch.uint8).view(dtype).reshape(shape)

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

    def _read(self, id: str, verify: bool) -> tuple[str, bytearray]:
        path = self.path(id)
        try:
            with open(path, "rb") as f:
                head = f.read(_HEADER_MAX)
                end = head.find(b"\0")
                header = head[: end + 1]
                nbytes = int(header[:-1].rsplit(b" ", 1)[-1]) if end > 0 else -1
                if nbytes < 0:
                    raise StoreError(f"object {id} at {path} is corrupt: no valid header")
                payload = bytearray(nbytes)
                f.seek(end + 1)
                got = f.readinto(payload)
                trailing = f.read(1)
        except FileNotFoundError:
            raise StoreError(f"object {id} is missing from {self.root}") from None
        except ValueError:
            raise StoreError(f"object {id} at {path} is corrupt: no valid header") from None
        if got != nbytes or trailing or (verify and _object_id(header, payload) != id):
            raise StoreError(
                f"object {id} at {path} is corrupt: its content does not hash to its id; "
                "restore the file from a copy of the repository or re-commit the model"
            )
        return header[:-1].decode(), payload

    def _write(self, id: str, header: bytes, payload: bytes | bytearray | memoryview) -> None:
        path = self.path(id)
        if path.exists():
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
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        if self._created is not None:
            self._created.append(id)
        _fsync_dir(path.parent)

    def _delete(self, id: str) -> None:
        """Remove object ``id`` and its folder if now empty (best effort: never raises)."""
        path = self.path(id)
        with suppress(OSError):
            path.chmod(0o644)  # objects are read-only, and Windows refuses to delete those
            path.unlink()
        with suppress(OSError):
            path.parent.rmdir()  # fails if other objects are there


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
