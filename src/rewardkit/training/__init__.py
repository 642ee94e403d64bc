"""Reward-model training: objectives, batching and the accelerate-based trainer."""

from rewardkit.training.config import RewardConfig
from rewardkit.training.objectives import bradley_terry_loss
from rewardkit.training.trainer import RewardTrainer, TrainResult

__all__ = ["RewardConfig", "RewardTrainer", "TrainResult", "bradley_terry_loss"]
