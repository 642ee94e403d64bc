"""Which model folders hold a reward model, read from their ``config.json`` as transformers reads it.

A text reward model is a sequence-classification model with one output: ``config.json``
names a ``*ForSequenceClassification`` architecture (or, when it names none, its
``model_type`` has one in transformers' ``MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING``) and
``num_labels`` is 1. The rules, for the two ways a folder enters rewardkit:

* **a base model to train** (``--base-model``, :meth:`TextRewardModel.load`): a backbone
  (``BertModel``, ``LlamaForCausalLM``, no ``architectures``...) gets a fresh one-output
  head, whatever ``num_labels`` its config carries (transformers' default is 2). A
  sequence-classification model with one output is loaded as it is. A
  sequence-classification model with 2 or more outputs (a sentiment or NLI classifier) is
  refused: its trained head cannot give one reward, and silently replacing it would throw
  away what the user chose it for.
* **a model to commit** (``rewardkit commit DIR``): only a reward model, as above, is
  accepted, so that every stored version scores texts as it is.
"""

from __future__ import annotations

import os
from pathlib import Path

from rewardkit.errors import ModelError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
# What a tokenizer's save_pretrained writes (transformers' TOKENIZER_CONFIG_FILE, FULL_TOKENIZER_FILE)
TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json")
_HEAD_SUFFIX = "ForSequenceClassification"


def read_config(folder: str | os.PathLike):  # noqa: ANN201 (transformers.PretrainedConfig)
    """The folder's ``config.json`` as ``AutoConfig`` reads it.

    Raises:
        ModelError: The file is missing, is not JSON, or names a ``model_type`` that
            transformers does not know.
    """
    from transformers import AutoConfig

    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise ModelError(f"{folder} has no {CONFIG_FILE}; save the model with model.save_pretrained(folder), "
                         "which writes it")
    try:
        return AutoConfig.from_pretrained(str(folder))
    except (OSError, ValueError, KeyError) as exc:
        first_line = str(exc).strip().partition("\n")[0] or type(exc).__name__
        raise ModelError(f"cannot read {path}: {first_line}") from exc


def classifier_outputs(config) -> int | None:  # noqa: ANN001 (transformers.PretrainedConfig)
    """``num_labels`` of a config whose ``architectures`` name a ``*ForSequenceClassification`` class.

    Returns:
        The number of outputs of its trained head, or None for a backbone (any other
        architecture, or none named).
    """
    if any(name.endswith(_HEAD_SUFFIX) for name in config.architectures or []):
        return config.num_labels
    return None


def check_base_model(config, name: str) -> None:  # noqa: ANN001 (transformers.PretrainedConfig)
    """Refuse a base model whose trained classification head has more than one output.

    Raises:
        ModelError: ``config`` is a sequence-classification model with ``num_labels != 1``.
    """
    outputs = classifier_outputs(config)
    if outputs is not None and outputs != 1:
        raise ModelError(
            f"{name} is a sequence-classification model with {outputs} outputs (num_labels={outputs}); a reward "
            "model has one: give a reward model (num_labels=1) or the backbone it was fine-tuned from"
        )


def check_reward_model_dir(folder: str | os.PathLike) -> None:
    """Refuse a folder that does not hold a one-output sequence-classification model.

    Checks, in order: the folder exists, holds ``model.safetensors`` and ``config.json``,
    the config parses, describes a sequence-classification model, with ``num_labels`` 1,
    and the folder holds a tokenizer (:func:`check_tokenizer_files`). Only ``config.json``
    is read, not the weights.

    Raises:
        ModelError: The first check that fails, with the reason and the fix.
    """
    folder = Path(folder)
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise ModelError(f"model folder {folder} {what}; pass the folder save_pretrained wrote")
    if not (folder / WEIGHTS_FILE).is_file():
        if (folder / "adapter_config.json").is_file():
            raise ModelError(f"{folder} holds a LoRA adapter (adapter_config.json), not a full model; train and "
                             "commit it with `rewardkit train --lora-r R --commit`, or merge it into its base "
                             "(peft's merge_and_unload), save_pretrained that and commit the folder")
        raise ModelError(f"{folder} has no {WEIGHTS_FILE}; save the model with model.save_pretrained(folder)")
    config = read_config(folder)
    outputs = classifier_outputs(config)
    if outputs is None and not config.architectures:
        from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES

        if config.model_type in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES:
            outputs = config.num_labels
    if outputs is None:
        described = ", ".join(config.architectures or []) or f"model_type {config.model_type!r}"
        raise ModelError(
            f"{folder / CONFIG_FILE} describes {described}, not a sequence-classification model; a reward model "
            "has a one-output classification head: train one with `rewardkit train`, or save "
            "AutoModelForSequenceClassification.from_pretrained(..., num_labels=1) after training it"
        )
    if outputs != 1:
        raise ModelError(
            f"{folder / CONFIG_FILE} describes a sequence-classification model with {outputs} outputs "
            f"(num_labels={outputs}); a reward model has one output (num_labels=1)"
        )
    check_tokenizer_files(folder)


def check_tokenizer_files(folder: str | os.PathLike) -> None:
    """Refuse a local model folder that holds no tokenizer.

    transformers builds a tokenizer from ``config.json`` alone (an empty vocabulary: every
    word becomes ``[UNK]``), so such a folder would load and score every text alike.

    Raises:
        ModelError: None of :data:`TOKENIZER_FILES` is in the folder.
    """
    folder = Path(folder)
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ModelError(f"cannot load the tokenizer of {str(folder)!r}: it has no tokenizer "
                         f"({' or '.join(TOKENIZER_FILES)}); save it beside the model with "
                         "tokenizer.save_pretrained(folder)")
