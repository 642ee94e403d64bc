"""Reuse of state-action reward models across tasks: transfer, multi-task and MAML, for ``rewardkit rl``.

Compositions of :mod:`rewardkit.training.transfer`, :mod:`rewardkit.training.multitask`,
:mod:`rewardkit.training.maml` and :mod:`rewardkit.rl.tasks` over a transitions file:

* :func:`transfer_start`: the stored model ``rl fit --init-from REF [--freeze P]`` fine-tunes
  (its observation normaliser kept), with the lineage its commit records;
* :func:`fit_tasks`: one :class:`~rewardkit.models.TaskConditionedRewardModel` on the
  transitions relabelled for each task of a family (MSE), optionally adapted to a held-out
  task from a few of its labels (:func:`~rewardkit.training.multitask.adapt_to_task`);
* :func:`maml`: a state-action model meta-trained over the family's training tasks
  (:func:`~rewardkit.training.maml.fit_maml`);
* :func:`adapt`: few-shot adaptation of a stored (meta-trained) model to one task, with
  held-out metrics before and after.

Every run splits the roll-outs by whole episodes (as ``rl fit`` does): models train on one
part, metrics come from the other, relabelled for the task in question. Arguments, the
file, the family and its tasks, and the stored model are all checked before anything is
written.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from rewardkit.api.checks import check_output_path
from rewardkit.api.rl.data import _split_episodes, _take, regression_metrics
from rewardkit.api.rl.models import commit_model, environment_spaces, open_reward_model
from rewardkit.data.transitions import Transitions, fingerprint, load_transitions
from rewardkit.errors import ConfigError, DataError, ModelError
from rewardkit.rl.tasks import Task, TaskFamily, task_family
from rewardkit.store import Commit, Repository
from rewardkit.training.transfer import Transfer, init_from


def transfer_start(repo: Repository, ref: str, env_id: str, freeze: Sequence[str] = ()) -> Transfer:
    """The stored state-action model ``ref`` names, checked against ``env_id``'s spaces, ``freeze`` applied.

    Raises:
        RefError: ``ref`` names no commit.
        ModelError: A text or task-conditioned model, or one for other spaces.
        ConfigError: A freeze pattern matches no parameter, or they match all.
    """
    start = init_from(repo, ref, kind="state-action")
    member = getattr(start.model, "members", [start.model])[0]
    member.check_spaces(*environment_spaces(env_id))
    if freeze:
        start.freeze(list(freeze))
    return start


def family_tasks(family: TaskFamily, indices: Sequence[int] | None, split: str = "train") -> list[Task]:
    """Tasks ``indices`` of ``family`` (default: its ``split`` tasks).

    Raises:
        ConfigError: An index outside the family, or one given twice.
    """
    if indices is None:
        return family.tasks(split)  # type: ignore[arg-type]
    if len(set(indices)) != len(indices):
        raise ConfigError(f"--tasks {','.join(map(str, indices))}: a task is named twice")
    return [family.task(i) for i in indices]


def _family_data(data: str | Path, family_name: str) -> tuple[TaskFamily, Transitions]:
    """The family and its roll-outs (a transitions file of the family's environment)."""
    family = task_family(family_name)
    record = load_transitions(data)
    if record.env_id is not None and record.env_id != family.env_id:
        raise DataError(f"{data}: the roll-outs come from {record.env_id}, but family {family.name} runs on "
                        f"{family.env_id}")
    return family, dataclasses.replace(record, env_id=family.env_id)


def _labels(record: Transitions, n: int, rng: np.random.Generator, where: str) -> Transitions:
    """``n`` transitions of ``record`` drawn without replacement (the few labels of a new task)."""
    if not 1 <= n <= len(record):
        raise ConfigError(f"--labels {n}: {where} has {len(record)} training transitions; pass 1..{len(record)}")
    return _take(record, np.sort(rng.choice(len(record), size=n, replace=False)))


def _task_metrics(model: nn.Module, family: TaskFamily, task: Task, held: Transitions) -> dict[str, float]:
    """``regression_metrics`` on ``held`` relabelled for ``task`` (the model scores that task)."""
    from rewardkit.models.task_conditioned import TaskConditionedRewardModel
    from rewardkit.training.multitask import task_inputs

    relabelled = family.relabel(held, task)
    if isinstance(model, TaskConditionedRewardModel):
        model = _OneTask(model, task_inputs(model, task, len(held)))
    return regression_metrics(model, relabelled)


class _OneTask:
    """A task-conditioned model with its task fixed, scored like a state-action model."""

    def __init__(self, model: nn.Module, tasks: np.ndarray) -> None:
        self.model, self.tasks = model, tasks

    def score(self, obs: Any, acts: Any, next_obs: Any = None) -> np.ndarray:
        return self.model.score(obs, acts, next_obs, task=self.tasks)


@dataclass(frozen=True)
class TasksResult:
    """A reward model fitted over tasks of a family (multi-task or MAML), evaluated on held-out episodes.

    Attributes:
        model_dir: The saved model folder.
        family: The family's name.
        tasks: Indices of the tasks trained on.
        metrics: ``validation/mse`` and ``validation/reward_correlation``, mean over those tasks;
            with an adapted task also ``adapted/...`` on it (before and after for MAML).
        params: What the commit stores.
        losses: Training loss per epoch (multi-task) or meta-step (MAML).
        commit: The commit, else None.
    """

    model_dir: Path
    family: str
    tasks: list[int]
    metrics: dict[str, float]
    params: dict[str, Any]
    losses: list[float]
    commit: Commit | None = None


def _mean_metrics(per_task: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.nanmean([m[k] for m in per_task])) for k in per_task[0]}


