"""Model folders as ``transformers`` writes and reads them.

A model folder is ``model.safetensors`` plus any other files (``config.json``, tokenizer
files, ``training_args.bin``, subfolders). :func:`read_model_dir` reads one completely
before anything is stored, so a bad folder never half-enters a repository;
:func:`write_model_dir` writes one back that ``from_pretrained`` loads unchanged.
"""

from __future__ import annotations

import json
import mmap
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save, save_file

from rewardkit.errors import ModelError
from rewardkit.store.manifest import WEIGHTS_FILE, check_file_path
from rewardkit.store.objects import torch_dtype

#: The metadata ``save_pretrained`` writes into ``model.safetensors``.
WEIGHTS_METADATA = {"format": "pt"}
#: Pickled weight files (``torch.save``): loading one runs code, so the store refuses them.
PICKLED_WEIGHTS = ("pytorch_model*.bin", "adapter_model.bin")


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


def read_model_dir(folder: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, bytes]]:
    """Read a model folder into memory.

    Args:
        folder: Folder holding ``model.safetensors`` and the model's other files.

    Returns:
        The tensors of ``model.safetensors`` by name (CPU, stored dtype), and every other
        regular file (recursively) by relative POSIX path -> content.

    Raises:
        ModelError: If the folder does not exist, has no ``model.safetensors``, it cannot
            be read, or the folder holds pickled weights (:func:`refuse_pickled_weights`).
    """
    folder = Path(folder)
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise ModelError(f"model folder {folder} {what}; pass the folder save_pretrained wrote")
    refuse_pickled_weights(folder)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelError(f"{folder} has no {WEIGHTS_FILE}; {_save_hint(folder)}")
    try:
        with safe_open(str(weights), framework="pt") as f:
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ModelError(
            f"cannot read {weights}: {exc}; the file is damaged or not safetensors, "
            "save the model again with save_pretrained"
        ) from exc
    if not tensors:
        raise ModelError(f"{weights} holds no tensors; save the trained model again")
    files = {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path != weights
    }
    return tensors, files


def write_model_dir(
    folder: str | Path, tensors: dict[str, torch.Tensor] | None, files: dict[str, bytes]
) -> Path:
    """Write a model folder: every file at its relative path, and ``model.safetensors``.

    With ``tensors=None`` only the files are written (no ``model.safetensors``).

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
        save_file(tensors, str(folder / WEIGHTS_FILE), metadata=WEIGHTS_METADATA)
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
    if (folder / f"{WEIGHTS_FILE}.index.json").is_file():
        return (
            "sharded checkpoints are not supported yet; save with "
            "save_pretrained(folder, max_shard_size='100GB') to get one file"
        )
    if (folder / "pytorch_model.bin").is_file():
        return "it has pytorch_model.bin; save again with safe_serialization=True"
    return "save the model with model.save_pretrained(folder)"
