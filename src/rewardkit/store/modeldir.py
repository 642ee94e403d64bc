"""Model folders as ``transformers`` writes and reads them.

A model folder is ``model.safetensors`` plus any other files (``config.json``, tokenizer
files, ``training_args.bin``, subfolders). :func:`read_model_dir` reads one completely
before anything is stored, so a bad folder never half-enters a repository;
:func:`write_model_dir` writes one back that ``from_pretrained`` loads unchanged.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from rewardkit.errors import ModelError
from rewardkit.store.manifest import WEIGHTS_FILE, check_file_path


def read_model_dir(folder: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, bytes]]:
    """Read a model folder into memory.

    Args:
        folder: Folder holding ``model.safetensors`` and the model's other files.

    Returns:
        The tensors of ``model.safetensors`` by name (CPU, stored dtype), and every other
        regular file (recursively) by relative POSIX path -> content.

    Raises:
        ModelError: If the folder does not exist, has no ``model.safetensors``, or it
            cannot be read.
    """
    folder = Path(folder)
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise ModelError(f"model folder {folder} {what}; pass the folder save_pretrained wrote")
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
        save_file(tensors, str(folder / WEIGHTS_FILE), metadata={"format": "pt"})
    return folder


def _save_hint(folder: Path) -> str:
    if (folder / f"{WEIGHTS_FILE}.index.json").is_file():
        return (
            "sharded checkpoints are not supported yet; save with "
            "save_pretrained(folder, max_shard_size='100GB') to get one file"
        )
    if (folder / "pytorch_model.bin").is_file():
        return "it has pytorch_model.bin; save again with safe_serialization=True"
    return "save the model with model.save_pretrained(folder)"
