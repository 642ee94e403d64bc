"""MAML with torch.func: inner steps, first- and second-order meta-gradients against autograd, adaptation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.func import functional_call

from rewardkit.errors import ConfigError
from rewardkit.models import StateActionConfig, StateActionRewardModel
from rewardkit.training.maml import MAMLConfig, adapt, fit_maml, meta_gradient, transition_task_data


def _model(seed: int = 0, kind: str = "continuous", hidden: tuple[int, ...] = (8,)) -> StateActionRewardModel:
    torch.manual_seed(seed)
    return StateActionRewardModel(StateActionConfig(obs_dim=2, action_kind=kind, action_dim=1 if kind == "continuous"
                                                    else 3, hidden_sizes=hidden, activation="tanh"))


def _task(goal: float, n: int, seed: int) -> dict[str, np.ndarray]:
    """A goal task on the plane: r = -(x0 - goal)² - 0.1 a²."""
    rng = np.random.default_rng(seed)
    obs = rng.uniform(-2, 2, size=(n, 2)).astype(np.float32)
    acts = rng.uniform(-1, 1, size=(n, 1)).astype(np.float32)
    return transition_task_data(obs, acts, (-(obs[:, 0] - goal) ** 2 - 0.1 * acts[:, 0] ** 2).astype(np.float32))


def _stack(tasks: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    return {k: torch.as_tensor(np.stack([t[k] for t in tasks])) for k in tasks[0]}


def _mse(model, params, batch):
    rewards = functional_call(model, params, (batch["obs"], batch["acts"]))
    return ((rewards - batch["rews"]) ** 2).mean()


def test_inner_steps_equal_hand_computed_gradient_steps() -> None:
    model = _model()
    support = _task(0.5, 16, seed=1)
    adapted = adapt(model, support, steps=2, lr=0.1, loss="mse")
    batch = {k: torch.as_tensor(v) for k, v in support.items()}
    params = {k: p.detach().clone().requires_grad_(True) for k, p in model.named_parameters()}
    for _ in range(2):  # by hand: θ ← θ - α ∇θ L(θ), with torch.autograd
        grads = torch.autograd.grad(_mse(model, params, batch), list(params.values()))
        params = {k: (p - 0.1 * g).detach().requires_grad_(True) for (k, p), g in zip(params.items(), grads,
                                                                                     strict=True)}
    for name, param in adapted.named_parameters():
        torch.testing.assert_close(param.detach(), params[name].detach(), rtol=1e-5, atol=1e-6)
    assert not torch.equal(adapted.mlp[0].weight, model.mlp[0].weight)  # the model itself is left alone


def _reference_meta_gradient(model, support, query, steps, lr, first_order):
    """Meta-gradient with plain autograd, one task at a time (create_graph for second order)."""
    params = dict(model.named_parameters())
    total = 0.0
    n_tasks = support["obs"].shape[0]
    for i in range(n_tasks):
        s = {k: v[i] for k, v in support.items()}
        q = {k: v[i] for k, v in query.items()}
        adapted = params
        for _ in range(steps):
            grads = torch.autograd.grad(_mse(model, adapted, s), list(adapted.values()), create_graph=not first_order)
            adapted = {k: p - lr * g for (k, p), g in zip(adapted.items(), grads, strict=True)}
        total = total + _mse(model, adapted, q)
    return dict(zip(params, torch.autograd.grad(total / n_tasks, list(params.values())), strict=True))


def test_second_order_meta_gradient_matches_autograd_and_differs_from_first_order() -> None:
    model = _model(seed=3)
    support = _stack([_task(g, 12, seed=10 + i) for i, g in enumerate((-1.0, 0.0, 1.5))])
    query = _stack([_task(g, 12, seed=20 + i) for i, g in enumerate((-1.0, 0.0, 1.5))])
    grads = {}
    for first_order in (False, True):
        config = MAMLConfig(loss="mse", inner_steps=2, inner_lr=0.3, first_order=first_order)
        grads[first_order] = meta_gradient(model, support, query, config)
        expected = _reference_meta_gradient(model, support, query, 2, 0.3, first_order)
        for name in expected:
            torch.testing.assert_close(grads[first_order][name], expected[name], rtol=1e-4, atol=1e-5)
    difference = sum(float((grads[True][k] - grads[False][k]).norm()) for k in grads[True])
    assert difference > 1e-3 * sum(float(g.norm()) for g in grads[False].values())


def test_second_order_meta_gradient_matches_finite_differences() -> None:
    from rewardkit.training.maml import meta_loss

    model = _model(seed=4, hidden=(4,))
    support = _stack([_task(0.7, 8, seed=1), _task(-0.4, 8, seed=2)])
    query = _stack([_task(0.7, 8, seed=3), _task(-0.4, 8, seed=4)])
    config = MAMLConfig(loss="mse", inner_steps=1, inner_lr=0.2)
    analytic = meta_gradient(model, support, query, config)
    generator = torch.Generator().manual_seed(0)
    direction = {k: torch.randn(p.shape, generator=generator) for k, p in model.named_parameters()}
    eps = 1e-2

    def shifted(sign: float) -> float:
        with torch.no_grad():
            for name, param in model.named_parameters():
                param += sign * eps * direction[name]
            value = float(meta_loss(model, support, query, config))
            for name, param in model.named_parameters():
                param -= sign * eps * direction[name]
        return value

    numeric = (shifted(1.0) - shifted(-1.0)) / (2 * eps)  # directional derivative, central differences
    exact = sum(float((analytic[k] * direction[k]).sum()) for k in direction)
    assert exact == pytest.approx(numeric, rel=2e-3)
    first_order = meta_gradient(model, support, query, MAMLConfig(loss="mse", inner_steps=1, inner_lr=0.2,
                                                                  first_order=True))
    assert sum(float((first_order[k] * direction[k]).sum()) for k in direction) != pytest.approx(numeric, rel=2e-3)


def test_discrete_models_run_tasks_in_a_loop_with_the_same_result_shape() -> None:
    model = _model(kind="discrete")
    rng = np.random.default_rng(0)
    tasks = [transition_task_data(rng.normal(size=(30, 2)).astype(np.float32), rng.integers(0, 3, size=30),
                                  rng.normal(size=30).astype(np.float32)) for _ in range(3)]
    history = fit_maml(model, tasks, MAMLConfig(loss="mse", meta_steps=3, tasks_per_step=2, support_size=5,
                                                query_size=5))
    assert len(history) == 3 and all(np.isfinite(history))


def test_adaptation_after_meta_training_improves_held_out_loss_on_a_new_task() -> None:
    train_goals, held_out_goal = (-1.5, -0.5, 0.5, 1.5), 0.0
    tasks = [_task(g, 200, seed=i) for i, g in enumerate(train_goals)]
    config = MAMLConfig(loss="mse", inner_steps=1, inner_lr=0.05, outer_lr=3e-3, meta_steps=150,
                        tasks_per_step=4, support_size=10, query_size=30, seed=0)
    model = _model(seed=0, hidden=(32, 32))
    fit_maml(model, tasks, config)
    support, query = _task(held_out_goal, 10, seed=100), _task(held_out_goal, 500, seed=101)

    def query_loss(m: StateActionRewardModel) -> float:
        return float(((m.score(query["obs"], query["acts"]) - query["rews"]) ** 2).mean())

    adapted = adapt(model, support, steps=5, lr=0.05, loss="mse")
    assert query_loss(adapted) < 0.7 * query_loss(model)


def test_fit_maml_refuses_tasks_too_small_and_bad_settings() -> None:
    with pytest.raises(ConfigError, match="task 1 has 12 rows; support_size \\+ query_size = 30"):
        fit_maml(_model(), [_task(0, 40, 0), _task(1, 12, 1)], MAMLConfig(loss="mse"))
    with pytest.raises(ConfigError, match="inner_lr is 0"):
        MAMLConfig(inner_lr=0)


def test_preference_meta_gradient_vmapped_equals_the_loop_over_tasks(monkeypatch) -> None:
    import rewardkit.training.maml as maml

    rng = np.random.default_rng(0)
    def pairs(m: int) -> dict[str, np.ndarray]:
        side = lambda: {"obs": rng.normal(size=(m, 5, 2)).astype(np.float32),  # noqa: E731
                        "acts": rng.uniform(-1, 1, size=(m, 5, 1)).astype(np.float32)}
        a, b = side(), side()
        return {"a.obs": a["obs"], "a.acts": a["acts"], "b.obs": b["obs"], "b.acts": b["acts"],
                "prefs": (a["obs"][..., 0].sum(1) > b["obs"][..., 0].sum(1)).astype(np.float32)}

    support, query = _stack([pairs(6), pairs(6)]), _stack([pairs(6), pairs(6)])
    model = _model(seed=1)
    config = MAMLConfig(loss="preferences", inner_steps=2, inner_lr=0.1)
    vmapped = meta_gradient(model, support, query, config)
    monkeypatch.setattr(maml, "_vectorisable", lambda model: False)
    looped = meta_gradient(model, support, query, config)
    for name in vmapped:
        torch.testing.assert_close(vmapped[name], looped[name], rtol=1e-4, atol=1e-6)
    assert any(float(g.abs().max()) > 0 for g in vmapped.values())
