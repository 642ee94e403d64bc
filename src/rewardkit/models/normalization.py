"""Running mean and variance of observations (and rewards), kept as buffers of the model.

The statistics are module buffers, so they are tensors of ``model.safetensors``: stored,
versioned, diffed and checked out with the weights. The update is the parallel
(batched) algorithm of Chan, Golub & LeVeque (1979), as in stable-baselines3's
``RunningMeanStd`` (used by ``VecNormalize``); normalising and clipping to ``±clip``
also follows ``VecNormalize`` (default ``clip_obs=10``).
"""

from __future__ import annotations

import torch
from torch import nn


class RunningNormalizer(nn.Module):
    """Per-feature running mean and variance, and ``(x - mean) / sqrt(var + eps)`` clipped.

    Before any update (count 0, mean 0, var 1) normalising is the identity up to ``eps``.
    Statistics are float64 buffers ``mean``, ``var`` ``(*shape,)`` and ``count`` ``()``.

    Args:
        shape: Shape of one sample, e.g. ``(obs_dim,)``, or ``()`` for scalars (rewards).
        eps: Added to the variance before the square root.
        clip: Normalised values are clipped to ``[-clip, clip]``.
    """

    def __init__(self, shape: tuple[int, ...], *, eps: float = 1e-8, clip: float = 10.0) -> None:
        super().__init__()
        self.eps, self.clip = eps, clip
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Fold a batch ``(batch, *shape)`` into the statistics (Chan et al. 1979)."""
        x = x.to(self.mean.device, torch.float64).reshape(-1, *self.mean.shape)
        n = x.shape[0]
        if n == 0:
            return
        batch_mean, batch_var = x.mean(dim=0), x.var(dim=0, correction=0)
        total = self.count + n
        delta = batch_mean - self.mean
        m2 = self.var * self.count + batch_var * n + delta**2 * self.count * n / total
        self.mean.add_(delta * n / total)
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised ``x`` ``(batch, *shape)``, same dtype, clipped to ``±clip``."""
        mean = self.mean.to(x.dtype)
        std = torch.sqrt(self.var + self.eps).to(x.dtype)
        return torch.clamp((x - mean) / std, -self.clip, self.clip)
