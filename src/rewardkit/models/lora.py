"""LoRA adapters (peft) on a text reward model, with the score head kept fully trainable.

:func:`add_lora` injects LoRA layers into a :class:`~rewardkit.models.TextRewardModel`'s
backbone in place, as ``peft.get_peft_model`` does, and keeps the one-logit head trainable
as TRL's reward trainer does (``modules_to_save=["score"]``; BERT's head is ``classifier``).
The backbone stays the transformers model, so packed BERT and shared-prefix decoders run
unchanged; the :class:`peft.PeftModel` that wraps it is kept beside it
(``model.peft_model``) to save the adapter. :meth:`TextRewardModel.save` then writes the
adapter folder peft writes (``adapter_model.safetensors``, ``adapter_config.json``), which
``peft.PeftModel.from_pretrained(base, folder)`` loads.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from torch import nn

from rewardkit.errors import ConfigError

if TYPE_CHECKING:
    from rewardkit.models.text import TextRewardModel

#: Where a sequence-classification model keeps its head: BERT-family ``classifier``; Llama, Qwen, GPT-2 ``score``.
HEAD_NAMES = ("score", "classifier")


def head_name(backbone: nn.Module) -> str:
    """Name of the backbone's one-logit head module (``score`` or ``classifier``).

    Raises:
        ConfigError: The backbone has neither.
    """
    for name in HEAD_NAMES:
        if isinstance(getattr(backbone, name, None), nn.Module):
            return name
    raise ConfigError(f"cannot train LoRA on {type(backbone).__name__}: it has no head named "
                      f"{' or '.join(HEAD_NAMES)} to keep trainable")


def default_targets(model_type: str) -> list[str]:
    """The default LoRA target modules of peft for a model family (``bert``: query, value; ``llama``: q_proj, v_proj).

    Raises:
        ConfigError: peft has no default for ``model_type``; the message asks for ``--lora-target``.
    """
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as DEFAULTS

    if model_type not in DEFAULTS:
        raise ConfigError(f"peft has no default LoRA target modules for model_type {model_type!r}; "
                          "name them with --lora-target MODULE (repeat for several)")
    return list(DEFAULTS[model_type])


def check_targets(backbone: nn.Module, targets: Sequence[str]) -> None:
    """Refuse target names that match no linear layer of ``backbone`` (a module name's last part, as peft matches).

    Linear layers are ``nn.Linear`` and transformers' ``Conv1D`` (GPT-2's, a transposed linear).

    Works on a model built on the ``meta`` device (:func:`check_backbone_targets`), so a
    typo is refused before any weight loads.

    Raises:
        ConfigError: One of ``targets`` names no linear layer; the message lists the ones there are.
    """
    linear = sorted({name.rsplit(".", 1)[-1] for name, module in backbone.named_modules()
                     if _is_linear(module) and name.rsplit(".", 1)[-1] not in HEAD_NAMES})
    unknown = [t for t in targets if t not in linear]
    if unknown:
        raise ConfigError(f"--lora-target {', '.join(unknown)}: no such linear layer in this "
                          f"{backbone.config.model_type} model; it has {', '.join(linear)}")


def check_backbone_targets(name_or_path: str | os.PathLike | None, targets: Sequence[str] | None) -> list[str]:
    """The LoRA target modules for a backbone folder or hub id, checked on a weightless (``meta``) copy.

    Reads only the backbone's ``config.json``, so a typo in ``--lora-target`` is refused
    before any weight loads.

    Args:
        name_or_path: A model folder or hub id; None means the default backbone.
        targets: The names given, or None for :func:`default_targets`.

    Returns:
        The target module names.

    Raises:
        ModelError: The backbone's config cannot be read.
        ConfigError: As :func:`default_targets` and :func:`check_targets`.
    """
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from rewardkit.models.text import _backbone_path, _loading

    path = _backbone_path(name_or_path)
    with _loading(f"backbone {path!r}"):
        config = AutoConfig.from_pretrained(path)
    targets = list(targets) if targets else default_targets(config.model_type)
    with torch.device("meta"), _loading(f"backbone {path!r}"):
        model = AutoModelForSequenceClassification.from_config(config)
    check_targets(model, targets)
    return targets


def add_lora(model: TextRewardModel, r: int, alpha: float | None = None,
             targets: Sequence[str] | None = None, dropout: float = 0.0) -> TextRewardModel:
    """Inject a LoRA adapter into ``model``'s backbone, in place; only LoRA and the head stay trainable.

    Args:
        model: The reward model; its backbone is changed in place.
        r: LoRA rank, >= 1.
        alpha: Scaling numerator (delta = alpha / r * B @ A); default ``2 * r``.
        targets: Module names that get LoRA; default :func:`default_targets` of the family.
        dropout: Dropout on the LoRA input.

    Returns:
        ``model``, with ``model.peft_model`` set.

    Raises:
        ConfigError: A target names no linear layer, or the family has no default targets.
    """
    from peft import LoraConfig, TaskType, get_peft_model

    backbone = model.backbone
    targets = list(targets) if targets else default_targets(backbone.config.model_type)
    check_targets(backbone, targets)
    transposed = any(_is_linear(m) and not isinstance(m, nn.Linear) and name.rsplit(".", 1)[-1] in targets
                     for name, m in backbone.named_modules())
    config = LoraConfig(task_type=TaskType.SEQ_CLS, r=r, lora_alpha=alpha if alpha is not None else 2 * r,
                        lora_dropout=dropout, target_modules=targets, modules_to_save=[head_name(backbone)],
                        fan_in_fan_out=transposed)
    peft_model = get_peft_model(backbone, config)
    # Kept out of the module tree: it holds the backbone's own parameters, and registering it
    # would give every parameter a second state_dict key (and break checkpoints).
    object.__setattr__(model, "peft_model", peft_model)
    return model


def _is_linear(module: nn.Module) -> bool:
    """``nn.Linear`` or transformers' ``Conv1D`` (GPT-2's linear layer, weights stored transposed)."""
    from transformers.pytorch_utils import Conv1D

    return isinstance(module, nn.Linear | Conv1D)
