r"""Content-addressed objects on the local filesystem.

An object is a canonical header followed by a payload, named by the SHA-256 of both::

    tensor <dtype> <shape as JSON> <nbytes>\0<raw little-endian bytes>
    blob <nbytes>\0<bytes>

The headers are defined once (:func:`tensor_header`, :func:`blob_header`), and so are the ids
(:func:`tensor_id`, :func:`blob_id`). Objects are written once, atomically (temp file
``.tmp-*``, fsync, rename), and never modified; only :meth:`ObjectStore.undo_on_error`
deletes the ones its failed block created, and a damaged object found while writing the
same content again is replaced by the correct bytes.

The file at ``objects/ab/cdef…`` holds the object in one of two forms:

- **raw**: exactly the canonical bytes above, so re-hashing the file verifies it;
- **encoded**: ``enc <encoding JSON>\0`` + the canonical header + the encoded payload, where
  the payload is compressed losslessly (see :class:`Encoding`): optionally first replaced
  by its element-wise delta against the payload of a *base* object (the parent commit's
  tensor of the same name; each element's bit pattern as an integer minus the base's,
  zigzag-coded, see :func:`_delta_into`: a fine-tune changes a weight's bit pattern a
  little, so the high bytes of the delta are mostly zero), then the bytes of each element
  split into planes (byte-grouping: all first bytes, then all second bytes, …, so the
  exponent bytes of floats, or the zero high bytes of a delta, sit together), then zstd.
  The canonical header stays readable in front, so :meth:`ObjectStore.header` reads no
  payload; reading decodes and re-hashes the canonical bytes, so the id never depends on
  the encoding, and zstd's checksum catches damage even on unverified reads.

An object is stored encoded only when that saves at least :data:`MIN_SAVING` of its payload
and it is at least :data:`MIN_ENCODE_SIZE` bytes (a smaller file takes one filesystem block
anyway); otherwise raw. A delta's base is never itself a delta (a candidate that is one is
replaced by its own base), so reading any object decodes at most two files.
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

import numpy as np
import torch
import zstandard

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
#: Store an object encoded only if that makes its payload at least this fraction smaller:
#: a smaller saving is not worth decoding on every read.
MIN_SAVING = 0.05
#: Objects whose payload is smaller than this are stored raw (bytes): one filesystem block.
MIN_ENCODE_SIZE = 4096
#: zstd level. On byte-grouped weights and deltas (all-MiniLM-L6-v2 and a fine-tune of it)
#: level 1 compresses about twice as fast as level 3 and as small or smaller (fp32 delta:
#: 0.567 vs 0.569 of raw; bf16: 0.256 vs 0.263): the mantissa planes are noise whatever the
#: level, and the exponent planes are easy.
ZSTD_LEVEL = 1
#: A delta that compresses to at most this fraction of the payload is kept without also
#: trying the tensor alone: byte-grouped zstd of trained weights stays above about 0.7.
DELTA_GOOD_ENOUGH = 0.5
_ENC_PREFIX = b"enc "

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


@dataclass(frozen=True)
class Encoding:
    """How an encoded object's payload is stored (see the module docstring).

    Decoding: zstd-decompress ``size`` bytes, undo the byte-grouping of ``planes`` bytes
    per element, then, if ``base`` is set, undo the zigzag delta against object ``base``'s
    payload with elements of ``planes`` bytes (see :func:`_delta_into`).

    Attributes:
        codec: ``"zstd"``.
        planes: Bytes per element split into planes; 1 means not grouped.
        size: Size of the encoded payload in the file (bytes).
        base: Id of the object the payload is a delta against, or ``None``.
    """

    codec: str
    planes: int
    size: int
    base: str | None = None

    def to_bytes(self) -> bytes:
        r"""Return the encoding line written in front of the canonical header (``enc {...}\0``)."""
        fields: dict[str, object] = {"codec": self.codec, "planes": self.planes, "size": self.size}
        if self.base is not None:
            fields["base"] = self.base
        return _ENC_PREFIX + canonical_json(fields) + b"\0"

    @classmethod
    def parse(cls, text: str) -> Encoding:
        """Parse the JSON of an encoding line.

        Raises:
            ValueError: If ``text`` is not an encoding this code reads.
        """
        raw = json.loads(text)
        if not isinstance(raw, dict) or raw.get("codec") != "zstd":
            raise ValueError(f"unknown encoding {text!r}")
        base = raw.get("base")
        if base is not None and not is_object_id(base):
            raise ValueError(f"bad delta base {base!r}")
        planes = _natural(raw["planes"])
        if planes not in (1, 2, 4, 8):
            raise ValueError(f"bad byte-grouping {planes}")
        return cls("zstd", planes, _natural(raw["size"]), base)


@dataclass(frozen=True)
class _FileHead:
    """The parsed front of an object file: canonical header, its raw bytes, and encoding."""

    header: ObjectHeader
    raw_header: bytes  # canonical header, NUL included: the first bytes hashed for the id
    encoding: Encoding | None  # None: the payload follows raw


def _planes(dtype: str | None) -> int:
    """Bytes per element to byte-group a payload of safetensors dtype ``dtype`` by (1: none)."""
    return 1 if dtype is None else torch_dtype(dtype).itemsize


def _group(payload: memoryview | bytes | bytearray, planes: int) -> memoryview | bytes | bytearray:
    """Return the payload's bytes split into ``planes`` planes (element byte k -> plane k)."""
    if planes == 1:
        return payload
    elements = np.frombuffer(payload, dtype=np.uint8).reshape(-1, planes)
    grouped = np.empty((planes, len(elements)), dtype=np.uint8)
    for k in range(planes):  # one strided column at a time: about twice as fast as one transpose
        grouped[k] = elements[:, k]
    return grouped.data


