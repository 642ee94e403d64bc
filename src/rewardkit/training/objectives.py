"""Reward-model training objectives: Bradley-Terry on preference pairs, MSE regression on ratings."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bradley_terry_loss(
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    margin: torch.Tensor | None = None,
    center_rewards_coefficient: float | None = None,
) -> torch.Tensor:
    """Bradley-Terry negative log-likelihood of the preferences, with optional margin and centering.

    ``loss = mean(-log σ(r_chosen - r_rejected - margin)) + c * mean((r_chosen + r_rejected)^2)``

    Sources: Bradley & Terry (1952); Ouyang et al. 2022 (InstructGPT, eq. 1); the margin
    term from Touvron et al. 2023 (Llama 2, eq. 2); centering from Eisenstein et al. 2023.

    Args:
        chosen: ``(batch,) float`` rewards of the chosen responses.
        rejected: ``(batch,) float`` rewards of the rejected responses.
        margin: ``(batch,) float`` required reward gap, or ``None`` for 0.
        center_rewards_coefficient: Weight ``c`` of the centering term, or ``None``.

    Returns:
        Scalar loss.
    """
    diff = chosen - rejected
    if margin is not None:
        diff = diff - margin
    loss = -F.logsigmoid(diff).mean()
    if center_rewards_coefficient:
        loss = loss + center_rewards_coefficient * ((chosen + rejected) ** 2).mean()
    return loss


def mse_loss(rewards: torch.Tensor, ratings: torch.Tensor) -> torch.Tensor:
    """Mean squared error of the rewards against the ratings (the seed system's regression loss).

    ``loss = mean((r - y)^2)``, in squared rating units (or squared standard deviations when the
    ratings were standardised).

    Args:
        rewards: ``(batch,) float`` rewards of the rated responses.
        ratings: ``(batch,) float`` their ratings (the targets).

    Returns:
        Scalar loss.
    """
    return F.mse_loss(rewards, ratings.to(rewards.dtype))


def ranking_agreement(rewards: torch.Tensor, ratings: torch.Tensor) -> float:
    """Share of the batch's pairs with different ratings whose rewards are ordered the same way.

    The pairwise accuracy of a rated batch, so MSE runs log a curve comparable with
    Bradley-Terry's: pairs ``i < j`` with ``y_i != y_j`` count 1 when ``r_i - r_j`` has the sign
    of ``y_i - y_j`` and one half when the rewards are equal.

    Args:
        rewards: ``(batch,) float`` rewards.
        ratings: ``(batch,) float`` ratings.

    Returns:
        The share in [0, 1]; 0.5 (chance) when no two ratings in the batch differ.
    """
    dr = rewards.detach()[:, None] - rewards.detach()[None, :]
    dy = ratings[:, None] - ratings[None, :]
    upper = torch.triu(torch.ones_like(dy, dtype=torch.bool), diagonal=1) & (dy != 0)
    if not upper.any():
        return 0.5
    agree = (torch.sign(dr) == torch.sign(dy)).float() + 0.5 * (dr == 0).float()
    return agree[upper].mean().item()
