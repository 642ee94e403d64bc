"""Multi-task reward models: better than one task's model on average over tasks; adaptation to held-out tasks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("gymnasium", reason="the rl extra (gymnasium) is not installed")
pytest.importorskip("stable_baselines3", reason="the rl extra (stable-baselines3) is not installed")

from rewardkit.errors import ConfigError, ModelError  # noqa: E402
from rewardkit.models import StateActionConfig, StateActionRewardModel  # noqa: E402
from rewardkit.models.task_conditioned import TaskConditionedConfig, TaskConditionedRewardModel  # noqa: E402
from rewardkit.rl.preferences import preference_accuracy
from rewardkit.rl.rollout import collect  # noqa: E402
from rewardkit.rl.tasks import PendulumGoal, task_preferences  # noqa: E402
from rewardkit.training import fit_regression  # noqa: E402
from rewardkit.training.multitask import adapt_to_task, fit_multitask  # noqa: E402

FAMILY = PendulumGoal(n_tasks=6, held_out_every=3)  # train: 0, 2, 3, 5; held out: 1, 4


@pytest.fixture(scope="module")
def rollouts():
    return collect("Pendulum-v1", 2000, n_envs=4, seed=0), collect("Pendulum-v1", 1000, n_envs=2, seed=100)


def _multitask(seed: int = 0, **kw) -> TaskConditionedRewardModel:
    torch.manual_seed(seed)
    kw = kw or {"n_tasks": len(FAMILY.tasks("all")), "task_embedding_dim": 4}
    return TaskConditionedRewardModel(TaskConditionedConfig(obs_dim=3, action_kind="continuous", action_dim=1,
                                                            hidden_sizes=(64, 64), **kw))


def _mse(scores: np.ndarray, rews: np.ndarray) -> float:
    return float(((scores - rews) ** 2).mean())


def test_multitask_model_beats_a_single_task_model_on_the_average_over_tasks(rollouts) -> None:
    train, test = rollouts
    tasks = FAMILY.tasks("train")
    multi = _multitask()
    fit_multitask(multi, [(t, FAMILY.relabel(train, t)) for t in tasks], epochs=15, batch_size=128, lr=3e-3, seed=0)
    torch.manual_seed(0)
    single = StateActionRewardModel(StateActionConfig(obs_dim=3, action_kind="continuous", action_dim=1,
                                                      hidden_sizes=(64, 64)))
    source = FAMILY.relabel(train, tasks[0])
    fit_regression(single, source.obs, source.acts, source.rews, epochs=15, batch_size=128, lr=3e-3, seed=0)
    multi_mse, single_mse = [], []
    for task in tasks:
        truth = FAMILY.relabel(test, task).rews
        multi_mse.append(_mse(multi.score(test.obs, test.acts, task=task.index), truth))
        single_mse.append(_mse(single.score(test.obs, test.acts), truth))
    assert np.mean(multi_mse) < 0.5 * np.mean(single_mse)
    assert single_mse[0] < np.mean(single_mse[1:])  # the single model knows only its own task


def test_held_out_task_embedding_learned_from_a_few_preferences(rollouts) -> None:
    train, test = rollouts
    model = _multitask(seed=1)
    fit_multitask(model, task_preferences(FAMILY, train, FAMILY.tasks("train"), num_pairs=150, fragment_length=10),
                  epochs=8, batch_size=64, lr=3e-3, seed=0)
    task = FAMILY.tasks("held-out")[0]
    (_, support), = task_preferences(FAMILY, train, [task], num_pairs=30, fragment_length=10, seed=7)
    (_, held_out), = task_preferences(FAMILY, test, [task], num_pairs=300, fragment_length=10, seed=8)
    before = preference_accuracy(model, held_out, task)
    adapted = adapt_to_task(model, task, support, epochs=40, batch_size=30, lr=3e-2, seed=0,
                            train_tasks=FAMILY.tasks("train"))
    after = preference_accuracy(adapted, held_out, task)
    assert after > before + 0.05 and after > 0.75, (before, after)
    for name, param in adapted.named_parameters():  # only the task's embedding row moved
        same = torch.equal(param, model.state_dict()[name])
        assert same == (name != "task_embedding.weight"), name
    moved = (adapted.task_embedding.weight != model.task_embedding.weight).any(dim=1)
    assert moved.nonzero().flatten().tolist() == [task.index]


def test_task_parameters_score_a_held_out_task_zero_shot(rollouts) -> None:
    train, test = rollouts
    model = _multitask(task_param_dim=1)
    fit_multitask(model, [(t, FAMILY.relabel(train, t)) for t in FAMILY.tasks("train")], epochs=15,
                  batch_size=128, lr=3e-3, seed=0)
    task = FAMILY.tasks("held-out")[0]
    truth = FAMILY.relabel(test, task).rews
    zero_shot = _mse(adapt_to_task(model, task, FAMILY.relabel(train, task), epochs=1, batch_size=64, lr=1e-3,
                                   seed=0).score(test.obs, test.acts, task=task.params), truth)
    assert zero_shot < 0.5 * float(truth.var())


def test_bad_input_is_refused(rollouts) -> None:
    train, _ = rollouts
    tasks = FAMILY.tasks("train")
    small = _multitask(n_tasks=2, task_embedding_dim=4)
    with pytest.raises(ModelError, match="has id 3, but the model embeds tasks 0..1"):
        fit_multitask(small, [(tasks[2], FAMILY.relabel(train, tasks[2]))], epochs=1, batch_size=8, lr=1e-3, seed=0)
    prefs = task_preferences(FAMILY, train, tasks[:1], num_pairs=4, fragment_length=5)
    with pytest.raises(ConfigError, match="transitions for some tasks and preferences for others"):
        fit_multitask(_multitask(), [(tasks[0], train), *prefs], epochs=1, batch_size=8, lr=1e-3, seed=0)