def _ungroup_into(out: bytearray, grouped: bytes, planes: int) -> None:
    """Undo :func:`_group`: write the interleaved bytes of ``grouped`` into ``out``."""
    if planes == 1:
        out[:] = grouped
        return
    target = np.frombuffer(out, dtype=np.uint8).reshape(-1, planes)
    source = np.frombuffer(grouped, dtype=np.uint8).reshape(planes, -1)
    for k in range(planes):
        target[:, k] = source[k]


_UINTS = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def _delta_into(base: bytearray, payload: bytes | bytearray | memoryview, width: int) -> None:
    """Turn ``base`` in place into the delta of ``payload`` against it, element by element.

    Each element's bit pattern, read as a ``width``-byte unsigned integer, minus the base's
    (modulo 2**bits), zigzag-coded (0, -1, 1, -2, … -> 0, 1, 2, 3, …) so that small changes
    of either sign have zero high bytes. For floats a small change of a weight is a small
    change of its bit pattern, so this compresses better than XOR (fp32: 0.57 vs 0.62 of
    raw on a real fine-tune; bf16: 0.26 vs 0.30; see bench/compression.py).
    """
    uint, bits = _UINTS[width], 8 * width
    delta = np.frombuffer(base, dtype=uint)
    np.subtract(np.frombuffer(payload, dtype=uint), delta, out=delta)
    sign = delta.view(f"i{width}") >> (bits - 1)  # all ones where negative
    np.left_shift(delta, uint(1), out=delta)
    np.bitwise_xor(delta, sign.view(uint), out=delta)


def _undelta_into(delta: bytearray, base: bytes | bytearray | memoryview, width: int) -> None:
    """Undo :func:`_delta_into`: turn ``delta`` in place into the payload, given the base."""
    uint = _UINTS[width]
    values = np.frombuffer(delta, dtype=uint)
    negative = values & uint(1)
    np.negative(negative, out=negative)  # all ones where the zigzag code is odd
    np.right_shift(values, uint(1), out=values)
    np.bitwise_xor(values, negative, out=values)
    np.add(values, np.frombuffer(base, dtype=uint), out=values)


def _compress(data: memoryview | bytes | bytearray) -> bytes:
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True).compress(data)


