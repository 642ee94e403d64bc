"""Model folders as ``transformers`` writes and reads them, streamed tensor by tensor.

A model folder is its weights plus any other files (``config.json``, tokenizer files,
subfolders); a trainer's state beside them (``checkpoint-*/``, ``training_args.bin``,
``optimizer.pt``, ``rng_state.pth``…) is not part of the model and is not stored, and any
other pickle (``*.bin``, ``*.pt``, ``*.pth``, ``*.pkl``, ``*.ckpt``) is refused. The weights
are ``model.safetensors``, or, as
``save_pretrained`` writes a model above ``max_shard_size`` (default 5 GB), shards
``model-00001-of-0000N.safetensors`` named by ``model.safetensors.index.json``
(``{"metadata": {"total_size": …}, "weight_map": {tensor: shard}}``).

:func:`read_model_dir` opens a folder and checks every weights header before anything is
stored, then hands out tensors one at a time (:class:`WeightsFiles`), so committing never
holds more than one tensor of the model in memory. :func:`write_weights` writes the
safetensors file(s) from tensor entries and a reader of each tensor's raw bytes, one tensor
at a time, byte-for-byte as ``safetensors.torch.save_file`` would, and shards exactly as
``save_pretrained`` does (huggingface_hub's ``split_state_dict_into_shards_factory``).
"""

from __future__ import annotations

import json
import math
import mmap
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import torch
from huggingface_hub.serialization import split_state_dict_into_shards_factory
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from rewardkit.errors import ModelError, StoreError
from rewardkit.store.atomic import TMP_PREFIX
from rewardkit.store.manifest import WEIGHTS_FILE, check_file_path
from rewardkit.store.objects import dtype_name, tensor_bytes, torch_dtype

#: The metadata ``save_pretrained`` writes into ``model.safetensors``.
WEIGHTS_METADATA = {"format": "pt"}
#: The index ``save_pretrained`` writes beside sharded weights.
WEIGHTS_INDEX_FILE = f"{WEIGHTS_FILE}.index.json"
#: ``save_pretrained``'s default largest shard (decimal units, as huggingface_hub parses them).
MAX_SHARD_SIZE = "5GB"
_SHARD_PATTERN = WEIGHTS_FILE.replace(".safetensors", "{suffix}.safetensors")
_SHARD_RE = re.compile(r"model-\d{5}-of-\d{5}\.safetensors")
#: safetensors writes tensors by descending dtype (this order), then by name.
_DTYPE_ORDER = ["BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16",
                "I32", "U32", "F32", "F64", "I64", "U64"]  # fmt: skip

#: Pickled weight files (``torch.save``): loading one runs code, so the store refuses them.
PICKLED_WEIGHTS = ("pytorch_model*.bin", "adapter_model.bin")
#: A trainer's state saved beside a model (transformers' Trainer, TRL): not part of the model, not stored.
TRAINER_STATE = ("checkpoint-*", "training_args.bin", "optimizer.pt", "scheduler.pt", "rng_state*.pth",
                 "trainer_state.json", "runs")
#: Suffixes of pickle files, refused anywhere else in a model folder (loading one runs code).
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
#: Reads the raw little-endian bytes of one tensor by name.
TensorReader = Callable[[str], bytes | bytearray | memoryview]


def refuse_pickled_weights(folder: str | Path) -> None:
    """Refuse a model folder holding pickled weights: weights are safetensors only.

    Raises:
        ModelError: If the folder holds ``pytorch_model*.bin`` or ``adapter_model.bin``.
    """
    folder = Path(folder)
    found = sorted(p.name for pattern in PICKLED_WEIGHTS for p in folder.glob(pattern) if p.is_file())
    if found:
        raise ModelError(
            f"{folder / found[0]}: pickled weights are refused (weights are safetensors only, and loading a "
            "pickle runs code); save with save_pretrained(folder, safe_serialization=True) and remove "
            f"{', '.join(found)}"
        )


class TensorSpec(Protocol):
    """What the weights writer needs to know of a tensor (a manifest's ``TensorEntry`` is one)."""

    @property
    def dtype(self) -> str:
        """Safetensors dtype name, e.g. ``"F32"``."""

    @property
    def shape(self) -> tuple[int, ...]:
        """Tensor shape; ``()`` for a scalar."""


class _Spec(NamedTuple):
    dtype: str
    shape: tuple[int, ...]


class _Located(NamedTuple):
    path: Path
    dtype: torch.dtype
    shape: tuple[int, ...]
    offset: int  # of the tensor's first byte in the file
    nbytes: int


