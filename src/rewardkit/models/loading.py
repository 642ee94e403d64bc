"""Loading any reward model folder by its ``config.json`` ``"model_type"``.

``rewardkit-state-action``, ``rewardkit-task-conditioned`` and ``rewardkit-ensemble`` are
rewardkit's own families (:mod:`~rewardkit.models.state_action`,
:mod:`~rewardkit.models.task_conditioned`, :mod:`~rewardkit.models.ensemble`); any other
``model_type`` is a transformers model (``bert``, ``llama``…), loaded as a
:class:`~rewardkit.models.text.TextRewardModel` as before.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from torch import nn

from rewardkit.errors import ModelError
from rewardkit.models.ensemble import RewardEnsemble
from rewardkit.models.folder import read_config
from rewardkit.models.state_action import StateActionRewardModel
from rewardkit.models.task_conditioned import TaskConditionedRewardModel

#: What a reward model scores: texts, transitions, or transitions of a task.
RewardModelKind = Literal["text", "state-action", "task-conditioned"]
#: rewardkit's own model families by ``model_type``.
MODEL_CLASSES: dict[str, type[nn.Module]] = {
    cls.model_type: cls for cls in (StateActionRewardModel, TaskConditionedRewardModel, RewardEnsemble)
}
_KINDS: dict[str, RewardModelKind] = {
    StateActionRewardModel.model_type: "state-action",
    TaskConditionedRewardModel.model_type: "task-conditioned",
}


def reward_model_kind(folder: str | os.PathLike) -> RewardModelKind:
    """What the model in ``folder`` scores, from its ``config.json`` alone (no weights read).

    An ensemble is of its members' kind; a ``model_type`` rewardkit does not own is ``"text"``.

    Raises:
        ModelError: No readable ``config.json``.
    """
    config = read_config(folder)
    model_type = config.get("model_type")
    if model_type == RewardEnsemble.model_type and isinstance(config.get("member"), dict):
        model_type = config["member"].get("model_type")
    return _KINDS.get(model_type, "text") if isinstance(model_type, str) else "text"


def load_reward_model(folder: str | os.PathLike, *, kind: RewardModelKind | None = None) -> nn.Module:
    """Load the reward model saved in ``folder``, whichever family its ``config.json`` names.

    Args:
        folder: A folder written by a model's ``save`` (or a checkout of one).
        kind: The kind the caller needs (e.g. ``"state-action"`` for an RL wrapper); a folder
            of another kind is refused before any weights are read.

    Returns:
        A :class:`StateActionRewardModel`, :class:`TaskConditionedRewardModel`,
        :class:`RewardEnsemble` or :class:`~rewardkit.models.text.TextRewardModel`.

    Raises:
        ModelError: The folder is missing or damaged, or holds a model of another kind than ``kind``.
    """
    found = reward_model_kind(folder)
    if kind is not None and found != kind:
        model_type = read_config(folder).get("model_type")
        raise ModelError(f"{Path(folder)} holds a {found} reward model (model_type {model_type!r}), but a {kind} "
                         "reward model is needed here")
    model_type = read_config(folder).get("model_type")
    if model_type in MODEL_CLASSES:
        return MODEL_CLASSES[model_type].load(folder)
    from rewardkit.models.text import TextRewardModel

    return TextRewardModel.load(folder)
