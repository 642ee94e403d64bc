"""Encoding of Gymnasium spaces as network inputs: ``Box`` flattened, ``Discrete`` one-hot.

A state-action reward model sees observations and actions as flat float vectors. A
``Box`` of any shape is flattened (``obs_dim = prod(shape)``), a ``Discrete(n)`` action
becomes a one-hot vector of width ``n`` (as Christiano et al. 2017 and imitation's
``BasicRewardNet`` feed actions to the reward network). Other spaces (``MultiDiscrete``,
``Dict``, ``Tuple``…) are refused with a :class:`~rewardkit.errors.ModelError`.

The array checks here are the models' input boundary: wrong shapes are a
:class:`~rewardkit.errors.ModelError` (the data do not fit the model), NaN or infinite
values a :class:`~rewardkit.errors.DataError` naming the field and the first bad row.
Gymnasium is imported only by :func:`observation_dim` and :func:`action_encoding`.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from rewardkit.errors import DataError, ModelError

ActionKind = Literal["discrete", "continuous"]
ACTION_KINDS: tuple[str, ...] = ("discrete", "continuous")


def observation_dim(space: Any) -> int:
    """Width of a flattened observation of ``space`` (a ``gymnasium.spaces.Box``).

    Raises:
        ModelError: ``space`` is not a ``Box``.
    """
    from gymnasium import spaces

    if not isinstance(space, spaces.Box):
        raise ModelError(f"observation space {space} is not supported: state-action reward models take a Box "
                         "(flatten or wrap other observation spaces, e.g. gymnasium.wrappers.FlattenObservation)")
    return math.prod(space.shape)


def action_encoding(space: Any) -> tuple[ActionKind, int]:
    """How actions of ``space`` enter the network: ``("discrete", n)`` or ``("continuous", flat width)``.

    Raises:
        ModelError: ``space`` is neither ``Discrete`` nor ``Box``.
    """
    from gymnasium import spaces

    if isinstance(space, spaces.Discrete):
        return "discrete", int(space.n)
    if isinstance(space, spaces.Box):
        return "continuous", math.prod(space.shape)
    raise ModelError(f"action space {space} is not supported: state-action reward models take Discrete (one-hot) "
                     "or Box (flattened) actions")


def flatten_observations(obs: torch.Tensor, obs_dim: int, name: str = "obs") -> torch.Tensor:
    """Observations ``(batch, *obs_shape)`` as ``(batch, obs_dim) float``.

    Raises:
        ModelError: The trailing dimensions do not hold ``obs_dim`` values.
    """
    if obs.dim() < 1 or (math.prod(obs.shape[1:]) if obs.dim() > 1 else 1) != obs_dim:
        raise ModelError(f"{name} has shape {tuple(obs.shape)}, but the model takes (batch, {obs_dim}) "
                         "observations: the environment's observation space does not match the model's")
    return obs.reshape(obs.shape[0], obs_dim).float()


def encode_actions(acts: torch.Tensor, kind: str, action_dim: int) -> torch.Tensor:
    """Actions as network input ``(batch, action_dim) float``.

    Args:
        acts: Discrete: ``(batch,)`` or ``(batch, 1)`` integers in ``[0, action_dim)``, one-hot
            encoded. Continuous: ``(batch, *act_shape)`` with ``action_dim`` values per row,
            flattened.
        kind: ``"discrete"`` or ``"continuous"``.
        action_dim: Number of discrete actions, or the flat width of continuous ones.

    Raises:
        ModelError: Shape, dtype or (discrete) range do not fit the model's action space.
    """
    if kind == "discrete":
        if acts.dim() == 2 and acts.shape[1] == 1:
            acts = acts[:, 0]
        if acts.dim() != 1:
            raise ModelError(f"acts has shape {tuple(acts.shape)}, but the model takes (batch,) discrete actions "
                             f"(integers in [0, {action_dim}))")
        if acts.dtype.is_floating_point or acts.dtype == torch.bool or acts.is_complex():
            raise ModelError(f"acts has dtype {acts.dtype}, but the model takes integer discrete actions")
        low, high = (int(acts.min()), int(acts.max())) if acts.numel() else (0, 0)
        if low < 0 or high >= action_dim:
            raise ModelError(f"acts holds action {low if low < 0 else high}, outside the model's "
                             f"Discrete({action_dim}) action space")
        return F.one_hot(acts.long(), action_dim).float()
    if kind == "continuous":
        return flatten_observations(acts, action_dim, name="acts")
    raise ModelError(f"action kind {kind!r} is not one of {', '.join(ACTION_KINDS)}")


def as_tensor(name: str, values: Any, device: torch.device | str | None = None) -> torch.Tensor:
    """``values`` (array-like or tensor) as a tensor on ``device``, refused if it holds NaN or inf.

    Integer arrays keep their dtype (discrete actions, task ids); floating ones become float32.

    Raises:
        DataError: A NaN or infinite value; the message names ``name`` and the first bad row.
    """
    if not isinstance(values, torch.Tensor):
        array = np.asarray(values)
        values = torch.as_tensor(array if array.flags.writeable else array.copy())
    tensor = values
    if tensor.dtype.is_floating_point:
        check_finite(name, tensor)
        tensor = tensor.float()
    return tensor.to(device) if device is not None else tensor


def check_finite(name: str, values: torch.Tensor | np.ndarray) -> None:
    """Refuse NaN or infinite values.

    Raises:
        DataError: ``{name}: row {i} holds NaN (or inf); ...``.
    """
    tensor = values if isinstance(values, torch.Tensor) else torch.as_tensor(np.asarray(values))
    if not tensor.dtype.is_floating_point:
        return
    bad = ~torch.isfinite(tensor)
    if bool(bad.any()):
        row = int(bad.reshape(bad.shape[0], -1).any(dim=1).nonzero()[0, 0]) if tensor.dim() else 0
        what = "NaN" if bool(torch.isnan(tensor[row] if tensor.dim() else tensor).any()) else "an infinite value"
        raise DataError(f"{name}: row {row} holds {what}; remove or fix such rows before scoring or training")