class WeightsFiles(Mapping[str, torch.Tensor]):
    """The tensors of a model folder's safetensors file(s), read one at a time on access.

    Every file's header is checked by safetensors when this is built; a tensor's bytes are
    read (plain reads, not a memory map, so nothing stays resident) only when it is looked
    up, so iterating over ``items()`` holds one tensor at a time.
    """

    def __init__(self, folder: Path, shards: dict[str, list[str] | None]) -> None:
        """Open ``folder``'s weights; ``shards`` maps each file to the tensors the index gives it.

        Raises:
            ModelError: If a file cannot be read, its tensors and the index disagree, or a
                tensor has a dtype the store cannot hold.
        """
        self._where: dict[str, _Located] = {}
        for shard, expected in shards.items():
            path = folder / shard
            try:
                with safe_open(str(path), framework="pt") as handle:  # validates header and offsets
                    names = list(handle.keys())
                with open(path, "rb") as f:
                    size = int.from_bytes(f.read(8), "little")
                    header = json.loads(f.read(size))
            except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
                raise ModelError(
                    f"cannot read {path}: {exc}; the file is damaged or not safetensors, "
                    "save the model again with save_pretrained"
                ) from exc
            if expected is not None and sorted(expected) != sorted(names):
                missing = sorted(set(expected) - set(names)) or sorted(set(names) - set(expected))
                raise ModelError(
                    f"{folder / WEIGHTS_INDEX_FILE} and {path} disagree about tensor {missing[0]!r}; "
                    "save the model again with save_pretrained"
                )
            for name in names:
                if name in self._where:
                    raise ModelError(f"tensor {name!r} is in two weights files of {folder}; save the model again")
                info = header[name]
                if info["dtype"] not in _DTYPE_ORDER:
                    raise ModelError(
                        f"{path}: tensor {name!r} has dtype {info['dtype']}, which rewardkit cannot store; "
                        f"convert it to one of {', '.join(_DTYPE_ORDER)}"
                    )
                start, end = info["data_offsets"]
                self._where[name] = _Located(
                    path, torch_dtype(info["dtype"]), tuple(info["shape"]), 8 + size + start, end - start
                )
        if not self._where:
            raise ModelError(f"{folder} holds no tensors in its weights; save the trained model again")

    def __getitem__(self, name: str) -> torch.Tensor:
        where = self._where[name]
        tensor = torch.empty(where.shape, dtype=where.dtype)
        if where.nbytes:
            try:
                with open(where.path, "rb") as f:
                    f.seek(where.offset)
                    got = f.readinto(tensor.reshape(-1).view(torch.uint8).numpy())
            except OSError as exc:
                raise ModelError(f"cannot read tensor {name!r} from {where.path}: {exc}") from exc
            if got != where.nbytes:
                raise ModelError(f"{where.path} changed while read (tensor {name!r}); commit again")
        return tensor

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


def read_model_dir(folder: str | Path) -> tuple[WeightsFiles, dict[str, bytes]]:
    """Open a model folder: its weights lazily, its other files in memory.

    Args:
        folder: Folder holding ``model.safetensors`` (or shards and their index) and the
            model's other files.

    Returns:
        The tensors of the weights by name (loaded on access, CPU, stored dtype), and every
        other regular file (recursively) by relative POSIX path -> content.

    Raises:
        ModelError: If the folder does not exist, has no weights, they cannot be read, or
            the folder holds pickled weights (:func:`refuse_pickled_weights`).
    """
    folder = Path(folder)
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise ModelError(f"model folder {folder} {what}; pass the folder save_pretrained wrote")
    refuse_pickled_weights(folder)
    if (folder / WEIGHTS_FILE).is_file():
        shards: dict[str, list[str] | None] = {WEIGHTS_FILE: None}
        skipped = {WEIGHTS_FILE}
    elif (folder / WEIGHTS_INDEX_FILE).is_file():
        shards = _read_index(folder / WEIGHTS_INDEX_FILE)
        skipped = {WEIGHTS_INDEX_FILE, *shards}
    else:
        raise ModelError(f"{folder} has no {WEIGHTS_FILE}; {_save_hint(folder)}")
    weights = WeightsFiles(folder, shards)
    paths = [path for path in sorted(folder.rglob("*")) if path.is_file() and not _trainer_state(folder, path)
             and path.relative_to(folder).as_posix() not in skipped]
    pickles = [path for path in paths if path.suffix in PICKLE_SUFFIXES]
    if pickles:
        raise ModelError(f"{pickles[0]}: a pickle file in a model folder is refused (loading a pickle runs code; "
                         "a model is safetensors, JSON and tokenizer files); remove it or commit a clean folder")
    return weights, {path.relative_to(folder).as_posix(): path.read_bytes() for path in paths}


def _trainer_state(folder: Path, path: Path) -> bool:
    """True if ``path`` is (inside) a trainer's state file or folder at the top of ``folder``."""
    top = path.relative_to(folder).parts[0]
    return any(fnmatch(top, pattern) for pattern in TRAINER_STATE)