def fit_tasks(
    data: str | Path, out: str | Path, *, family: str, tasks: Sequence[int] | None = None,
    adapt_task: int | None = None, labels: int = 100, pairs: int | None = None, segment_length: int = 25,
    epochs: int = 20, lr: float = 1e-3, batch_size: int | None = None, seed: int = 0,
    hidden_sizes: tuple[int, ...] = (256, 256), commit_message: str | None = None, repo: Repository | None = None,
) -> TasksResult:
    """Fit one task-conditioned reward model (learned task embedding) to the roll-outs relabelled per task.

    With ``pairs`` the model learns from preferences instead (Bradley-Terry): ``pairs``
    segment pairs per task labelled by the perfect synthetic teacher on the task's reward
    (:func:`~rewardkit.rl.tasks.task_preferences`), and ``labels`` counts pairs of the
    adapted task; the metrics are then preference accuracies on pairs of held-out episodes.

    Args:
        data: Transitions of the family's environment (any policy: the tasks differ only in reward).
        out: Folder to save the model in (the adapted one when ``adapt_task`` is given).
        family: A :func:`~rewardkit.rl.tasks.task_family` name.
        tasks: Task indices to train on; default the family's training tasks.
        adapt_task: A task not trained on, to adapt to from ``labels`` of its transitions
            (only its embedding row trains); its held-out metrics are ``adapted/...``.
        labels: Labelled transitions (or pairs) of ``adapt_task``.
        pairs: Learn from this many labelled segment pairs per task (None: MSE on transitions).
        segment_length: Steps per segment, with ``pairs``.
        epochs: Passes over the training part (and over the labels when adapting).
        lr: Adam learning rate.
        batch_size: Transitions (or pairs) per step; default 256 (or 32).
        seed: Seed of the split, the initialisation, the label draw and the minibatch order.
        hidden_sizes: Widths of the MLP's hidden layers.
        commit_message: Commit the model with this message (None: do not commit).
        repo: The repository; discovered when None.

    Raises:
        ConfigError: Unknown family, a task index outside it, ``adapt_task`` among ``tasks``.
        DataError: The file is invalid or from another environment.
    """
    from rewardkit.models.state_action import StateActionRewardModel
    from rewardkit.models.task_conditioned import TaskConditionedConfig, TaskConditionedRewardModel
    from rewardkit.training.multitask import adapt_to_task, fit_multitask

    fam, record = _family_data(data, family)
    chosen = family_tasks(fam, tasks)
    new = fam.task(adapt_task) if adapt_task is not None else None
    if new is not None and new.index in [t.index for t in chosen]:
        raise ConfigError(f"--adapt-task {new.index} is among --tasks; adapt to a task the model did not train on")
    rng = np.random.default_rng(seed)
    train_part, held = _split_episodes(record, 0.2, rng, str(data))
    if pairs is not None:
        from rewardkit.rl.tasks import task_preferences

        if pairs < 1 or labels < 1 or segment_length < 1:
            raise ConfigError(f"--pairs {pairs}, --labels {labels}, --segment-length {segment_length}: expected >= 1")
        labelled = lambda part, ts, n: task_preferences(fam, part, ts, num_pairs=n,  # noqa: E731
                                                        fragment_length=segment_length, seed=seed)
        train_data = labelled(train_part, chosen, pairs)
        few = labelled(train_part, [new], labels)[0][1] if new is not None else None
        held_data = dict(labelled(held, chosen + ([new] if new else []), max(pairs // 4, 20)))
    else:
        train_data = [(t, fam.relabel(train_part, t)) for t in chosen]
        few = _labels(fam.relabel(train_part, new), labels, rng, str(data)) if new is not None else None
    out = check_output_path(out, "model folder", "--out", folder=True)
    target = (repo or Repository.discover()) if commit_message else None
    template = StateActionRewardModel.for_spaces(*environment_spaces(fam.env_id), hidden_sizes=hidden_sizes).config
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TaskConditionedRewardModel(TaskConditionedConfig(**dataclasses.asdict(template),
                                                                 n_tasks=len(fam.tasks("all"))))
    schedule = {"epochs": epochs, "batch_size": batch_size or (32 if pairs else 256), "lr": lr, "seed": seed}
    losses = fit_multitask(model, train_data, **schedule)

    def evaluate(task: Task) -> dict[str, float]:
        if pairs is None:
            return _task_metrics(model, fam, task, held)
        from rewardkit.rl.preferences import preference_accuracy

        return {"validation/preference_accuracy": preference_accuracy(model, held_data[task], task)}

    metrics = {f"validation/{k.split('/')[-1]}": v for k, v in _mean_metrics([evaluate(t) for t in chosen]).items()}
    if new is not None:
        model = adapt_to_task(model, new, few, train_tasks=chosen, **schedule)
        metrics |= {f"adapted/{k.split('/')[-1]}": v for k, v in evaluate(new).items()}
    params = {"family": fam.name, "env_id": fam.env_id, "objective": "preferences" if pairs else "mse",
              "tasks": [t.index for t in chosen], "data": str(data), "data_fingerprint": fingerprint(record),
              **schedule}
    if pairs is not None:
        params |= {"pairs": pairs, "segment_length": segment_length}
    if new is not None:
        params |= {"adapt_task": new.index, "labels": labels}
    model.save(out)
    commit = commit_model(target, out, commit_message, params, metrics, params["data_fingerprint"]) if target else None
    return TasksResult(out, fam.name, params["tasks"], metrics, params, losses, commit)


def maml(
    data: str | Path, out: str | Path, *, family: str, tasks: Sequence[int] | None = None,
    inner_steps: int = 1, inner_lr: float = 0.01, outer_lr: float = 1e-3, meta_steps: int = 200,
    support_size: int = 10, query_size: int = 20, first_order: bool = False, seed: int = 0,
    hidden_sizes: tuple[int, ...] = (256, 256), commit_message: str | None = None, repo: Repository | None = None,
) -> TasksResult:
    """Meta-train a state-action reward model with MAML (MSE) over tasks of a family; metrics after adaptation.

    The metrics are mean held-out MSE and correlation over the tasks after ``inner_steps``
    steps on ``support_size`` of each task's training transitions (what the model is for).

    Args:
        data: Transitions of the family's environment.
        out: Folder to save the meta-learned model in.
        family: A :func:`~rewardkit.rl.tasks.task_family` name.
        tasks: Task indices to meta-train on; default the family's training tasks.
        inner_steps: K, gradient steps of the inner loop.
        inner_lr: α, the inner step size.
        outer_lr: Adam's learning rate for the meta-parameters.
        meta_steps: Outer updates (4 tasks each).
        support_size: Transitions of a task's support set per meta-step.
        query_size: Transitions of its query set.
        first_order: FOMAML instead of the full second-order meta-gradient.
        seed: Seed of the split, the initialisation and the draws.
        hidden_sizes: Widths of the MLP's hidden layers.
        commit_message: Commit the model with this message (None: do not commit).
        repo: The repository; discovered when None.

    Raises:
        ConfigError: Unknown family or task, a setting out of range, too few transitions.
        DataError: The file is invalid or from another environment.
    """
    from rewardkit.training import maml as meta

    config = meta.MAMLConfig(loss="mse", inner_steps=inner_steps, inner_lr=inner_lr, outer_lr=outer_lr,
                             meta_steps=meta_steps, tasks_per_step=4, support_size=support_size,
                             query_size=query_size, first_order=first_order, seed=seed)
    fam, record = _family_data(data, family)
    chosen = family_tasks(fam, tasks)
    rng = np.random.default_rng(seed)
    train_part, held = _split_episodes(record, 0.2, rng, str(data))
    out = check_output_path(out, "model folder", "--out", folder=True)
    target = (repo or Repository.discover()) if commit_message else None
    from rewardkit.api.rl.models import new_reward_model

    model = new_reward_model(*environment_spaces(fam.env_id), ensemble=1, seed=seed, hidden_sizes=hidden_sizes)
    relabelled = {t.index: fam.relabel(train_part, t) for t in chosen}
    losses = meta.fit_maml(model, [_support(r) for r in relabelled.values()], config)
    per_task = []
    for t in chosen:
        few = _labels(relabelled[t.index], min(support_size, len(train_part)), rng, str(data))
        adapted = meta.adapt(model, _support(few), steps=inner_steps, lr=inner_lr, loss="mse")
        per_task.append(_task_metrics(adapted, fam, t, held))
    metrics = {f"validation/{k.split('/')[-1]}": v for k, v in _mean_metrics(per_task).items()}
    params = {"family": fam.name, "env_id": fam.env_id, "objective": "maml-mse", "tasks": [t.index for t in chosen],
              "data": str(data), "data_fingerprint": fingerprint(record),
              "maml": dataclasses.asdict(config)}
    model.save(out)
    commit = commit_model(target, out, commit_message, params, metrics, params["data_fingerprint"]) if target else None
    return TasksResult(out, fam.name, params["tasks"], metrics, params, losses, commit)


def _support(t: Transitions) -> dict[str, np.ndarray]:
    from rewardkit.training.maml import transition_task_data

    return transition_task_data(t.obs, t.acts, t.rews, t.next_obs)


@dataclass(frozen=True)
class AdaptResult:
    """A stored model adapted to one task from a few labels.

    Attributes:
        model_dir: The adapted model's folder.
        task: The task's index.
        labels: Labelled transitions used.
        before: Held-out ``mse`` and ``reward_correlation`` on the task before adapting.
        after: The same after.
        params: What the commit stores (lineage included: ``params["base"]``).
        commit: The commit, else None.
    """

    model_dir: Path
    task: int
    labels: int
    before: dict[str, float]
    after: dict[str, float]
    params: dict[str, Any]
    commit: Commit | None = None


def adapt(
    ref: str, data: str | Path, out: str | Path, *, family: str, task: int, labels: int = 10, steps: int = 1,
    lr: float = 0.01, seed: int = 0, commit_message: str | None = None, repo: Repository | None = None,
) -> AdaptResult:
    """Few-shot adaptation (MAML's inner loop, :func:`~rewardkit.training.maml.adapt`) of a stored model to a task.

    Args:
        ref: A stored state-action reward model (folder or ref), e.g. one ``rl maml`` committed.
        data: Transitions of the family's environment.
        out: Folder to save the adapted model in.
        family: A :func:`~rewardkit.rl.tasks.task_family` name.
        task: The task's index (usually a held-out one).
        labels: Labelled transitions of it to adapt on (from the training episodes).
        steps: Gradient steps.
        lr: Step size.
        seed: Seed of the episode split and the label draw.
        commit_message: Commit the adapted model, its lineage naming the stored one.
        repo: The repository; discovered when None.

    Raises:
        ConfigError: Unknown family or task, ``labels`` out of range, bad steps or lr.
        ModelError: Not a state-action model, or one for other spaces.
        DataError: The file is invalid or from another environment.
    """
    from rewardkit.training import maml as meta
    from rewardkit.training.freeze import lineage_params

    if steps < 0 or not lr > 0:
        raise ConfigError(f"--steps {steps}, --lr {lr}: expected steps >= 0 and lr > 0")
    fam, record = _family_data(data, family)
    new = fam.task(task)
    rng = np.random.default_rng(seed)
    train_part, held = _split_episodes(record, 0.2, rng, str(data))
    few = _labels(fam.relabel(train_part, new), labels, rng, str(data))
    target = (repo or Repository.discover()) if commit_message or not Path(ref).is_dir() else None
    with open_reward_model(ref, target) as (model, _name, base):
        if getattr(model, "members", None):
            raise ModelError(f"{ref} is an ensemble; adapt a single state-action model")
        model.check_spaces(*environment_spaces(fam.env_id))
        out = check_output_path(out, "model folder", "--out", folder=True)
        before = _task_metrics(model, fam, new, held)
        adapted = meta.adapt(model, _support(few), steps=steps, lr=lr, loss="mse")
    after = _task_metrics(adapted, fam, new, held)
    params = {"family": fam.name, "env_id": fam.env_id, "objective": "adapt-mse", "task": new.index,
              "labels": labels, "steps": steps, "lr": lr, "seed": seed, "data": str(data),
              "data_fingerprint": fingerprint(record), **(lineage_params(base.id) if base else {})}
    adapted.save(out)
    metrics = {f"validation/{k.split('/')[-1]}": v for k, v in after.items()}
    metrics |= {f"before/{k.split('/')[-1]}": v for k, v in before.items()}
    commit = (commit_model(target, out, commit_message, params, metrics, params["data_fingerprint"])
              if commit_message and target else None)
    return AdaptResult(out, new.index, labels, before, after, params, commit)
