"""Reward model families behind one small interface: score a batch, save as tensors + config.

Text models (:class:`TextRewardModel`, any Hugging Face sequence-classification backbone)
and models of RL transitions (:class:`StateActionRewardModel`,
:class:`TaskConditionedRewardModel`, :class:`RewardEnsemble`); :func:`load_reward_model`
loads any of them from its folder.
"""

from rewardkit.models.ensemble import RewardEnsemble
from rewardkit.models.loading import load_reward_model, reward_model_kind
from rewardkit.models.state_action import StateActionConfig, StateActionRewardModel
from rewardkit.models.task_conditioned import TaskConditionedConfig, TaskConditionedRewardModel
from rewardkit.models.text import TextRewardModel, default_backbone
from rewardkit.models.truncation import Encoded, SpecialTokens, truncate_pair

__all__ = [
    "Encoded",
    "RewardEnsemble",
    "SpecialTokens",
    "StateActionConfig",
    "StateActionRewardModel",
    "TaskConditionedConfig",
    "TaskConditionedRewardModel",
    "TextRewardModel",
    "default_backbone",
    "load_reward_model",
    "reward_model_kind",
    "truncate_pair",
]
