"""Reward-model training: objectives, batching, the accelerate-based trainer; state-action objectives.

Text models train with :class:`RewardTrainer`; state-action models with :func:`fit_regression`
(MSE on rewards) and :func:`fit_preferences` (Bradley-Terry on segment pairs).

:class:`RewardConfig` is plain Python; the torch-backed names are imported on first use
(see :mod:`rewardkit.lazy`), so the CLI builds its flags from the config without torch.
"""

from typing import TYPE_CHECKING

from rewardkit.lazy import lazy_exports
from rewardkit.training.config import RewardConfig

if TYPE_CHECKING:
    from rewardkit.training.objectives import bradley_terry_loss
    from rewardkit.training.regression import fit_regression
    from rewardkit.training.segments import fit_preferences, segment_bradley_terry_loss
    from rewardkit.training.trainer import RewardTrainer, TrainResult

__all__ = [
    "RewardConfig",
    "RewardTrainer",
    "TrainResult",
    "bradley_terry_loss",
    "fit_preferences",
    "fit_regression",
    "segment_bradley_terry_loss",
]
__getattr__, __dir__ = lazy_exports(__name__, {
    "bradley_terry_loss": "rewardkit.training.objectives",
    "fit_regression": "rewardkit.training.regression",
    **dict.fromkeys(("fit_preferences", "segment_bradley_terry_loss"), "rewardkit.training.segments"),
    **dict.fromkeys(("RewardTrainer", "TrainResult"), "rewardkit.training.trainer"),
})
