"""Task families: rewards computed from observations agree with the environments' own where they coincide."""

from __future__ import annotations

import numpy as np
import pytest

gym = pytest.importorskip("gymnasium", reason="the rl extra (gymnasium) is not installed")
pytest.importorskip("stable_baselines3", reason="the rl extra (stable-baselines3) is not installed")

from rewardkit.errors import ConfigError, DataError  # noqa: E402
from rewardkit.rl.rollout import collect  # noqa: E402
from rewardkit.rl.tasks import (  # noqa: E402
    HalfCheetahDirection,
    HalfCheetahVelocity,
    PendulumGoal,
    task_family,
    task_reward_wrapper,
)


@pytest.fixture(scope="module")
def pendulum():
    return collect("Pendulum-v1", 400, n_envs=2, seed=3)


def test_pendulum_goal_zero_is_pendulums_own_reward(pendulum) -> None:
    family = PendulumGoal()
    zero = next(t for t in family.tasks() if t.params == (0.0,))
    np.testing.assert_allclose(family.reward(zero, pendulum.obs, pendulum.acts, pendulum.next_obs), pendulum.rews,
                               atol=2e-4)


def test_relabel_changes_only_the_reward_and_segments_work_too(pendulum) -> None:
    family = PendulumGoal()
    task = family.tasks("held-out")[0]
    relabelled = family.relabel(pendulum, task)
    assert relabelled.obs is pendulum.obs and not np.allclose(relabelled.rews, pendulum.rews)
    # the best state of a goal task is the pole at rest at the goal
    at_goal = np.array([[np.cos(task.params[0]), np.sin(task.params[0]), 0.0]])
    assert family.reward(task, at_goal, np.zeros((1, 1)), at_goal)[0] == pytest.approx(0.0, abs=1e-6)
    assert family.reward(task, np.zeros((0, 3)), np.zeros((0, 1)), np.zeros((0, 3))).shape == (0,)
    from rewardkit.data.transitions import segments_from_transitions

    segments = family.relabel(segments_from_transitions(pendulum, 10), task)
    assert segments.rews.shape == (len(segments), 10)
    np.testing.assert_allclose(segments.rews[0], relabelled.rews[:10], atol=1e-6)


def test_splits_are_disjoint_and_held_out_goals_lie_between_training_goals() -> None:
    family = PendulumGoal(n_tasks=12)
    train, held = family.tasks("train"), family.tasks("held-out")
    assert len(train) == 8 and len(held) == 4
    assert {t.index for t in train}.isdisjoint(t.index for t in held)
    assert sorted(t.index for t in family.tasks("all")) == list(range(12))
    with pytest.raises(ConfigError, match="split"):
        family.tasks("test")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown task family 'x'"):
        task_family("x")


def test_reward_refuses_another_family_and_wrong_shapes(pendulum) -> None:
    cheetah = HalfCheetahVelocity()
    with pytest.raises(ConfigError, match="belongs to family pendulum-goal"):
        cheetah.reward(PendulumGoal().task(0), pendulum.obs, pendulum.acts, pendulum.next_obs)
    with pytest.raises(DataError, match="come from Pendulum-v1, but family halfcheetah-velocity runs on"):
        cheetah.relabel(pendulum, cheetah.task(0))
    with pytest.raises(DataError, match="do not fit HalfCheetah-v5"):
        cheetah.reward(cheetah.task(0), pendulum.obs, pendulum.acts, pendulum.next_obs)


def test_wrapper_gives_the_tasks_reward_and_keeps_the_envs() -> None:
    family = PendulumGoal()
    task = family.tasks("held-out")[1]
    env = task_reward_wrapper(gym.make("Pendulum-v1"), family, task)
    obs, _ = env.reset(seed=0)
    act = np.array([0.5], dtype=np.float32)
    next_obs, reward, _, _, info = env.step(act)
    assert reward == pytest.approx(float(family.reward(task, obs[None], act[None], next_obs[None])[0]))
    assert "env_reward" in info and info["env_reward"] != pytest.approx(reward)
    with pytest.raises(ConfigError, match="runs on Pendulum-v1, not CartPole-v1"):
        task_reward_wrapper(gym.make("CartPole-v1"), family, task)


def test_halfcheetah_forward_task_tracks_the_envs_reward() -> None:
    pytest.importorskip("mujoco", reason="MuJoCo is not installed")
    env = gym.make("HalfCheetah-v5")
    obs, _ = env.reset(seed=0)
    family = HalfCheetahDirection()
    forward, backward = family.tasks("train")
    rng = np.random.default_rng(0)
    mine, theirs, back, velocity, finite_diff, acts = [], [], [], [], [], []
    for _ in range(200):
        act = rng.uniform(-1, 1, size=6).astype(np.float32)
        acts.append(act)
        next_obs, reward, _, _, info = env.step(act)
        mine.append(family.reward(forward, obs[None], act[None], next_obs[None])[0])
        back.append(family.reward(backward, obs[None], act[None], next_obs[None])[0])
        theirs.append(reward)
        velocity.append(next_obs[8])
        finite_diff.append(info["x_velocity"])
        obs = next_obs
    mine, theirs, back = np.array(mine), np.array(theirs), np.array(back)
    # obs[8] is qvel[0], the instantaneous x velocity; the env differences x over the step
    assert np.corrcoef(velocity, finite_diff)[0, 1] > 0.9
    assert np.corrcoef(mine, theirs)[0, 1] > 0.9
    ctrl = np.array([0.1 * float((a**2).sum()) for a in acts])
    np.testing.assert_allclose(mine + back, -2 * ctrl, atol=1e-5)  # d v cancels: only the control cost is left
    velocities = HalfCheetahVelocity()
    task = velocities.task(3)
    np.testing.assert_allclose(
        velocities.reward(task, np.zeros((1, 17)), np.ones((1, 6)), np.eye(17)[8:9] * task.params[0]),
        [-0.6], atol=1e-6)  # at the target velocity only the control cost 0.1 * 6 is left
