"""The folder of a state-action, task-conditioned or ensemble reward model: ``config.json`` + ``model.safetensors``.

The same two files a ``transformers`` model folder has, so the store commits, diffs and
checks it out unchanged: ``config.json`` names the family in ``"model_type"`` (as
transformers' configs do) and holds the constructor's arguments; ``model.safetensors``
holds every parameter and buffer (normalisation statistics included), written with
``safetensors.torch.save_file`` and ``{"format": "pt"}`` metadata, byte for byte what the
store's checkout writes back.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from rewardkit.errors import ModelError
from rewardkit.models.reward_head import CONFIG_FILE, WEIGHTS_FILE


def save_model_folder(folder: str | os.PathLike, config: dict[str, Any], module: torch.nn.Module) -> Path:
    """Write ``config.json`` (sorted keys) and ``model.safetensors`` (every tensor of ``module.state_dict()``).

    Returns:
        The folder (created if missing).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().cpu().contiguous() for name, t in module.state_dict().items()}
    save_file(tensors, str(folder / WEIGHTS_FILE), metadata={"format": "pt"})
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return folder


def read_config(folder: str | os.PathLike) -> dict[str, Any]:
    """The ``config.json`` of a model folder, as a dict.

    Raises:
        ModelError: The folder or its ``config.json`` is missing, or not a JSON object.
    """
    path = Path(folder) / CONFIG_FILE
    if not Path(folder).is_dir():
        raise ModelError(f"model folder {folder} does not exist; pass the folder a model's save() wrote")
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"{path} is missing; a model folder holds config.json and model.safetensors") from None
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path} is not valid JSON ({exc}); save the model again") from None
    if not isinstance(config, dict):
        raise ModelError(f"{path} is not a JSON object; save the model again")
    return config


def load_weights(module: torch.nn.Module, folder: str | os.PathLike) -> torch.nn.Module:
    """Load ``folder/model.safetensors`` into ``module`` (strict: every tensor, same shapes).

    Raises:
        ModelError: The file is missing or damaged, or its tensors do not match the config.
    """
    path = Path(folder) / WEIGHTS_FILE
    if not path.is_file():
        raise ModelError(f"{path} is missing; save the model again")
    try:
        state_dict = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise ModelError(f"cannot read {path}: {exc}; save the model again") from None
    try:
        module.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise ModelError(f"{path} does not match {Path(folder) / CONFIG_FILE}: "
                         f"{' '.join(line.strip() for line in first)[:300]}") from None
    return module
