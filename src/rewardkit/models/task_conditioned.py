"""Task-conditioned reward model R(s, a, task) for a family of tasks with shared dynamics.

One network for every task of a family (multi-task reward learning): the task enters as a
learned embedding of its index, ``nn.Embedding(n_tasks, task_embedding_dim)``, or, where
the family has a parameter per task (a target velocity, a goal position), as that vector
of ``task_param_dim`` values. Either is concatenated to the state-action features of
:class:`~rewardkit.models.state_action.StateActionRewardModel`, whose normalisation,
encoding, saving and loading it inherits (``"model_type": "rewardkit-task-conditioned"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from rewardkit.errors import ModelError
from rewardkit.models.spaces import flatten_observations
from rewardkit.models.state_action import StateActionConfig, StateActionRewardModel


@dataclass
class TaskConditionedConfig(StateActionConfig):
    """A :class:`StateActionConfig` plus how the task enters; exactly one of ``n_tasks``, ``task_param_dim``.

    Attributes:
        n_tasks: Number of tasks (ids ``0..n_tasks-1``), each with a learned embedding.
        task_embedding_dim: Width of the learned embedding.
        task_param_dim: Width of the task-parameter vector, for families with one.
    """

    n_tasks: int | None = None
    task_embedding_dim: int = 8
    task_param_dim: int | None = None

    def __post_init__(self) -> None:
        """Check the values, as :class:`StateActionConfig` does.

        Raises:
            ModelError: Neither or both of ``n_tasks`` and ``task_param_dim``, or a value out of range.
        """
        super().__post_init__()
        if (self.n_tasks is None) == (self.task_param_dim is None):
            raise ModelError("config needs exactly one of n_tasks (learned task embedding) and task_param_dim "
                             f"(task-parameter vector); got n_tasks={self.n_tasks!r}, "
                             f"task_param_dim={self.task_param_dim!r}")
        for name in ("n_tasks", "task_embedding_dim", "task_param_dim"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ModelError(f"config field {name} is {value!r}; expected a positive integer")

    @property
    def task_width(self) -> int:
        """Width of the task's part of the network input."""
        return self.task_param_dim if self.task_param_dim is not None else self.task_embedding_dim


class TaskConditionedRewardModel(StateActionRewardModel):
    """R_θ(s, a, task) or R_θ(s, a, s', task).

    Args:
        config: The model's shape, including how the task enters.

    Attributes:
        task_embedding: ``nn.Embedding(n_tasks, task_embedding_dim)``, or None with task parameters.
    """

    model_type: ClassVar[str] = "rewardkit-task-conditioned"
    config_class: ClassVar[type[StateActionConfig]] = TaskConditionedConfig
    config: TaskConditionedConfig

    def __init__(self, config: TaskConditionedConfig) -> None:
        super().__init__(config)
        self.task_embedding = (nn.Embedding(config.n_tasks, config.task_embedding_dim)
                               if config.n_tasks is not None else None)

    @property
    def input_dim(self) -> int:
        """State-action features plus the task's width."""
        return super().input_dim + self.config.task_width

    def task_features(self, task: torch.Tensor) -> torch.Tensor:
        """The task's part of the input, ``(batch, task_width) float32``.

        Args:
            task: ``(batch,)`` integer task ids (learned embedding), or
                ``(batch, task_param_dim)`` float task parameters.

        Raises:
            ModelError: Wrong dtype or shape, or a task id out of range.
        """
        c = self.config
        if self.task_embedding is None:
            if not task.dtype.is_floating_point:
                task = task.float()
            return flatten_observations(task, c.task_param_dim, name="task")
        if task.dtype.is_floating_point or task.dim() != 1:
            raise ModelError(f"task has shape {tuple(task.shape)} and dtype {task.dtype}; this model takes "
                             f"(batch,) integer task ids in [0, {c.n_tasks})")
        if task.numel() and (int(task.min()) < 0 or int(task.max()) >= c.n_tasks):
            raise ModelError(f"task ids must lie in [0, {c.n_tasks}); got {int(task.min())}..{int(task.max())}")
        return self.task_embedding(task.long())

    def forward(self, obs: torch.Tensor, acts: torch.Tensor, next_obs: torch.Tensor | None = None, *,
                task: torch.Tensor) -> torch.Tensor:
        """Rewards ``(batch,) float32`` (see :meth:`features` and :meth:`task_features` for the inputs).

        Raises:
            ModelError: As :meth:`features`, or ``task`` has another batch size.
        """
        features, task_part = self.features(obs, acts, next_obs), self.task_features(task)
        if task_part.shape[0] != features.shape[0]:
            raise ModelError(f"task has {task_part.shape[0]} rows for {features.shape[0]} transitions")
        return self.mlp(torch.cat([features, task_part], dim=1)).squeeze(-1)

    def score(self, obs: Any, acts: Any, next_obs: Any = None, *, task: Any) -> np.ndarray:
        """Rewards of transitions under a task, numpy in and out (see :meth:`StateActionRewardModel.score`).

        Args:
            obs: ``(n, *obs_shape)`` array.
            acts: ``(n,)`` integer or ``(n, *act_shape)`` float array.
            next_obs: ``(n, *obs_shape)`` array, when the model takes it.
            task: One task for every row (an int id, or a ``(task_param_dim,)`` vector), or
                one per row (``(n,)`` ids or ``(n, task_param_dim)`` parameters).

        Returns:
            ``(n,) float32`` rewards.
        """
        n = len(obs)
        task = np.asarray(task)
        if self.task_embedding is None and task.ndim == 1 and task.shape[0] == self.config.task_param_dim:
            task = np.broadcast_to(task, (n, task.shape[0]))
        elif task.ndim == 0:
            task = np.full(n, task.item(), dtype=task.dtype)
        return self._score(obs=obs, acts=acts, next_obs=next_obs, task=task)
