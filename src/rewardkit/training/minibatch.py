"""The minibatch loop shared by the state-action objectives: Adam over shuffled rows of equal-length tensors.

:func:`~rewardkit.training.regression.fit_regression` (rows: transitions) and
:func:`~rewardkit.training.segments.fit_preferences` (rows: segment pairs) differ only in
their loss; the text trainer (:mod:`rewardkit.training.trainer`) runs on ``accelerate``
with its own batching of token sequences.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from rewardkit.errors import ConfigError, DataError
from rewardkit.models.spaces import as_tensor


def check_schedule(*, epochs: int, batch_size: int, lr: float) -> None:
    """Refuse a training schedule out of range.

    Raises:
        ConfigError: Names the setting and what is expected.
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise ConfigError(f"epochs is {epochs!r}; expected an integer >= 1")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size is {batch_size!r}; expected an integer >= 1")
    if not lr > 0:
        raise ConfigError(f"lr is {lr!r}; expected a positive learning rate")


def check_rows(tensors: dict[str, torch.Tensor]) -> int:
    """The common number of rows of ``tensors`` (at least 1).

    Raises:
        DataError: The inputs have different numbers of rows, or none.
    """
    rows = {k: (t.shape[0] if t.dim() else 0) for k, t in tensors.items()}
    if len(set(rows.values())) != 1:
        raise DataError(f"inputs have different numbers of rows: {rows}; pass one row per transition (or pair)")
    n = next(iter(rows.values()))
    if n == 0:
        raise DataError("no training data: the inputs have 0 rows")
    return n


def row_tensors(data: Mapping[str, Any], device: torch.device, *, where: str = "") -> dict[str, torch.Tensor]:
    """The arrays of ``data`` that are not None as tensors on ``device``, one row each per example.

    Args:
        data: Name -> array-like or tensor (None: absent, left out).
        device: Where the tensors go.
        where: Prefix of the names in error messages (e.g. ``"support"``).

    Raises:
        DataError: A NaN or infinite value (naming the array and row), or arrays with
            different numbers of rows, or none.
    """
    tensors = {k: as_tensor(f"{where} {k}" if where else k, v, device) for k, v in data.items() if v is not None}
    check_rows(tensors)
    return tensors


def train_epochs(
    model: nn.Module,
    tensors: dict[str, torch.Tensor],
    loss_fn: Callable[[nn.Module, dict[str, torch.Tensor]], torch.Tensor],
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    weight_decay: float = 0.0,
) -> list[float]:
    """Adam over shuffled minibatches of rows of ``tensors`` for ``epochs`` passes.

    Args:
        model: Trained in place (in train mode; its previous mode restored after).
        tensors: Equal-length tensors by name; a minibatch is the same rows of each.
        loss_fn: ``loss_fn(model, minibatch) -> scalar``.
        epochs: Passes over the rows.
        batch_size: Rows per step.
        lr: Adam learning rate.
        seed: Seed of the row order (a private ``torch.Generator``; global RNGs are untouched).
        weight_decay: Adam's L2 penalty.

    Returns:
        Mean loss of each epoch (weighted by minibatch size).
    """
    n = next(iter(tensors.values())).shape[0]
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    was_training = model.training
    model.train()
    history = []
    try:
        for _ in range(epochs):
            order = torch.randperm(n, generator=generator).to(next(iter(tensors.values())).device)
            total = 0.0
            for start in range(0, n, batch_size):
                rows = order[start : start + batch_size]
                loss = loss_fn(model, {k: t[rows] for k, t in tensors.items()})
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(rows)
            history.append(total / n)
    finally:
        model.train(was_training)
    return history