def _read_index(path: Path) -> dict[str, list[str] | None]:
    """Return shard file -> tensor names from a ``model.safetensors.index.json``.

    Raises:
        ModelError: If the index is not JSON with a ``weight_map`` of tensor -> shard file
            in the same folder, or a shard is missing.
    """
    try:
        weight_map = json.loads(path.read_text())["weight_map"]
        if not isinstance(weight_map, dict) or not weight_map:
            raise ValueError("weight_map is not a non-empty object")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        reason = f"no key {exc}" if isinstance(exc, KeyError) else f"{exc!s:.100}"
        raise ModelError(
            f"{path} is not a sharded-weights index ({reason}); expected JSON with a \"weight_map\" "
            "of tensor name -> shard file, as save_pretrained writes"
        ) from None
    shards: dict[str, list[str] | None] = {}
    for name, shard in weight_map.items():
        if not isinstance(shard, str) or "/" in shard or "\\" in shard or shard in ("", ".", ".."):
            raise ModelError(f"{path}: tensor {name!r} maps to {shard!r}, not a file in the same folder")
        if not (path.parent / shard).is_file():
            raise ModelError(f"{path}: shard {shard} of tensor {name!r} is missing; copy the whole folder")
        listed = shards.setdefault(shard, [])
        assert listed is not None
        listed.append(name)
    return shards


def entry_nbytes(entry: TensorSpec) -> int:
    """Return the size of a tensor's raw data in bytes (elements x element size)."""
    return math.prod(entry.shape) * torch_dtype(entry.dtype).itemsize


def write_weights(
    folder: str | Path,
    entries: Mapping[str, TensorSpec],
    read: TensorReader,
    *,
    max_shard_size: int | str = MAX_SHARD_SIZE,
) -> list[Path]:
    """Write a model's weights as ``save_pretrained`` does, one tensor in memory at a time.

    One ``model.safetensors`` if the tensors fit in ``max_shard_size``, else shards
    ``model-0000k-of-0000N.safetensors`` (split in name order by huggingface_hub's
    ``split_state_dict_into_shards_factory``, as transformers does) and
    ``model.safetensors.index.json``. Weights files of the other layout already in the folder
    are removed, so ``from_pretrained`` cannot pick up stale ones. Each file is written
    under a temporary name and renamed when complete.

    Args:
        folder: Target folder (must exist).
        entries: Tensor name -> dtype and shape, in the order to shard them.
        read: Returns the raw little-endian bytes of a tensor by name; called once per tensor.
        max_shard_size: Largest shard in bytes, or a size such as ``"5GB"`` (decimal units).

    Returns:
        The files written (weights, then the index if sharded).

    Raises:
        ModelError: If ``read`` returns a tensor of another size than its entry.
        StoreError: Whatever ``read`` raises (e.g. a corrupt object); no weights file is left
            half-written.
    """
    folder = Path(folder)
    if not entries:  # huggingface_hub's splitter needs a tensor; an empty file is still valid safetensors
        return [_write_safetensors(folder / WEIGHTS_FILE, {}, read)]
    split = split_state_dict_into_shards_factory(
        dict(entries),
        get_storage_size=entry_nbytes,
        filename_pattern=_SHARD_PATTERN,
        max_shard_size=max_shard_size,
    )
    keep = {*split.filename_to_tensors, *([WEIGHTS_INDEX_FILE] if split.is_sharded else [])}
    for old in _weights_files(folder):
        if old.name not in keep:
            old.unlink(missing_ok=True)
    written = [
        _write_safetensors(folder / shard, {n: entries[n] for n in names}, read)
        for shard, names in split.filename_to_tensors.items()
    ]
    if split.is_sharded:
        index = {"metadata": split.metadata, "weight_map": split.tensor_to_filename}
        (folder / WEIGHTS_INDEX_FILE).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
        written.append(folder / WEIGHTS_INDEX_FILE)
    return written


def _write_safetensors(path: Path, entries: Mapping[str, TensorSpec], read: TensorReader) -> Path:
    """Write one safetensors file: 8-byte little-endian header length, header JSON, tensor bytes.

    Same bytes as ``safetensors.torch.save_file(..., metadata=WEIGHTS_METADATA)``: tensors
    by descending dtype, then name; the header padded with spaces to a multiple of 8.
    """
    order = sorted(entries, key=lambda n: (-_DTYPE_ORDER.index(entries[n].dtype), n))
    header: dict[str, Any] = {"__metadata__": WEIGHTS_METADATA}
    offset = 0
    for name in order:
        size = entry_nbytes(entries[name])
        header[name] = {"dtype": entries[name].dtype, "shape": list(entries[name].shape),
                        "data_offsets": [offset, offset + size]}  # fmt: skip
        offset += size
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    tmp = path.with_name(f".tmp-{path.name}")
    try:
        with open(tmp, "wb") as f:
            f.write(len(text).to_bytes(8, "little"))
            f.write(text)
            for name in order:
                data = read(name)
                if len(data) != header[name]["data_offsets"][1] - header[name]["data_offsets"][0]:
                    raise ModelError(f"tensor {name!r} has {len(data)} bytes, not the size its dtype and shape give")
                f.write(data)
                del data
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            tmp.unlink()
        raise
    return path


