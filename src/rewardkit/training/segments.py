"""Bradley-Terry on pairs of trajectory segments (Christiano et al. 2017, "Deep RL from Human Preferences").

A segment σ = ((s_0, a_0, s'_0), …, (s_{L-1}, a_{L-1}, s'_{L-1})) has the learned return
``R̂(σ) = Σ_t R_θ(s_t, a_t[, s'_t])``, and the probability that σ¹ is preferred to σ² is
``σ(R̂(σ¹) - R̂(σ²))`` (Christiano et al. 2017, eq. 1). The loss is the cross-entropy
with the label ``μ ∈ [0, 1]`` (1: σ¹ preferred, 0: σ² preferred, 0.5: equally good):

    ``loss = -mean(μ log σ(R̂¹ - R̂²) + (1 - μ) log σ(R̂² - R̂¹))``

which for hard labels is :func:`rewardkit.training.objectives.bradley_terry_loss` on the
two returns. Segments follow imitation's "fragments": arrays ``(M, L, ...)`` with fields
``obs``, ``acts``, ``next_obs``, and optionally ``absorbing`` ``(M, L)`` bool: padding after
a termination, whose reward is 0 by definition (not the model's output), so the learned
reward's level is fixed against it (R̂ > 0 where going on beats ending the episode).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rewardkit.errors import DataError
from rewardkit.models.ensemble import member_rewards
from rewardkit.models.state_action import mark_zero_after_termination
from rewardkit.training.minibatch import check_schedule, row_tensors, train_epochs


class SegmentLike(Protocol):
    """M segments of length L (``rewardkit.data.transitions.Segments`` is one).

    Attributes:
        obs: ``(M, L, *obs_shape)`` observations.
        acts: ``(M, L)`` integer or ``(M, L, *act_shape)`` float actions.
        next_obs: ``(M, L, *obs_shape)`` next observations (may be None for models that ignore them).
        absorbing: ``(M, L)`` bool padding steps, counted 0 (optional; read with ``getattr``).
    """

    obs: Any
    acts: Any
    next_obs: Any


def segment_returns(
    model: nn.Module, obs: torch.Tensor, acts: torch.Tensor, next_obs: torch.Tensor | None = None,
    task: torch.Tensor | None = None, absorbing: torch.Tensor | None = None,
) -> torch.Tensor:
    """Learned returns of segments, per ensemble member: ``(K, M)`` (K = 1 for a single model).

    Args:
        model: A state-action or task-conditioned reward model, or an ensemble of them.
        obs: ``(M, L, *obs_shape) float``.
        acts: ``(M, L)`` integer or ``(M, L, *act_shape)`` float.
        next_obs: ``(M, L, *obs_shape) float`` or None.
        task: ``(M,)`` task ids or ``(M, task_param_dim)`` parameters, one per segment, or None.
        absorbing: ``(M, L) bool`` steps that count 0 (padding after a termination), or None.

    Raises:
        DataError: ``obs`` is not ``(M, L, ...)`` or the inputs disagree on M or L.
    """
    if obs.dim() < 2:
        raise DataError(f"segment obs has shape {tuple(obs.shape)}; expected (segments, length, *obs_shape)")
    m, length = obs.shape[:2]
    for name, t in (("acts", acts), ("next_obs", next_obs)):
        if t is not None and tuple(t.shape[:2]) != (m, length):
            raise DataError(f"segment {name} has shape {tuple(t.shape)}; expected ({m}, {length}, ...) like obs")
    flat = {"obs": obs.flatten(0, 1), "acts": acts.flatten(0, 1)}
    if next_obs is not None:
        flat["next_obs"] = next_obs.flatten(0, 1)
    if task is not None:
        flat["task"] = task.repeat_interleave(length, dim=0)
    rewards = member_rewards(model, **flat).reshape(-1, m, length)
    if absorbing is not None:
        rewards = rewards.masked_fill(absorbing.bool(), 0.0)
    return rewards.sum(dim=-1)


def segment_bradley_terry_loss(
    model: nn.Module, seg_a: SegmentLike, seg_b: SegmentLike, prefs: torch.Tensor,
    task: torch.Tensor | None = None,
) -> torch.Tensor:
    """Bradley-Terry cross-entropy of preference labels between segment pairs (see the module docstring).

    Args:
        model: A state-action or task-conditioned reward model, or an ensemble (the loss is
            averaged over members, each fitting the labels on its own).
        seg_a: First segments, tensors ``(M, L, ...)``.
        seg_b: Second segments, same shapes.
        prefs: ``(M,) float`` in ``[0, 1]``: probability that ``seg_a`` is preferred (0.5 = equal).
        task: ``(M,)`` or ``(M, task_param_dim)``, for task-conditioned models.

    Returns:
        Scalar loss.
    """
    returns_a = segment_returns(model, seg_a.obs, seg_a.acts, seg_a.next_obs, task, getattr(seg_a, "absorbing", None))
    returns_b = segment_returns(model, seg_b.obs, seg_b.acts, seg_b.next_obs, task, getattr(seg_b, "absorbing", None))
    diff = returns_a - returns_b
    return F.binary_cross_entropy_with_logits(diff, prefs.to(diff.dtype).expand_as(diff))


class _Pairs:
    """Segment fields of one side of a minibatch, as :func:`segment_bradley_terry_loss` reads them."""

    def __init__(self, batch: dict[str, torch.Tensor], side: str) -> None:
        self.obs, self.acts = batch[f"{side}.obs"], batch[f"{side}.acts"]
        self.next_obs = batch.get(f"{side}.next_obs")
        self.absorbing = batch.get(f"{side}.absorbing")


def fit_preferences(
    model: nn.Module,
    seg_a: SegmentLike,
    seg_b: SegmentLike,
    prefs: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    tasks: np.ndarray | None = None,
    weight_decay: float = 0.0,
    update_normalizer: bool = True,
) -> list[float]:
    """Fit ``model`` to preference labels between segment pairs; updates the observation normaliser first.

    Args:
        model: Trained in place (see :func:`segment_bradley_terry_loss`).
        seg_a: First segments, numpy arrays or tensors ``(M, L, ...)``.
        seg_b: Second segments, same shapes.
        prefs: ``(M,)`` labels in ``[0, 1]`` (1: ``seg_a`` preferred, 0.5: equal).
        epochs: Passes over the pairs.
        batch_size: Pairs per step.
        lr: Adam learning rate.
        seed: Seed of the minibatch order.
        tasks: ``(M,)`` task ids or ``(M, task_param_dim)``, for task-conditioned models.
        weight_decay: Adam's L2 penalty.
        update_normalizer: Fold the training observations into the model's normaliser
            before training; ``False`` keeps a stored model's statistics (fine-tuning a
            transferred model, whose weights were trained under them).

    Returns:
        Mean training loss of each epoch.

    When a segment has absorbing steps, the model's config (every ensemble member's) gets
    ``zero_after_termination = True``: its reward's level is then fixed against them, and
    saved with it.

    Raises:
        ConfigError: Schedule out of range.
        DataError: NaN or inf in an input, labels outside ``[0, 1]``, or inputs that disagree in size.
        ModelError: Shapes do not fit the model.
    """
    check_schedule(epochs=epochs, batch_size=batch_size, lr=lr)
    device = next(model.parameters()).device
    data: dict[str, Any] = {"prefs": prefs, "task": tasks}
    for side, seg in (("a", seg_a), ("b", seg_b)):
        data.update({f"{side}.obs": seg.obs, f"{side}.acts": seg.acts, f"{side}.next_obs": seg.next_obs,
                     f"{side}.absorbing": getattr(seg, "absorbing", None)})
    tensors = row_tensors(data, device)
    labels = tensors["prefs"].float()
    if labels.dim() != 1 or bool(((labels < 0) | (labels > 1)).any()):
        raise DataError("prefs must be one label per pair in [0, 1] (1: first segment preferred, 0.5: equal); "
                        f"got shape {tuple(labels.shape)}, range {float(labels.min()):g}..{float(labels.max()):g}")
    tensors["prefs"] = labels
    if update_normalizer:
        model.update_obs_normalizer(torch.cat([tensors["a.obs"].flatten(0, 1), tensors["b.obs"].flatten(0, 1)]))

    def loss_fn(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return segment_bradley_terry_loss(model, _Pairs(batch, "a"), _Pairs(batch, "b"), batch["prefs"],
                                          batch.get("task"))

    losses = train_epochs(model, tensors, loss_fn, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                          weight_decay=weight_decay)
    if any(bool(tensors[f"{side}.absorbing"].any()) for side in "ab" if f"{side}.absorbing" in tensors):
        mark_zero_after_termination(model)
    return losses
