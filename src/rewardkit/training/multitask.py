"""Multi-task reward learning: one R(s, a, task) over the tasks of a family, then adaptation to a held-out task.

:func:`fit_multitask` trains one :class:`~rewardkit.models.TaskConditionedRewardModel` on
data of several tasks at once: reward-labelled transitions (MSE,
:func:`~rewardkit.training.fit_regression`) or preferences between segments (Bradley-Terry,
:func:`~rewardkit.training.fit_preferences`), each row carrying its task. Since the tasks
of a :class:`~rewardkit.rl.tasks.TaskFamily` share their dynamics, one set of roll-outs
relabelled per task (:meth:`TaskFamily.relabel`, :func:`rewardkit.rl.tasks.task_preferences`)
serves them all.

How the task enters follows the model's config: a task-parameter vector
(``task_param_dim``: :attr:`Task.params`, so a held-out task is scored zero-shot) or a
learned embedding of :attr:`Task.index` (``n_tasks``: make it the family's number of tasks,
``len(family.tasks("all"))``; a held-out task's row is learned by :func:`adapt_to_task`
from a few of its labels, the shared network frozen).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from rewardkit.data.transitions import Transitions
from rewardkit.errors import ConfigError, ModelError
from rewardkit.models.task_conditioned import TaskConditionedRewardModel
from rewardkit.rl.tasks import Task
from rewardkit.training.freeze import freeze_parameters
from rewardkit.training.regression import fit_regression
from rewardkit.training.segments import fit_preferences

#: A task with its data: relabelled transitions, or a ``PreferenceDataset`` of its segments.
TaskData = tuple[Task, Any]


def task_inputs(model: TaskConditionedRewardModel, task: Task, rows: int) -> np.ndarray:
    """The model's task input for ``rows`` rows of ``task``.

    Returns:
        ``(rows,)`` int64 task ids, or ``(rows, task_param_dim)`` float32 task parameters.

    Raises:
        ModelError: The task's id is outside the model's embedding, or its parameters have another width.
    """
    c = model.config
    if c.task_param_dim is not None:
        if len(task.params) != c.task_param_dim:
            raise ModelError(f"task {task.name} has {len(task.params)} parameters; the model takes {c.task_param_dim}")
        return np.tile(np.asarray(task.params, dtype=np.float32), (rows, 1))
    if not 0 <= task.index < c.n_tasks:
        raise ModelError(f"task {task.name} has id {task.index}, but the model embeds tasks 0..{c.n_tasks - 1}: build "
                         "it with n_tasks = len(family.tasks('all'))")
    return np.full(rows, task.index, dtype=np.int64)


def fit_multitask(
    model: TaskConditionedRewardModel,
    data: Sequence[TaskData],
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    weight_decay: float = 0.0,
    update_normalizer: bool = True,
) -> list[float]:
    """Train one task-conditioned model on several tasks' data together (shuffled across tasks).

    Args:
        model: Trained in place.
        data: ``(task, transitions)`` pairs (MSE on their ``rews``, the task's reward) or
            ``(task, preference_dataset)`` pairs (Bradley-Terry); all of one kind.
        epochs: Passes over the data.
        batch_size: Rows (transitions or pairs) per step.
        lr: Adam learning rate.
        seed: Seed of the minibatch order.
        weight_decay: Adam's L2 penalty.
        update_normalizer: Fold the observations into the normaliser first (False keeps a stored one).

    Returns:
        Mean training loss of each epoch.

    Raises:
        ConfigError: No data, or transitions mixed with preferences.
        ModelError: A task does not fit the model (see :func:`task_inputs`).
    """
    if not data:
        raise ConfigError("fit_multitask needs data of at least one task")
    if not isinstance(model, TaskConditionedRewardModel):
        raise ModelError(f"fit_multitask trains a TaskConditionedRewardModel, not a {type(model).__name__}")
    kinds = {isinstance(d, Transitions) for _, d in data}
    if len(kinds) > 1:
        raise ConfigError("fit_multitask got transitions for some tasks and preferences for others; pass one kind")
    tasks = np.concatenate([task_inputs(model, task, len(d)) for task, d in data])
    train = dict(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, weight_decay=weight_decay,
                 update_normalizer=update_normalizer, tasks=tasks)
    if kinds == {True}:
        join = lambda name: np.concatenate([getattr(d, name) for _, d in data])  # noqa: E731
        next_obs = join("next_obs") if model.config.use_next_obs else None
        return fit_regression(model, join("obs"), join("acts"), join("rews"), next_obs, **train)
    first, second = (_joined([getattr(d, side) for _, d in data]) for side in ("fragments1", "fragments2"))
    return fit_preferences(model, first, second, np.concatenate([d.preferences for _, d in data]), **train)


class _Joined:
    """Segments of several datasets, concatenated field by field (obs, acts, next_obs)."""

    def __init__(self, obs: np.ndarray, acts: np.ndarray, next_obs: np.ndarray) -> None:
        self.obs, self.acts, self.next_obs = obs, acts, next_obs


def _joined(segments: Sequence[Any]) -> _Joined:
    return _Joined(*(np.concatenate([getattr(s, name) for s in segments]) for name in ("obs", "acts", "next_obs")))


def adapt_to_task(
    model: TaskConditionedRewardModel,
    task: Task,
    data: Any,
    *,
    fine_tune: bool = False,
    train_tasks: Sequence[Task] = (),
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
) -> TaskConditionedRewardModel:
    """A copy of ``model`` adapted to a held-out ``task`` from a little of its data.

    With a learned embedding, only the task's embedding row is trained (the shared network
    frozen, :func:`~rewardkit.training.freeze.freeze_parameters`), starting from the mean embedding
    of ``train_tasks`` when given; ``fine_tune`` trains every parameter too. With task
    parameters the model already scores the task zero-shot; ``fine_tune`` trains every
    parameter on the data, and without it the copy is returned as it is. The stored
    observation normaliser is kept.

    Args:
        model: A multi-task model (left unchanged).
        task: The new task.
        data: Its transitions (relabelled) or a ``PreferenceDataset`` of its segments.
        fine_tune: Train all parameters, not only the task's embedding.
        train_tasks: Tasks the model was trained on, whose mean embedding starts the new row.
        epochs: Passes over the data.
        batch_size: Rows per step.
        lr: Adam learning rate.
        seed: Seed of the minibatch order.

    Returns:
        The adapted copy.

    Raises:
        ModelError: The task does not fit the model.
    """
    adapted = copy.deepcopy(model)
    task_inputs(adapted, task, 1)  # refuse a task the model cannot take before training
    if adapted.task_embedding is not None:
        if train_tasks:
            with torch.no_grad():
                rows = torch.tensor([t.index for t in train_tasks])
                adapted.task_embedding.weight[task.index] = adapted.task_embedding.weight[rows].mean(dim=0)
        if not fine_tune:
            freeze_parameters(adapted, "mlp.*")
    elif not fine_tune:
        return adapted
    fit_multitask(adapted, [(task, data)], epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                  update_normalizer=False)
    for param in adapted.parameters():
        param.requires_grad_(True)
    return adapted