def write_model_dir(
    folder: str | Path,
    tensors: Mapping[str, torch.Tensor] | None,
    files: dict[str, bytes],
    *,
    max_shard_size: int | str = MAX_SHARD_SIZE,
) -> Path:
    """Write a model folder: every file at its relative path, and the weights from ``tensors``.

    With ``tensors=None`` only the files are written (no weights). See :func:`write_weights`
    for the weights (sharded above ``max_shard_size``).

    Existing files at the same paths are overwritten; others are left alone.

    Returns:
        The folder.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        path = folder / check_file_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    if tensors is not None:
        entries = {
            name: _Spec(dtype_name(t.dtype), tuple(int(n) for n in t.shape))
            for name, t in tensors.items()
        }
        write_weights(folder, entries, lambda name: tensor_bytes(tensors[name]), max_shard_size=max_shard_size)
    return folder


def map_like_weights_file(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Return ``tensors`` laid out in memory as ``from_pretrained`` maps a checkout's weights file.

    ``from_pretrained`` keeps its tensors as views into the memory-mapped
    ``model.safetensors``, and CPU kernels round differently depending on how their
    inputs are aligned (a 16-float dot product at an address 4 mod 64 differs in the last
    bit from one at 0 mod 64). So the weights file :func:`write_model_dir` would write is
    built in anonymous memory (page-aligned, like a mapped file) and the tensors are views
    into it at the file's offsets: a model loaded from them scores bit-identically to one
    loaded from a checkout, and nothing is written to disk. Costs a second copy of the
    weights in memory while building.

    Returns:
        Name -> CPU tensor (same dtype, shape and bytes as the input), sharing one buffer.
    """
    data = save(tensors, metadata=WEIGHTS_METADATA)
    buffer = mmap.mmap(-1, max(len(data), 1))
    buffer.write(data)
    del data
    n = int.from_bytes(buffer[:8], "little")
    header, start = json.loads(buffer[8 : 8 + n]), 8 + n
    mapped = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        (begin, end), dtype, shape = info["data_offsets"], torch_dtype(info["dtype"]), info["shape"]
        if end == begin:
            mapped[name] = torch.empty(shape, dtype=dtype)
        else:
            flat = torch.frombuffer(buffer, dtype=torch.uint8, count=end - begin, offset=start + begin)
            mapped[name] = flat.view(dtype).reshape(shape)
    return mapped


def _save_hint(folder: Path) -> str:
    if (folder / "pytorch_model.bin").is_file():
        return "it has pytorch_model.bin; save again with safe_serialization=True"
    return "save the model with model.save_pretrained(folder)"


@contextmanager
def staged_folder(to: str | Path, *, force: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``to``; when the block succeeds, its files become ``to``'s.

    A checkout that fails half-way (a corrupt object, an interrupt) leaves ``to`` exactly as
    it was: everything is written into the stage, which is removed on error, and published
    only once complete. Into a new or empty ``to`` the stage is renamed; with ``force`` into
    a non-empty one, each file replaces its namesake, and weights of the other layout
    (single file vs shards) are removed so ``from_pretrained`` cannot read stale ones.

    Raises:
        StoreError: If ``to`` is a file, or a non-empty folder and ``force`` is False.
    """
    to = Path(to)
    if to.exists() and not to.is_dir():
        raise StoreError(f"cannot check out into {to}: it is a file")
    if to.is_dir() and any(to.iterdir()) and not force:
        raise StoreError(f"cannot check out into {to}: the folder is not empty; choose a new folder "
                         "or pass force=True (--force) to overwrite")
    to.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=to.parent, prefix=f"{TMP_PREFIX}{to.name}."))
    try:
        yield stage
        if not to.exists() or not any(to.iterdir()):
            with suppress(FileNotFoundError):
                to.rmdir()
            os.replace(stage, to)
            return
        for old in _weights_files(to):
            if not (stage / old.relative_to(to)).exists():
                old.unlink()
        for new in sorted(p for p in stage.rglob("*") if not p.is_dir()):
            target = to / new.relative_to(stage)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(new, target)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _weights_files(folder: Path) -> list[Path]:
    """The weights files of a model folder, both layouts: single file, shards, index."""
    shards = [p for p in folder.glob("model-*-of-*.safetensors") if _SHARD_RE.fullmatch(p.name)]
    return [p for p in (folder / WEIGHTS_FILE, folder / WEIGHTS_INDEX_FILE, *shards) if p.exists()]
