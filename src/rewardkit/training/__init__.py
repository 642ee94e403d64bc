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
    from rewardkit.training.freeze import freeze_parameters, lineage_params
    from rewardkit.training.maml import MAMLConfig, adapt, fit_maml
    from rewardkit.training.multitask import adapt_to_task, fit_multitask
    from rewardkit.training.objectives import bradley_terry_loss
    from rewardkit.training.regression import fit_regression
    from rewardkit.training.segments import fit_preferences, segment_bradley_terry_loss
    from rewardkit.training.trainer import RewardTrainer, TrainResult
    from rewardkit.training.transfer import commit_model, init_from

__all__ = [
    "RewardConfig",
    "RewardTrainer",
    "TrainResult",
    "bradley_terry_loss",
    "fit_preferences",
    "fit_regression",
    "segment_bradley_terry_loss",
    # reuse across tasks (issue 8, section 5)
    "MAMLConfig",
    "adapt",
    "adapt_to_task",
    "commit_model",
    "fit_maml",
    "fit_multitask",
    "freeze_parameters",
    "init_from",
    "lineage_params",
]
__getattr__, __dir__ = lazy_exports(__name__, {
    "bradley_terry_loss": "rewardkit.training.objectives",
    "fit_regression": "rewardkit.training.regression",
    **dict.fromkeys(("fit_preferences", "segment_bradley_terry_loss"), "rewardkit.training.segments"),
    **dict.fromkeys(("RewardTrainer", "TrainResult"), "rewardkit.training.trainer"),
    **dict.fromkeys(("MAMLConfig", "adapt", "fit_maml"), "rewardkit.training.maml"),
    **dict.fromkeys(("adapt_to_task", "fit_multitask"), "rewardkit.training.multitask"),
    **dict.fromkeys(("commit_model", "init_from"), "rewardkit.training.transfer"),
    **dict.fromkeys(("freeze_parameters", "lineage_params"), "rewardkit.training.freeze"),
})
