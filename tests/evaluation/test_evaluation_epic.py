"""EPIC distance: invariant to potential shaping and positive scale, 1 for a negated reward."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rewardkit.errors import DataError, RewardkitError
from rewardkit.evaluation.epic import canonicalize, epic_distance, pearson_distance
from rewardkit.models import StateActionConfig, StateActionRewardModel

GAMMA = 0.9


def reward(obs: np.ndarray, acts: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
    """A nonlinear ground-truth reward R(s, a, s') of 3-d states and 2-d actions."""
    return np.sin(obs[:, 0]) + obs[:, 1] * acts[:, 0] - 0.5 * acts[:, 1] ** 2 + 0.3 * next_obs[:, 2]


def potential(obs: np.ndarray) -> np.ndarray:
    return 2.0 * obs[:, 0] ** 2 - 3.0 * np.cos(obs[:, 1]) + 5.0 * obs[:, 2]


def shaped(obs: np.ndarray, acts: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
    return reward(obs, acts, next_obs) + GAMMA * potential(next_obs) - potential(obs)


@pytest.fixture
def batch() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(1000, 3))
    return obs, rng.uniform(-1, 1, size=(1000, 2)), obs + 0.1 * rng.normal(size=(1000, 3))


def test_shaped_reward_is_at_distance_zero(batch):
    obs, acts, next_obs = batch
    assert pearson_distance(reward(*batch), shaped(*batch)) > 0.2  # the shaping is far from negligible
    result = epic_distance(reward, shaped, obs, acts, next_obs, discount=GAMMA, n_mean_samples=128)
    assert result.distance < 0.05 and result.ci_high < 0.05
    assert (result.n_samples, result.n_mean_samples, result.discount, result.level) == (1000, 128, GAMMA, 0.95)


def test_negated_reward_is_at_distance_one_and_rescaled_at_zero(batch):
    negated = epic_distance(reward, lambda *t: -reward(*t), *batch, discount=GAMMA, n_mean_samples=64)
    assert negated.distance == pytest.approx(1.0, abs=1e-6)
    rescaled = epic_distance(reward, lambda *t: 7.0 * shaped(*t) + 3.0, *batch, discount=GAMMA, n_mean_samples=64)
    assert rescaled.distance < 0.05


def test_different_rewards_lie_between_with_an_interval_around_the_distance(batch):
    other = lambda o, a, n: np.sin(o[:, 0]) + a[:, 0]  # noqa: E731 (shares one term with reward)
    result = epic_distance(reward, other, *batch, discount=GAMMA, n_mean_samples=64, seed=1)
    assert 0.2 < result.distance < 0.8
    assert result.ci_low < result.distance < result.ci_high
    assert result.ci_high - result.ci_low < 0.1


def test_canonicalisation_removes_the_potential_exactly(batch):
    obs, acts, next_obs = batch
    mean_obs, mean_acts = obs[:50], acts[50:100]
    plain = canonicalize(reward, *batch, mean_obs, mean_acts, discount=GAMMA)
    with_shaping = canonicalize(shaped, *batch, mean_obs, mean_acts, discount=GAMMA)
    np.testing.assert_allclose(with_shaping - with_shaping.mean(), plain - plain.mean(), atol=1e-9)


def test_models_go_in_as_callables(batch):
    obs, acts, next_obs = batch
    torch.manual_seed(0)
    model = StateActionRewardModel(StateActionConfig(obs_dim=3, action_kind="continuous", action_dim=2,
                                                     use_next_obs=True, hidden_sizes=(16,)))
    same = epic_distance(model.score, model.score, obs[:200], acts[:200], next_obs[:200], discount=GAMMA,
                         n_mean_samples=32)
    assert same.distance < 1e-3


def test_bad_input_refused(batch):
    obs, acts, next_obs = batch
    bad = obs.copy()
    bad[3, 1] = np.nan
    with pytest.raises(DataError, match="obs: row 3 holds NaN"):
        epic_distance(reward, shaped, bad, acts, next_obs, discount=GAMMA)
    with pytest.raises(DataError, match="reward_b returned NaN or inf"):
        epic_distance(reward, lambda o, a, n: np.full(len(o), np.nan), *batch, discount=GAMMA, n_mean_samples=8)
    with pytest.raises(DataError, match=r"reward_a returned shape \(1,\)"):
        epic_distance(lambda o, a, n: np.zeros(1), reward, *batch, discount=GAMMA, n_mean_samples=8)
    with pytest.raises(RewardkitError, match="reward_b is constant after canonicalisation"):
        epic_distance(reward, lambda o, a, n: GAMMA * potential(n) - potential(o), *batch, discount=GAMMA,
                      n_mean_samples=16)
    with pytest.raises(DataError, match="discount"):
        epic_distance(reward, shaped, *batch, discount=1.5)
