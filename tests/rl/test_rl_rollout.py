"""collect(): vectorised roll-outs whose next_obs at an episode end is the true last observation."""

from __future__ import annotations

import numpy as np
import pytest

gym = pytest.importorskip("gymnasium", reason="the rl extra (gymnasium) is not installed")
pytest.importorskip("stable_baselines3", reason="the rl extra (stable-baselines3) is not installed")

from rewardkit.data.transitions import fingerprint  # noqa: E402
from rewardkit.errors import ConfigError  # noqa: E402
from rewardkit.rl.rollout import collect  # noqa: E402


def replay(env_id: str, seed: int, acts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Step one plain Gymnasium env as DummyVecEnv does (seeded first reset, unseeded later ones)."""
    env = gym.make(env_id)
    obs, _ = env.reset(seed=seed)
    starts, nexts, terminated, truncated = [], [], [], []
    for act in acts:
        starts.append(obs)
        obs, _, term, trunc, _ = env.step(act)
        nexts.append(obs)
        terminated.append(term)
        truncated.append(trunc and not term)
        if term or trunc:
            obs, _ = env.reset()
    return np.array(starts), np.array(nexts), np.array(terminated), np.array(truncated)


@pytest.mark.parametrize(("env_id", "n_steps"), [("CartPole-v1", 600), ("Pendulum-v1", 900)])
def test_next_obs_at_episode_end_is_the_terminal_observation(env_id: str, n_steps: int) -> None:
    t = collect(env_id, n_steps, n_envs=3, seed=7)
    assert len(t) == n_steps and t.env_id == env_id
    per_env = n_steps // 3
    for i in range(3):  # environment i's steps are rows i*per_env .. (i+1)*per_env - 1
        rows = slice(i * per_env, (i + 1) * per_env)
        starts, nexts, terminated, truncated = replay(env_id, 7 + i, t.acts[rows])
        np.testing.assert_allclose(t.obs[rows], starts, rtol=1e-6)
        np.testing.assert_allclose(t.next_obs[rows], nexts, rtol=1e-6)
        np.testing.assert_array_equal(t.terminated[rows], terminated)
        np.testing.assert_array_equal(t.truncated[rows][:-1], truncated[:-1])
        assert t.truncated[rows][-1] or t.terminated[rows][-1]  # cut by the budget: no segment runs on
    ends = np.flatnonzero(t.dones[:-1])
    assert ends.size > 0
    assert not np.allclose(t.next_obs[ends], t.obs[ends + 1])  # the reset observation is elsewhere
    inside = np.flatnonzero(~t.dones[:-1])
    np.testing.assert_array_equal(t.next_obs[inside], t.obs[inside + 1])


def test_cartpole_terminations_and_pendulum_truncations_kept_apart() -> None:
    cart = collect("CartPole-v1", 400, n_envs=2, seed=0)
    ended = np.flatnonzero(cart.terminated)
    assert ended.size > 5
    # a terminal CartPole state is out of bounds (|x| > 2.4 or |theta| > 12 degrees); a reset one is not
    out = (np.abs(cart.next_obs[ended, 0]) > 2.4) | (np.abs(cart.next_obs[ended, 2]) > 0.2094)
    assert out.all()
    pend = collect("Pendulum-v1", 500, n_envs=2, seed=0)
    assert not pend.terminated.any()
    np.testing.assert_array_equal(np.flatnonzero(pend.truncated), [199, 249, 449, 499])  # time limit 200, budget 250


def test_same_seed_same_data() -> None:
    assert fingerprint(collect("Pendulum-v1", 64, n_envs=2, seed=3)) == fingerprint(
        collect("Pendulum-v1", 64, n_envs=2, seed=3)
    )
    assert fingerprint(collect("Pendulum-v1", 64, n_envs=2, seed=4)) != fingerprint(
        collect("Pendulum-v1", 64, n_envs=2, seed=3)
    )


def test_uneven_budget_and_dtypes() -> None:
    t = collect("CartPole-v1", 10, n_envs=4, seed=0)
    assert len(t) == 10
    assert t.acts.dtype == np.int64 and t.acts.shape == (10,) and t.obs.dtype == np.float32
    assert t.dones[[2, 5, 7, 9]].all()  # streams of 3, 3, 2, 2 steps each end
    p = collect("Pendulum-v1", 8, n_envs=2, seed=0)
    assert p.acts.dtype == np.float32 and p.acts.shape == (8, 1)


def test_sb3_policy() -> None:
    from stable_baselines3 import PPO

    model = PPO("MlpPolicy", "CartPole-v1", n_steps=32, batch_size=32, seed=0, device="cpu")
    t = collect("CartPole-v1", 40, n_envs=2, policy=model, seed=0, deterministic=True)
    expected, _ = model.predict(t.obs, deterministic=True)
    np.testing.assert_array_equal(t.acts, expected)
    with pytest.raises(ConfigError, match="policy's observation_space .* does not match environment 'Pendulum-v1'"):
        collect("Pendulum-v1", 10, policy=model)


@pytest.mark.parametrize("env_id", ["NoSuchEnv-v0", "Cartpole-v1", "CartPole-v9"])
def test_unknown_env_id_is_one_line(env_id: str) -> None:
    with pytest.raises(ConfigError, match=f"unknown environment '{env_id}'") as err:
        collect(env_id, 10)
    assert "\n" not in str(err.value)


def test_bad_budgets() -> None:
    with pytest.raises(ConfigError, match="n_steps 0"):
        collect("CartPole-v1", 0)
    with pytest.raises(ConfigError, match="n_envs 0"):
        collect("CartPole-v1", 5, n_envs=0)
