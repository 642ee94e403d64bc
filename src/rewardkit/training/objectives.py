"""Reward-model training objectives."""

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
