"""MSE regression on transitions and Bradley-Terry on segment pairs, on synthetic rewards with known answers."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from rewardkit.errors import ConfigError, DataError
from rewardkit.models import (
    RewardEnsemble,
    StateActionConfig,
    StateActionRewardModel,
    TaskConditionedConfig,
    TaskConditionedRewardModel,
)
from rewardkit.training.objectives import bradley_terry_loss
from rewardkit.training.regression import fit_regression
from rewardkit.training.segments import fit_preferences, segment_bradley_terry_loss, segment_returns

W_OBS = np.array([1.0, -2.0, 0.5, 0.0])
W_ACT = np.array([0.7, -1.5])


def true_reward(obs: np.ndarray, acts: np.ndarray) -> np.ndarray:
    """A known linear reward of 4-d observations (offset and scaled, so normalisation matters) and 2-d actions."""
    return obs @ W_OBS + acts @ W_ACT


def transitions(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    obs = rng.normal(loc=[5.0, -3.0, 0.0, 10.0], scale=[2.0, 0.5, 1.0, 3.0], size=(n, 4)).astype(np.float32)
    return obs, rng.uniform(-1, 1, size=(n, 2)).astype(np.float32)


def model(seed: int = 0) -> StateActionRewardModel:
    torch.manual_seed(seed)
    return StateActionRewardModel(StateActionConfig(obs_dim=4, action_kind="continuous", action_dim=2,
                                                    hidden_sizes=(32, 32)))


def r_squared(predicted: np.ndarray, target: np.ndarray) -> float:
    return 1.0 - float(((predicted - target) ** 2).sum() / ((target - target.mean()) ** 2).sum())


# -- regression ---------------------------------------------------------------------------------------------------


def test_regression_fits_a_linear_reward():
    obs, acts = transitions(2000, seed=0)
    reward_model = model()
    history = fit_regression(reward_model, obs, acts, true_reward(obs, acts), epochs=15, batch_size=64, lr=3e-3,
                             seed=0)
    assert len(history) == 15 and history[-1] < history[0] / 10
    assert float(reward_model.obs_norm.count) == 2000
    np.testing.assert_allclose(reward_model.obs_norm.mean.numpy(), obs.mean(0), rtol=1e-5)
    test_obs, test_acts = transitions(500, seed=1)
    assert r_squared(reward_model.score(test_obs, test_acts), true_reward(test_obs, test_acts)) > 0.9


def test_regression_is_reproducible_with_a_seed():
    obs, acts = transitions(200, seed=0)
    runs = []
    for _ in range(2):
        m = model()
        runs.append((fit_regression(m, obs, acts, true_reward(obs, acts), epochs=2, batch_size=32, lr=1e-3, seed=3),
                     m.score(obs, acts)))
    assert runs[0][0] == runs[1][0] and np.array_equal(runs[0][1], runs[1][1])


def test_regression_trains_every_ensemble_member():
    obs, acts = transitions(2000, seed=0)
    ensemble = RewardEnsemble([model(0), model(1)])
    fit_regression(ensemble, obs, acts, true_reward(obs, acts), epochs=15, batch_size=64, lr=3e-3, seed=0)
    test_obs, test_acts = transitions(300, seed=1)
    for member_rewards in ensemble.score_members(test_obs, test_acts):
        assert r_squared(member_rewards, true_reward(test_obs, test_acts)) > 0.9


def test_regression_of_a_task_conditioned_reward():
    """Two tasks with opposite rewards: one model learns both through its task embedding."""
    obs, acts = transitions(2000, seed=0)
    tasks = np.arange(2000) % 2
    rews = np.where(tasks == 0, 1.0, -1.0) * true_reward(obs, acts)
    torch.manual_seed(0)
    reward_model = TaskConditionedRewardModel(TaskConditionedConfig(obs_dim=4, action_kind="continuous",
                                                                    action_dim=2, n_tasks=2, hidden_sizes=(32, 32)))
    fit_regression(reward_model, obs, acts, rews, tasks=tasks, epochs=15, batch_size=64, lr=3e-3, seed=0)
    test_obs, test_acts = transitions(300, seed=1)
    for task, sign in ((0, 1.0), (1, -1.0)):
        predicted = reward_model.score(test_obs, test_acts, task=task)
        assert r_squared(predicted, sign * true_reward(test_obs, test_acts)) > 0.9


def test_regression_refuses_bad_input():
    obs, acts = transitions(10, seed=0)
    rews = true_reward(obs, acts)
    rews[4] = np.nan
    before = {k: v.clone() for k, v in model().state_dict().items()}
    fresh = model()
    with pytest.raises(DataError, match="rews: row 4 holds NaN"):
        fit_regression(fresh, obs, acts, rews, epochs=1, batch_size=4, lr=1e-3, seed=0)
    assert all(torch.equal(before[k], v) for k, v in fresh.state_dict().items())  # nothing changed
    with pytest.raises(DataError, match="different numbers of rows"):
        fit_regression(fresh, obs, acts[:9], np.zeros(10), epochs=1, batch_size=4, lr=1e-3, seed=0)
    with pytest.raises(ConfigError, match="epochs"):
        fit_regression(fresh, obs, acts, np.zeros(10), epochs=0, batch_size=4, lr=1e-3, seed=0)


# -- preferences between segments ----------------------------------------------------------------------------------


def segments(m: int, length: int, seed: int) -> SimpleNamespace:
    obs, acts = transitions(m * length, seed)
    return SimpleNamespace(obs=obs.reshape(m, length, 4), acts=acts.reshape(m, length, 2),
                           next_obs=obs.reshape(m, length, 4), rews=true_reward(obs, acts).reshape(m, length))


def labelled_pairs(m: int, seed: int) -> tuple[SimpleNamespace, SimpleNamespace, np.ndarray]:
    """Pairs of segments labelled by the true return (the perfectly rational teacher)."""
    seg_a, seg_b = segments(m, 10, seed), segments(m, 10, seed + 1000)
    return seg_a, seg_b, (seg_a.rews.sum(1) > seg_b.rews.sum(1)).astype(np.float32)


def test_segment_returns_sum_per_step_rewards():
    reward_model = model()
    seg = segments(3, 5, seed=0)
    returns = segment_returns(reward_model, torch.as_tensor(seg.obs), torch.as_tensor(seg.acts))
    expected = reward_model.score(seg.obs.reshape(15, 4), seg.acts.reshape(15, 2)).reshape(3, 5).sum(1)
    assert returns.shape == (1, 3)
    np.testing.assert_allclose(returns[0].detach().numpy(), expected, rtol=1e-5)


def test_hard_labels_give_the_bradley_terry_loss_and_equal_labels_prefer_a_tie():
    reward_model = model()
    a, b, _ = labelled_pairs(8, seed=0)
    a, b = (SimpleNamespace(**{k: torch.as_tensor(v) for k, v in vars(s).items()}) for s in (a, b))
    prefs = torch.tensor([1.0, 0, 1, 1, 0, 0, 1, 0])
    loss = segment_bradley_terry_loss(reward_model, a, b, prefs)
    ret_a = segment_returns(reward_model, a.obs, a.acts)[0]
    ret_b = segment_returns(reward_model, b.obs, b.acts)[0]
    chosen, rejected = torch.where(prefs == 1, ret_a, ret_b), torch.where(prefs == 1, ret_b, ret_a)
    torch.testing.assert_close(loss, bradley_terry_loss(chosen, rejected))
    # with 0.5 labels the loss is smallest where the returns are equal: log 2 at a zero gap
    same = segment_bradley_terry_loss(reward_model, a, a, torch.full((8,), 0.5))
    torch.testing.assert_close(same, torch.tensor(np.log(2.0), dtype=torch.float32))


def test_preferences_recover_the_true_preference_order():
    seg_a, seg_b, prefs = labelled_pairs(600, seed=0)
    reward_model = model()
    history = fit_preferences(reward_model, seg_a, seg_b, prefs, epochs=15, batch_size=32, lr=3e-3, seed=0)
    assert history[-1] < history[0]
    test_a, test_b, test_prefs = labelled_pairs(400, seed=7)
    learned_a = reward_model.score(test_a.obs.reshape(-1, 4), test_a.acts.reshape(-1, 2)).reshape(400, 10).sum(1)
    learned_b = reward_model.score(test_b.obs.reshape(-1, 4), test_b.acts.reshape(-1, 2)).reshape(400, 10).sum(1)
    accuracy = float(((learned_a > learned_b) == (test_prefs == 1)).mean())
    assert accuracy > 0.9


def test_preferences_refuse_bad_labels():
    seg_a, seg_b, prefs = labelled_pairs(4, seed=0)
    with pytest.raises(DataError, match=r"prefs must be one label per pair in \[0, 1\]"):
        fit_preferences(model(), seg_a, seg_b, prefs * 2, epochs=1, batch_size=2, lr=1e-3, seed=0)
    seg_a.obs[1, 3, 0] = np.inf
    with pytest.raises(DataError, match="a.obs: row 1 holds an infinite value"):
        fit_preferences(model(), seg_a, seg_b, prefs, epochs=1, batch_size=2, lr=1e-3, seed=0)


def test_absorbing_steps_count_zero_and_fix_the_level_of_a_survival_reward():
    # every live step earns 1, padding after a termination 0: longer-lived segments are preferred
    rng = np.random.default_rng(0)
    m, length = 200, 6
    live = rng.integers(1, length + 1, size=(2, m))
    absorbing = np.arange(length)[None, None, :] >= live[..., None]  # (2, M, L)
    obs = rng.normal(size=(2, m, length, 4)).astype(np.float32)
    acts = rng.uniform(-1, 1, size=(2, m, length, 2)).astype(np.float32)
    sides = [SimpleNamespace(obs=obs[k], acts=acts[k], next_obs=None, absorbing=absorbing[k]) for k in (0, 1)]
    prefs = np.where(live[0] > live[1], 1.0, np.where(live[0] < live[1], 0.0, 0.5))
    reward = model()
    with torch.no_grad():  # absorbing steps are left out of the learned return, whatever the model gives them
        full = segment_returns(reward, torch.tensor(obs[0]), torch.tensor(acts[0]))
        masked = segment_returns(reward, torch.tensor(obs[0]), torch.tensor(acts[0]),
                                 absorbing=torch.tensor(absorbing[0]))
        per_step = reward(torch.tensor(obs[0]).flatten(0, 1), torch.tensor(acts[0]).flatten(0, 1)).reshape(m, length)
    torch.testing.assert_close(masked[0], (per_step * torch.tensor(~absorbing[0])).sum(1))
    assert not torch.allclose(full, masked)
    assert not reward.config.zero_after_termination
    fit_preferences(reward, *sides, prefs, epochs=30, batch_size=32, lr=3e-3, seed=0)
    assert reward.config.zero_after_termination  # saved with the model: PPO must not centre this reward
    test_obs, test_acts = transitions(500, seed=1)
    assert (reward.score(test_obs, test_acts) > 0).mean() > 0.95  # going on beats ending: R > 0 = absorbing's
