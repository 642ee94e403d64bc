"""MSE regression of a state-action reward model on reward-labelled transitions.

The seed system's loss: minimise ``mean((R_θ(s, a[, s']) - r)²)`` over transitions
(s, a, r, s') with Adam on shuffled minibatches. The observation normaliser is fitted to
the training observations first and then frozen, so the statistics stored with the model
are those it was trained under. An ensemble's members each regress on every minibatch
(the loss is averaged over members), so each is a reward model on its own.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from rewardkit.errors import DataError
from rewardkit.models.ensemble import member_rewards
from rewardkit.training.minibatch import check_schedule, row_tensors, train_epochs


def fit_regression(
    model: nn.Module,
    obs: np.ndarray,
    acts: np.ndarray,
    rews: np.ndarray,
    next_obs: np.ndarray | None = None,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    tasks: np.ndarray | None = None,
    weight_decay: float = 0.0,
    update_normalizer: bool = True,
) -> list[float]:
    """Fit ``model`` to rewards by mean squared error; updates the observation normaliser first.

    Args:
        model: A :class:`~rewardkit.models.StateActionRewardModel`,
            :class:`~rewardkit.models.TaskConditionedRewardModel` or
            :class:`~rewardkit.models.RewardEnsemble` of them; trained in place.
        obs: ``(n, *obs_shape) float`` observations.
        acts: ``(n,)`` integer (discrete) or ``(n, *act_shape)`` float actions.
        rews: ``(n,) float`` reward labels.
        next_obs: ``(n, *obs_shape) float``, for models that take s'.
        epochs: Passes over the data.
        batch_size: Transitions per step.
        lr: Adam learning rate.
        seed: Seed of the minibatch order.
        tasks: ``(n,)`` task ids or ``(n, task_param_dim)`` parameters, for task-conditioned models.
        weight_decay: Adam's L2 penalty.
        update_normalizer: Fold the training observations into the model's normaliser
            before training; ``False`` keeps a stored model's statistics (fine-tuning a
            transferred model, whose weights were trained under them).

    Returns:
        Mean training loss of each epoch (``epochs`` floats).

    Raises:
        ConfigError: ``epochs``, ``batch_size`` or ``lr`` out of range.
        DataError: NaN or inf in an input, or inputs with different numbers of rows.
        ModelError: Shapes do not fit the model.
    """
    check_schedule(epochs=epochs, batch_size=batch_size, lr=lr)
    device = next(model.parameters()).device
    data = {"obs": obs, "acts": acts, "rews": rews, "next_obs": next_obs, "task": tasks}
    tensors = row_tensors(data, device)
    n = len(tensors["obs"])
    if tensors["rews"].dim() != 1:
        raise DataError(f"rews has shape {tuple(tensors['rews'].shape)}; expected ({n},), one reward per transition")
    if update_normalizer:
        model.update_obs_normalizer(tensors["obs"])
    return train_epochs(model, tensors, _mse, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                        weight_decay=weight_decay)


def _mse(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Squared error averaged over transitions and ensemble members."""
    inputs = {k: v for k, v in batch.items() if k != "rews"}
    return ((member_rewards(model, **inputs) - batch["rews"]) ** 2).mean()
