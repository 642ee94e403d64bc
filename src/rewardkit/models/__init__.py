"""Reward model families behind one small interface: score a batch, save as tensors + config."""

from rewardkit.models.text import TextRewardModel, default_backbone
from rewardkit.models.truncation import Encoded, SpecialTokens, truncate_pair

__all__ = ["Encoded", "SpecialTokens", "TextRewardModel", "default_backbone", "truncate_pair"]
