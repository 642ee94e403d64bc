"""MAML for reward models (Finn et al. 2017, "Model-Agnostic Meta-Learning"), with ``torch.func``.

A reward model meta-trained over the tasks of a family so that a few gradient steps on a
few labels of a new task give a good reward for it (Hejna & Sadigh 2022, "Few-Shot
Preference Learning for Human-in-the-Loop RL", do this with preferences on Meta-World).

For each task T_i of a meta-batch, with a support set S_i and a query set Q_i:

    θ'_i = θ - α ∇_θ L(θ; S_i)            (K such inner steps, inner lr α)
    θ   ← Adam(θ, ∇_θ mean_i L(θ'_i; Q_i))  (outer step)

The full (second-order) meta-gradient differentiates through the inner steps, Hessian-vector
products included; the first-order variant (FOMAML) treats ∇_θ L(θ; S_i) as a constant, so
the meta-gradient is ``mean_i ∇L(θ'_i; Q_i)``. The inner gradients come from
``torch.func.grad`` over ``torch.func.functional_call`` of the model with a parameter dict,
the tasks are batched with ``torch.func.vmap`` (continuous actions; a discrete model's
one-hot encoding checks its action range, which vmap cannot, so those tasks run in a loop),
and the outer gradient is ordinary autograd through both.

Losses: ``"mse"`` on reward-labelled transitions (:mod:`rewardkit.training.regression`) or
``"preferences"``, Bradley-Terry on segment pairs
(:func:`rewardkit.training.segments.segment_bradley_terry_loss`). A task's data is a dict of
arrays with equal numbers of rows: ``obs``, ``acts``, ``rews`` (and ``next_obs``) for
``"mse"``; ``a.obs``, ``a.acts``, ``b.obs``, ``b.acts`` (and ``a.next_obs``, ``b.next_obs``)
and ``prefs`` for ``"preferences"``, as :func:`transition_task_data` and
:func:`preference_task_data` build them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from rewardkit.errors import ConfigError, DataError
from rewardkit.training.minibatch import row_tensors
from rewardkit.training.segments import segment_bradley_terry_loss

#: The two meta-learning losses.
LossKind = Literal["mse", "preferences"]
Params = dict[str, torch.Tensor]
Batch = Mapping[str, torch.Tensor]
#: ``loss(params, buffers, batch) -> scalar``.
FunctionalLoss = Callable[[Params, Params, Batch], torch.Tensor]


@dataclass
class MAMLConfig:
    """Settings of :func:`fit_maml`.

    Attributes:
        loss: ``"mse"`` (transitions) or ``"preferences"`` (segment pairs).
        inner_steps: K, gradient steps of the inner loop.
        inner_lr: α, the inner loop's step size (plain gradient descent).
        outer_lr: Adam's learning rate for the meta-parameters.
        meta_steps: Outer updates.
        tasks_per_step: Tasks in a meta-batch (drawn without replacement, as many as there are at most).
        support_size: Rows (transitions or pairs) of a task's support set per meta-step.
        query_size: Rows of a task's query set (disjoint from its support set).
        first_order: FOMAML: do not differentiate through the inner steps.
        seed: Seed of the task and row draws.
    """

    loss: LossKind = "preferences"
    inner_steps: int = 1
    inner_lr: float = 0.01
    outer_lr: float = 1e-3
    meta_steps: int = 100
    tasks_per_step: int = 4
    support_size: int = 10
    query_size: int = 20
    first_order: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        """Check the values.

        Raises:
            ConfigError: Names the setting and what is expected.
        """
        if self.loss not in ("mse", "preferences"):
            raise ConfigError(f"loss is {self.loss!r}; expected 'mse' or 'preferences'")
        for name in ("meta_steps", "tasks_per_step", "support_size", "query_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} is {value!r}; expected an integer >= 1")
        if not isinstance(self.inner_steps, int) or self.inner_steps < 0:
            raise ConfigError(f"inner_steps is {self.inner_steps!r}; expected an integer >= 0")
        for name in ("inner_lr", "outer_lr"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} is {getattr(self, name)!r}; expected a positive step size")


# ---------------------------------------------------------------------- task data
def transition_task_data(obs: Any, acts: Any, rews: Any, next_obs: Any = None) -> dict[str, np.ndarray]:
    """A task's data for the ``"mse"`` loss (e.g. from :meth:`TaskFamily.relabel`'s transitions)."""
    data = {"obs": obs, "acts": acts, "rews": rews, "next_obs": next_obs}
    return {k: np.asarray(v) for k, v in data.items() if v is not None}


def preference_task_data(dataset: Any, *, next_obs: bool = False) -> dict[str, np.ndarray]:
    """A task's data for the ``"preferences"`` loss from a :class:`~rewardkit.rl.PreferenceDataset`.

    Args:
        dataset: Has ``fragments1``, ``fragments2`` (segments) and ``preferences``.
        next_obs: Include the next observations (for models that take s').
    """
    data = {"prefs": np.asarray(dataset.preferences, dtype=np.float32)}
    for side, seg in (("a", dataset.fragments1), ("b", dataset.fragments2)):
        data |= {f"{side}.obs": seg.obs, f"{side}.acts": seg.acts}
        if next_obs:
            data[f"{side}.next_obs"] = seg.next_obs
    return data


# ---------------------------------------------------------------------- functional pieces
class _Functional:
    """``model`` called with a given parameter dict: what :func:`segment_bradley_terry_loss` calls as a model."""

    def __init__(self, model: nn.Module, params: Params, buffers: Params) -> None:
        self.model, self.state = model, (params, buffers)

    def __call__(self, *args: Any, **kw: Any) -> torch.Tensor:
        return functional_call(self.model, self.state, args, kw)


class _Side:
    """One side (``a`` or ``b``) of a batch of segment pairs."""

    def __init__(self, batch: Batch, side: str) -> None:
        self.obs, self.acts, self.next_obs = batch[f"{side}.obs"], batch[f"{side}.acts"], batch.get(f"{side}.next_obs")


def functional_loss(model: nn.Module, kind: LossKind) -> FunctionalLoss:
    """The loss of ``model`` as a function of its parameters: ``loss(params, buffers, batch) -> scalar``.

    Args:
        model: A :class:`~rewardkit.models.StateActionRewardModel` (its own parameters are not used).
        kind: ``"mse"``: ``mean((R(s, a[, s']) - r)²)``; ``"preferences"``: Bradley-Terry on segment pairs.
    """
    if kind == "mse":
        def mse(params: Params, buffers: Params, batch: Batch) -> torch.Tensor:
            rewards = functional_call(model, (params, buffers), (batch["obs"], batch["acts"], batch.get("next_obs")))
            return ((rewards - batch["rews"]) ** 2).mean()

        return mse

    def preferences(params: Params, buffers: Params, batch: Batch) -> torch.Tensor:
        return segment_bradley_terry_loss(_Functional(model, params, buffers), _Side(batch, "a"), _Side(batch, "b"),
                                          batch["prefs"])

    return preferences


def inner_adapt(loss: FunctionalLoss, params: Params, buffers: Params, support: Batch, *, steps: int, lr: float,
                first_order: bool = False) -> Params:
    """``steps`` gradient-descent steps on the support set: ``θ ← θ - lr ∇_θ loss(θ; support)``.

    Differentiable with respect to ``params`` (second order) unless ``first_order``, which
    detaches each inner gradient.

    Returns:
        The adapted parameters, by name.
    """
    for _ in range(steps):
        grads = grad(loss)(params, buffers, support)
        params = {k: p - lr * (grads[k].detach() if first_order else grads[k]) for k, p in params.items()}
    return params


def _vectorisable(model: nn.Module) -> bool:
    """Whether ``vmap`` can batch the model over tasks (a discrete model checks action ranges with Python ints)."""
    config = getattr(model, "config", None)
    return getattr(config, "action_kind", None) == "continuous"


def meta_loss(model: nn.Module, support: Batch, query: Batch, config: MAMLConfig) -> torch.Tensor:
    """Mean over tasks of the query loss after adapting on the support set; differentiable in ``model``'s parameters.

    Args:
        model: The meta-model (its parameters are θ; gradients flow back to them).
        support: Tensors ``(tasks, support_rows, ...)``, one slice per task.
        query: Tensors ``(tasks, query_rows, ...)``.
        config: Loss, inner steps and lr, first or second order.

    Returns:
        Scalar meta-loss.
    """
    loss = functional_loss(model, config.loss)
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())

    def task_loss(task_support: Batch, task_query: Batch) -> torch.Tensor:
        adapted = inner_adapt(loss, params, buffers, task_support, steps=config.inner_steps, lr=config.inner_lr,
                              first_order=config.first_order)
        return loss(adapted, buffers, task_query)

    if _vectorisable(model):
        return vmap(task_loss)(dict(support), dict(query)).mean()
    n_tasks = next(iter(support.values())).shape[0]
    return torch.stack([task_loss({k: v[i] for k, v in support.items()}, {k: v[i] for k, v in query.items()})
                        for i in range(n_tasks)]).mean()


def meta_gradient(model: nn.Module, support: Batch, query: Batch, config: MAMLConfig) -> Params:
    """∇_θ of :func:`meta_loss`, by parameter name (first- or second-order as ``config`` says)."""
    params = dict(model.named_parameters())
    grads = torch.autograd.grad(meta_loss(model, support, query, config), list(params.values()))
    return dict(zip(params, grads, strict=True))


# ---------------------------------------------------------------------- training and adaptation
def _observations(tensors: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
    """Every observation in a task's data, rows flattened (for the normaliser)."""
    return [t.reshape(-1, *t.shape[2:]) if k.endswith(".obs") else t for k, t in tensors.items()
            if k == "obs" or k.endswith(".obs")]


def fit_maml(model: nn.Module, tasks: Sequence[Mapping[str, Any]], config: MAMLConfig) -> list[float]:
    """Meta-train ``model`` over ``tasks`` in place; updates the observation normaliser on all their data first.

    Each meta-step draws ``tasks_per_step`` tasks and, per task, disjoint random support and
    query rows, then takes one Adam step on :func:`meta_loss`.

    Args:
        model: A :class:`~rewardkit.models.StateActionRewardModel`.
        tasks: One dict of arrays per task (see the module docstring), each with at least
            ``support_size + query_size`` rows.
        config: The settings.

    Returns:
        The meta-loss of each step (``meta_steps`` floats).

    Raises:
        ConfigError: Fewer rows in a task than a support and a query set need, or no tasks.
        DataError: NaN or inf, or a task's arrays with different numbers of rows.
    """
    if not tasks:
        raise ConfigError("fit_maml needs at least one task")
    device = next(model.parameters()).device
    data = [row_tensors(t, device, where=f"task {i}") for i, t in enumerate(tasks)]
    need = config.support_size + config.query_size
    for i, t in enumerate(data):
        rows = next(iter(t.values())).shape[0]
        if rows < need:
            raise ConfigError(f"task {i} has {rows} rows; support_size + query_size = {need} are needed per meta-step")
    model.update_obs_normalizer(torch.cat([o for t in data for o in _observations(t)]))
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.outer_lr)
    history = []
    for _ in range(config.meta_steps):
        chosen = torch.randperm(len(data), generator=generator)[: config.tasks_per_step].tolist()
        support, query = [], []
        for i in chosen:
            rows = torch.randperm(next(iter(data[i].values())).shape[0], generator=generator)
            support.append({k: v[rows[: config.support_size]] for k, v in data[i].items()})
            query.append({k: v[rows[config.support_size : need]] for k, v in data[i].items()})
        stack = lambda batches: {k: torch.stack([b[k] for b in batches]) for k in batches[0]}  # noqa: E731
        loss = meta_loss(model, stack(support), stack(query), config)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history.append(float(loss.detach()))
    return history


def adapt(model: nn.Module, support: Mapping[str, Any], *, steps: int, lr: float,
          loss: LossKind = "preferences") -> nn.Module:
    """Few-shot adaptation: a copy of ``model`` after ``steps`` gradient steps of size ``lr`` on ``support``.

    The inner loop of MAML, run once: use the ``inner_steps`` and ``inner_lr`` the model was
    meta-trained with (more steps usually help a little). ``model`` is left unchanged and the
    normaliser is kept.

    Args:
        model: A (meta-trained) state-action reward model.
        support: The new task's labelled data, a dict of arrays (see the module docstring).
        steps: Gradient steps (0 returns an unchanged copy).
        lr: Step size.
        loss: ``"mse"`` or ``"preferences"``.

    Returns:
        The adapted copy.

    Raises:
        DataError: NaN or inf, or arrays with different numbers of rows.
    """
    if steps < 0 or not lr > 0:
        raise ConfigError(f"steps {steps}, lr {lr}: expected steps >= 0 and lr > 0")
    adapted_model = copy.deepcopy(model)
    batch = row_tensors(support, next(model.parameters()).device, where="support")
    if loss == "preferences" and batch["prefs"].dim() != 1:
        raise DataError(f"prefs has shape {tuple(batch['prefs'].shape)}; expected one label per pair")
    params = {k: p.detach() for k, p in adapted_model.named_parameters()}
    adapted = inner_adapt(functional_loss(adapted_model, loss), params, dict(adapted_model.named_buffers()), batch,
                          steps=steps, lr=lr, first_order=True)
    with torch.no_grad():
        for name, param in adapted_model.named_parameters():
            param.copy_(adapted[name])
    return adapted_model