class ObjectStore:
    """Objects under ``root/ab/cdef…``, one file per object id."""

    def __init__(self, root: str | Path, *, compress: bool = True) -> None:
        """Use the object folder ``root`` (created on first write).

        Args:
            root: The object folder.
            compress: Store new objects encoded where that pays (see the module docstring);
                ``False`` stores every new object raw. Both forms are always readable.
        """
        self.root = Path(root)
        self.compress = compress
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

    def put_tensor(
        self, tensor: torch.Tensor, *, verify_existing: bool = False, delta_base: str | None = None
    ) -> TensorRef:
        """Store a tensor (any device, any layout) as a tensor object.

        An object already stored under the same id is reused (dedup) only if it is intact:
        its size is always checked, and its bytes too when it is at most
        :data:`VERIFY_EXISTING_MAX` bytes or ``verify_existing`` is set. A damaged one is
        replaced by the correct bytes (with a warning on stderr).

        Args:
            tensor: The tensor.
            verify_existing: Re-hash an already stored copy before reusing it, whatever its size.
            delta_base: Id of a similar tensor object (e.g. the parent commit's tensor of the
                same name) to store a delta against, if that is the smallest encoding.
                Ignored unless it is an intact stored tensor of the same dtype and byte size;
                if it is itself a delta, its own base is used instead.

        Raises:
            StoreError: If the dtype has no safetensors name.
        """
        dtype = dtype_name(tensor.dtype)
        shape = tuple(int(n) for n in tensor.shape)
        payload = tensor_bytes(tensor)
        header = tensor_header(dtype, shape, len(payload))
        id = _object_id(header, payload)
        self._write(id, header, payload, verify_existing, delta_base)
        return TensorRef(id=id, dtype=dtype, shape=shape, nbytes=len(payload))

    def dependencies(self, id: str) -> list[str]:
        """Return the ids of the objects needed to read object ``id`` (its delta base, if any).

        gc keeps them alive and fsck checks them; they are never deltas themselves.

        Raises:
            StoreError: If the object is missing or its header is damaged.
        """
        encoding = self._head(id).encoding
        return [encoding.base] if encoding is not None and encoding.base is not None else []

    def stored_size(self, id: str) -> int:
        """Return the size of object ``id``'s file on disk (bytes; encoded or raw).

        Raises:
            StoreError: If the object is missing.
        """
        try:
            return self.path(id).stat().st_size
        except FileNotFoundError:
            raise StoreError(f"object {id} is missing from {self.root}") from None

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
        return bytes(self.get_payload(id, verify=verify))

    def get_payload(self, id: str, *, verify: bool = False) -> bytearray:
        """Return the payload of object ``id`` like :meth:`get_bytes`, in a new mutable buffer (no extra copy).

        Raises:
            StoreError: If the object is missing or (with ``verify``) corrupt.
        """
        return self._read(id, verify)[1]

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
        """Return the header of object ``id``, reading only the file's front and its size.

        Raises:
            StoreError: If the object is missing, has no valid header, or its size does not
                match the header (truncated or extended).
        """
        return self._head(id).header

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

    def _head(self, id: str) -> _FileHead:
        """Read the front of object ``id``'s file and check its size (see :meth:`_checked_header`)."""
        try:
            with open(self.path(id), "rb") as f:
                return self._checked_header(id, f)
        except FileNotFoundError:
            raise StoreError(f"object {id} is missing from {self.root}") from None

    def _checked_header(self, id: str, f: BinaryIO) -> _FileHead:
        """Read and parse the front of the open object file ``f`` and check the file's size against it.

        Returns:
            The parsed front; ``f`` is left at the start of the (raw or encoded) payload.

        Raises:
            StoreError: If the front is not valid or the size on disk does not match it.
        """
        path = self.path(id)
        head = f.read(_HEADER_MAX)
        try:
            encoding, start = None, 0
            if head.startswith(_ENC_PREFIX):
                start = head.find(b"\0") + 1
                if start <= 0:
                    raise ValueError("no NUL")
                encoding = Encoding.parse(head[len(_ENC_PREFIX) : start - 1].decode("utf-8"))
            end = head.find(b"\0", start)
            if end <= start:
                raise ValueError("no NUL")
            header = ObjectHeader.parse(head[start:end].decode("ascii"))
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            raise StoreError(f"object {id} at {path} is corrupt: no valid header; {_RESTORE}") from None
        size = os.fstat(f.fileno()).st_size
        stored = header.nbytes if encoding is None else encoding.size
        if size != end + 1 + stored:
            what = "data" if encoding is None else "encoded data"
            raise StoreError(
                f"object {id} at {path} is corrupt: {size} bytes on disk, its header says "
                f"{stored} bytes of {what}; {_RESTORE}"
            )
        f.seek(end + 1)
        return _FileHead(header, head[start : end + 1], encoding)

    def _read(self, id: str, verify: bool, *, as_base: bool = False) -> tuple[ObjectHeader, bytearray]:
        """Return the header and decoded payload of object ``id``.

        Args:
            id: Object id.
            verify: Re-hash the canonical bytes and raise if they do not match ``id``.
            as_base: The object is read as a delta base, so it must not be a delta itself.
        """
        path = self.path(id)
        try:
            with open(path, "rb") as f:
                head = self._checked_header(id, f)
                expected = head.header.nbytes if head.encoding is None else head.encoding.size
                data = bytearray(expected)
                got = f.readinto(data)
                trailing = f.read(1)
        except FileNotFoundError:
            raise StoreError(f"object {id} is missing from {self.root}") from None
        if got != expected or trailing:
            raise StoreError(f"object {id} at {path} is corrupt: it changed while read; {_RESTORE}")
        payload = data if head.encoding is None else self._decode(id, head, data, verify, as_base)
        if verify and _object_id(head.raw_header, payload) != id:
            base = head.encoding.base if head.encoding is not None else None
            if base is not None:  # the delta's base was read unverified: name it if it is to blame
                try:
                    self._read(base, True, as_base=True)
                except StoreError as exc:
                    raise StoreError(f"object {id} is stored as a delta against object {base}: {exc}") from None
            raise StoreError(
                f"object {id} at {path} is corrupt: its content does not hash to its id; {_RESTORE}"
            )
        return head.header, payload

    def _decode(self, id: str, head: _FileHead, data: bytearray, verify: bool, as_base: bool) -> bytearray:
        """Decode the encoded payload ``data`` of object ``id`` (see :class:`Encoding`)."""
        encoding, nbytes = head.encoding, head.header.nbytes
        assert encoding is not None
        corrupt = f"object {id} at {self.path(id)} is corrupt"
        if (encoding.base is not None and as_base) or nbytes % encoding.planes:
            raise StoreError(f"{corrupt}: its encoding does not fit its header; {_RESTORE}")
        try:
            grouped = zstandard.ZstdDecompressor().decompress(data, max_output_size=nbytes)
        except zstandard.ZstdError as exc:
            raise StoreError(f"{corrupt}: its compressed data does not decode ({exc}); {_RESTORE}") from None
        del data
        if len(grouped) != nbytes:
            raise StoreError(f"{corrupt}: it decodes to {len(grouped)} bytes, not {nbytes}; {_RESTORE}")
        payload = bytearray(nbytes)
        _ungroup_into(payload, grouped, encoding.planes)
        del grouped
        if encoding.base is not None:
            try:  # unverified: the decoded payload is re-hashed anyway when verifying
                base_header, base = self._read(encoding.base, False, as_base=True)
            except StoreError as exc:
                raise StoreError(f"object {id} is stored as a delta against object {encoding.base}: {exc}") from None
            if base_header.nbytes != nbytes:
                raise StoreError(f"{corrupt}: its delta base {encoding.base} has another size; {_RESTORE}")
            _undelta_into(payload, base, encoding.planes)
        return payload

    def _is_intact(self, id: str, header: bytes, nbytes: int, verify: bool) -> bool:
        """Return True if the existing object ``id`` holds exactly ``header`` + a payload of ``nbytes``.

        Checks the header and the size always (and that a delta's base is there), and the
        decoded bytes (re-hashed) when the canonical bytes are small or ``verify`` is set.
        """
        try:
            head = self._head(id)
            if head.raw_header != header:
                return False
            if head.encoding is not None and head.encoding.base is not None and not self.has(head.encoding.base):
                return False
            if verify or len(header) + nbytes <= VERIFY_EXISTING_MAX:
                self._read(id, verify=True)
        except (StoreError, OSError):
            return False
        return True

    def _encode(
        self, id: str, header: bytes, payload: bytes | bytearray | memoryview, delta_base: str | None
    ) -> tuple[Encoding, bytes] | None:
        """Return the smallest encoding of a payload, or ``None`` if raw is best (see the module docstring)."""
        nbytes = len(payload)
        if not self.compress or nbytes < MIN_ENCODE_SIZE:
            return None
        parsed = ObjectHeader.parse(header[:-1].decode("ascii"))
        planes = _planes(parsed.dtype)
        planes = planes if nbytes % planes == 0 else 1
        best: tuple[Encoding, bytes] | None = None
        base = self._usable_base(id, parsed, delta_base)
        if base is not None:
            base_id, delta = base
            _delta_into(delta, payload, planes)
            best = Encoding("zstd", planes, 0, base_id), _compress(_group(delta, planes))
            del delta, base
        if best is None or len(best[1]) > DELTA_GOOD_ENOUGH * nbytes:
            alone = _compress(_group(payload, planes))
            if best is None or len(alone) < len(best[1]):
                best = Encoding("zstd", planes, 0), alone
        if len(best[1]) > (1 - MIN_SAVING) * nbytes:
            return None
        encoding, data = best
        return Encoding(encoding.codec, encoding.planes, len(data), encoding.base), data

    def _usable_base(self, id: str, header: ObjectHeader, candidate: str | None) -> tuple[str, bytearray] | None:
        """Return ``(base id, its payload)`` for a delta against ``candidate``, or ``None`` if it cannot be one.

        A candidate that is itself a delta is replaced by its own base; a missing, damaged
        or differently typed or sized candidate is no base.
        """
        if candidate is None or candidate == id:
            return None
        try:
            head = self._head(candidate)
            if head.encoding is not None and head.encoding.base is not None:
                candidate = head.encoding.base
                head = self._head(candidate)
            found = head.header
            if (found.kind, found.dtype, found.nbytes) != ("tensor", header.dtype, header.nbytes):
                return None
            return candidate, self._read(candidate, verify=True, as_base=True)[1]
        except (StoreError, OSError):
            return None

    def _write(
        self,
        id: str,
        header: bytes,
        payload: bytes | bytearray | memoryview,
        verify_existing: bool = False,
        delta_base: str | None = None,
    ) -> None:
        path = self.path(id)
        existed = path.exists()
        if existed and self._is_intact(id, header, len(payload), verify_existing):
            self._touch(id)
            return
        encoded = self._encode(id, header, payload, delta_base)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_TMP_PREFIX)
        try:
            with os.fdopen(fd, "wb") as f:
                if encoded is None:
                    f.write(header)
                    f.write(payload)
                else:
                    f.write(encoded[0].to_bytes())
                    f.write(header)
                    f.write(encoded[1])
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

    def _touch(self, id: str) -> None:
        """Mark a reused object (and what it needs) as just written, as git does on dedup.

        gc keeps unreachable objects younger than its grace period; a commit or merge that
        reuses an old dangling object before its commit lands is protected the same way as
        one that writes a new object.
        """
        for needed in (id, *self._dependencies_or_none(id)):
            with suppress(OSError):
                os.utime(self.path(needed))

    def _dependencies_or_none(self, id: str) -> list[str]:
        try:
            return list(self.dependencies(id))
        except StoreError:
            return []

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
