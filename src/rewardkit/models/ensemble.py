"""Ensembles of state-action or task-conditioned reward models: mean reward and disagreement.

K members of one class and one config, each with its own initialisation (and its own
normalisation buffers). The ensemble's reward is the members' mean; their standard
deviation measures disagreement, which drives active query selection (Christiano et al.
2017 §2.2.4; Lee et al. 2021, PEBBLE and B-Pref) and uncertainty penalties. Saved as one
``model.safetensors`` whose tensor names carry the prefix ``members.<k>.`` and a
``config.json`` ``{"model_type": "rewardkit-ensemble", "n_members": K, "member": {...}}``
holding the members' own config.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from rewardkit.errors import ModelError
from rewardkit.models.folder import load_weights, read_config, save_model_folder
from rewardkit.models.state_action import StateActionConfig, StateActionRewardModel
from rewardkit.models.task_conditioned import TaskConditionedConfig, TaskConditionedRewardModel

#: Member classes by their ``model_type``.
MEMBER_CLASSES: dict[str, type[StateActionRewardModel]] = {
    cls.model_type: cls for cls in (StateActionRewardModel, TaskConditionedRewardModel)
}


class RewardEnsemble(nn.Module):
    """K reward models scored together; :meth:`forward` is their mean, :meth:`mean_std` adds the spread.

    Args:
        members: At least 2 models of one class with equal configs.

    Raises:
        ModelError: Fewer than 2 members, or members of different classes or configs.
    """

    model_type: ClassVar[str] = "rewardkit-ensemble"

    def __init__(self, members: Sequence[StateActionRewardModel]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ModelError(f"an ensemble needs at least 2 members (their spread is its point); got {len(members)}")
        first = members[0]
        for k, member in enumerate(members):
            if type(member) is not type(first) or member.config != first.config:
                raise ModelError(f"ensemble member {k} differs from member 0 in class or config; "
                                 "an ensemble's members share one config")
        self.members = nn.ModuleList(members)

    @classmethod
    def from_config(cls, config: StateActionConfig, n_members: int, *, seed: int | None = None) -> RewardEnsemble:
        """``n_members`` fresh members of the class ``config`` belongs to.

        With ``seed``, member ``k`` is initialised from seed ``seed + k`` (the global torch
        RNG is left as it was); without, from the global RNG in turn.
        """
        member_class = (TaskConditionedRewardModel if isinstance(config, TaskConditionedConfig)
                        else StateActionRewardModel)
        members = []
        for k in range(n_members):
            with torch.random.fork_rng(devices=[], enabled=seed is not None):
                if seed is not None:
                    torch.manual_seed(seed + k)
                members.append(member_class(config))
        return cls(members)

    @property
    def config(self) -> StateActionConfig:
        """The members' config."""
        return self.members[0].config

    # ------------------------------------------------------------------ forward
    def member_rewards(self, *args: Any, **kw: Any) -> torch.Tensor:
        """Every member's rewards, ``(K, batch) float32``; arguments as the members' ``forward``."""
        return torch.stack([member(*args, **kw) for member in self.members])

    def forward(self, *args: Any, **kw: Any) -> torch.Tensor:
        """Mean reward over members, ``(batch,) float32``; arguments as the members' ``forward``."""
        return self.member_rewards(*args, **kw).mean(dim=0)

    def mean_std(self, *args: Any, **kw: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and sample standard deviation (``correction=1``) over members, each ``(batch,) float32``."""
        rewards = self.member_rewards(*args, **kw)
        return rewards.mean(dim=0), rewards.std(dim=0, correction=1)

    def update_obs_normalizer(self, obs: torch.Tensor | np.ndarray) -> None:
        """Fold observations into every member's normaliser."""
        for member in self.members:
            member.update_obs_normalizer(obs)

    # ------------------------------------------------------------------ scoring
    def score(self, *args: Any, **kw: Any) -> np.ndarray:
        """Mean reward, numpy in and out; arguments as the members' ``score``. Returns ``(n,) float32``."""
        return self.score_members(*args, **kw).mean(axis=0)

    def score_mean_std(self, *args: Any, **kw: Any) -> tuple[np.ndarray, np.ndarray]:
        """Mean and sample standard deviation over members, numpy, each ``(n,) float32``."""
        rewards = self.score_members(*args, **kw)
        return rewards.mean(axis=0), rewards.std(axis=0, ddof=1)

    def score_members(self, *args: Any, **kw: Any) -> np.ndarray:
        """Every member's rewards, numpy, ``(K, n) float32``; arguments as the members' ``score``."""
        return np.stack([member.score(*args, **kw) for member in self.members])

    # ------------------------------------------------------------------ saving
    def save(self, folder: str | os.PathLike) -> Path:
        """Write one ``config.json`` and one ``model.safetensors`` (tensors ``members.<k>.*``)."""
        first = self.members[0]
        config = {"model_type": self.model_type, "n_members": len(self.members),
                  "member": {"model_type": first.model_type, **first.config.to_dict()}}
        return save_model_folder(folder, config, self)

    @classmethod
    def load(cls, folder: str | os.PathLike) -> RewardEnsemble:
        """Load a folder :meth:`save` wrote.

        Raises:
            ModelError: Files missing or damaged, or not an ensemble of known members.
        """
        config = read_config(folder)
        source = str(Path(folder) / "config.json")
        if config.get("model_type") != cls.model_type:
            raise ModelError(f"{source}: model_type is {config.get('model_type')!r}, not {cls.model_type!r}; "
                             "load it with rewardkit.models.load_reward_model")
        member, n_members = config.get("member"), config.get("n_members")
        if not isinstance(member, dict) or member.get("model_type") not in MEMBER_CLASSES:
            raise ModelError(f"{source}: field member must be a member config whose model_type is one of "
                             f"{', '.join(MEMBER_CLASSES)}")
        if not isinstance(n_members, int) or isinstance(n_members, bool) or n_members < 2:
            raise ModelError(f"{source}: field n_members is {n_members!r}; expected an integer >= 2")
        member_class = MEMBER_CLASSES[member["model_type"]]
        members = [member_class.from_config_dict(member, f"{source} (member)") for _ in range(n_members)]
        return load_weights(cls(members), folder)


def member_rewards(model: nn.Module, *args: Any, **kw: Any) -> torch.Tensor:
    """Per-member rewards ``(K, batch)`` of an ensemble, or ``(1, batch)`` of a single model.

    Training losses average over members, so each member fits the data on its own
    (rather than only their mean).
    """
    if isinstance(model, RewardEnsemble):
        return model.member_rewards(*args, **kw)
    return model(*args, **kw).unsqueeze(0)
