"""Manifests: what one model version is made of.

A manifest lists a model's tensors (name -> object id, dtype, shape) and its other files
(relative POSIX path -> blob id). It is stored as a blob of its canonical JSON
(:meth:`Manifest.to_bytes`), and its id is that blob's id.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from rewardkit.errors import StoreError
from rewardkit.store.objects import (
    ObjectStore,
    TensorRef,
    blob_id,
    canonical_json,
    is_object_id,
    torch_dtype,
)

MANIFEST_VERSION = 1
#: The file checkout writes from a manifest's tensors; no file entry may use this path.
WEIGHTS_FILE = "model.safetensors"


@dataclass(frozen=True)
class TensorEntry:
    """One tensor of a manifest.

    Attributes:
        id: Tensor object id.
        dtype: Safetensors dtype name, e.g. ``"BF16"``.
        shape: Tensor shape; ``()`` for a scalar.
    """

    id: str
    dtype: str
    shape: tuple[int, ...]

    @classmethod
    def from_ref(cls, ref: TensorRef) -> TensorEntry:
        """Return the entry for a stored tensor."""
        return cls(id=ref.id, dtype=ref.dtype, shape=ref.shape)


def check_file_path(name: str) -> str:
    """Return ``name`` if it is a safe relative POSIX path for a model file.

    Raises:
        StoreError: If the path is absolute, empty, uses ``..`` or backslashes, or is the
            weights file (whose content comes from the tensors).
    """
    parts = PurePosixPath(name).parts
    if (
        not name
        or "\\" in name
        or name.startswith("/")
        or any(p in ("", ".", "..") for p in parts)
        or str(PurePosixPath(*parts)) != name
    ):
        raise StoreError(
            f"invalid file name {name!r} in a model: use a relative POSIX path such as "
            "'config.json' or 'tokenizer/vocab.txt'"
        )
    if name == WEIGHTS_FILE:
        raise StoreError(f"{WEIGHTS_FILE!r} cannot be stored as a file; pass its tensors instead")
    return name


@dataclass(frozen=True)
class Manifest:
    """The tensors and files of one model version.

    Attributes:
        tensors: Tensor name (as in ``model.safetensors``) -> entry.
        files: Relative POSIX path -> blob id, for every file besides the weights.
    """

    tensors: dict[str, TensorEntry] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in self.files:
            check_file_path(name)

    def to_bytes(self) -> bytes:
        """Return the canonical serialization, the bytes whose blob id is the manifest id."""
        return canonical_json(
            {
                "version": MANIFEST_VERSION,
                "tensors": {
                    name: {"id": t.id, "dtype": t.dtype, "shape": list(t.shape)}
                    for name, t in self.tensors.items()
                },
                "files": self.files,
            }
        )

    @property
    def id(self) -> str:
        """The manifest id: the id of the blob holding :meth:`to_bytes`."""
        return blob_id(self.to_bytes())

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        """Parse a serialized manifest and check its structure.

        Raises:
            StoreError: If the bytes are not a manifest of a version this code reads: not
                JSON, a tensor with an empty name, an unknown dtype, a shape that is not a
                list of non-negative ints, an invalid object id or file name.
        """
        try:
            raw = json.loads(data)
            if raw["version"] != MANIFEST_VERSION:
                raise StoreError(
                    f"manifest version {raw['version']} is not supported by this rewardkit "
                    f"(reads version {MANIFEST_VERSION}); upgrade rewardkit"
                )
            tensors = {_tensor_name(name): _tensor_entry(name, t) for name, t in raw["tensors"].items()}
            files = {check_file_path(name): _object_id(name, id) for name, id in raw["files"].items()}
            return cls(tensors=tensors, files=files)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StoreError(f"object is not a valid manifest: {exc}") from exc

    def store(self, objects: ObjectStore) -> str:
        """Write the manifest as a blob and return its id."""
        return objects.put_blob(self.to_bytes())

    @classmethod
    def load(cls, objects: ObjectStore, id: str) -> Manifest:
        """Read manifest ``id`` from an object store, verified.

        The manifest's identity is its hash, so its bytes are re-hashed and compared with
        ``id`` (an edited manifest, e.g. a renamed tensor, fails here), its structure is
        checked (:meth:`from_bytes`), and every object it lists is checked against it:
        tensors must be tensor objects of the listed dtype and shape, files blob objects,
        and every object's size must match its header. Only headers are read, so this costs
        one small read per object, not a full read of the weights.

        Raises:
            StoreError: If the manifest or an object it lists is missing, corrupt or does
                not match, naming the object.
        """
        try:
            manifest = cls.from_bytes(objects.get_bytes(id, verify=True))
        except StoreError as exc:
            raise StoreError(f"manifest {id}: {exc}") from exc
        for name, entry in manifest.tensors.items():
            header = objects.header(entry.id)
            if (header.kind, header.dtype, header.shape) != ("tensor", entry.dtype, entry.shape):
                what = f"{header.dtype} {list(header.shape)}" if header.kind == "tensor" else "a blob"
                raise StoreError(
                    f"manifest {id} lists tensor {name!r} as {entry.dtype} {list(entry.shape)}, but "
                    f"object {entry.id} is {what}; the repository is damaged, restore it from a copy"
                )
        for name, blob in manifest.files.items():
            if objects.header(blob).kind != "blob":
                raise StoreError(
                    f"manifest {id} lists file {name!r} as object {blob}, which is not a blob; "
                    "the repository is damaged, restore it from a copy"
                )
        return manifest


def _tensor_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise ValueError(f"tensor name {name!r} is not a non-empty string")
    return name


def _object_id(where: str, id: object) -> str:
    if not is_object_id(id):
        raise ValueError(f"{where!r} has an invalid object id {id!r}")
    return id


def _tensor_entry(name: str, raw: dict[str, object]) -> TensorEntry:
    dtype, shape = raw["dtype"], raw["shape"]
    if not isinstance(dtype, str):
        raise ValueError(f"tensor {name!r} has dtype {dtype!r}, not a name such as 'F32'")
    torch_dtype(dtype)  # raises StoreError for an unknown name
    if not isinstance(shape, list) or not all(type(n) is int and n >= 0 for n in shape):
        raise ValueError(f"tensor {name!r} has shape {shape!r}, not a list of non-negative ints")
    return TensorEntry(id=_object_id(name, raw["id"]), dtype=dtype, shape=tuple(shape))
