"""Reward-model training: objectives, batching and the accelerate-based trainer.

:class:`RewardConfig` is plain Python; the torch-backed names are imported on first use
(see :mod:`rewardkit.lazy`), so the CLI builds its flags from the config without torch.
"""

from typing import TYPE_CHECKING

from rewardkit.lazy import lazy_exports
from rewardkit.training.config import RewardConfig

if TYPE_CHECKING:
    from rewardkit.training.objectives import bradley_terry_loss
    from rewardkit.training.trainer import RewardTrainer, TrainResult

__all__ = ["RewardConfig", "RewardTrainer", "TrainResult", "bradley_terry_loss"]
__getattr__, __dir__ = lazy_exports(__name__, {
    "bradley_terry_loss": "rewardkit.training.objectives",
    **dict.fromkeys(("RewardTrainer", "TrainResult"), "rewardkit.training.trainer"),
})
