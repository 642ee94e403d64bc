"""LearnedRewardVecEnvWrapper: the agent sees reward_fn(obs, act, next_obs); Monitor still logs true returns."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

gym = pytest.importorskip("gymnasium", reason="the rl extra (gymnasium) is not installed")
pytest.importorskip("stable_baselines3", reason="the rl extra (stable-baselines3) is not installed")

from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor  # noqa: E402

from rewardkit.errors import ConfigError, ModelError  # noqa: E402
from rewardkit.rl.envs import make_env  # noqa: E402
from rewardkit.rl.wrapper import LearnedRewardVecEnvWrapper, make_learned_reward_env  # noqa: E402


class Recorder:
    """A reward function that remembers its inputs: reward = 10 * next_obs[0] + obs[1] + first action value."""

    def __init__(self) -> None:
        self.calls: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def __call__(self, obs: np.ndarray, acts: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        self.calls.append((obs.copy(), acts.copy(), next_obs.copy()))
        return self.formula(obs, acts, next_obs)

    @staticmethod
    def formula(obs: np.ndarray, acts: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        return 10 * next_obs[:, 0] + obs[:, 1] + acts.reshape(len(acts), -1)[:, 0]


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_reward_is_reward_fn_of_obs_act_true_next_obs(env_id: str) -> None:
    """Against an unwrapped twin stepped with the same actions: same obs, true reward in info."""
    recorder = Recorder()
    venv = make_learned_reward_env(env_id, recorder, n_envs=2, seed=5)
    twin = make_env(env_id, n_envs=2, seed=5)
    space = twin.action_space
    space.seed(0)
    obs, twin_obs = venv.reset(), twin.reset()
    ends = 0
    for _ in range(260):
        acts = np.stack([space.sample() for _ in range(2)])
        new_obs, rews, dones, infos = venv.step(acts)
        twin_new, twin_rews, twin_dones, twin_infos = twin.step(acts)
        np.testing.assert_array_equal(new_obs, twin_new)
        np.testing.assert_array_equal(dones, twin_dones)
        true_next = np.array(twin_new, copy=True)
        for i in np.flatnonzero(twin_dones):
            true_next[i] = twin_infos[i]["terminal_observation"]
            assert not np.array_equal(true_next[i], twin_new[i])  # the reset observation is another one
            assert infos[i]["TimeLimit.truncated"] == twin_infos[i]["TimeLimit.truncated"]
            ends += 1
        np.testing.assert_allclose(rews, Recorder.formula(twin_obs, acts, true_next).astype(np.float32), rtol=1e-6)
        np.testing.assert_array_equal(recorder.calls[-1][0], obs)
        np.testing.assert_array_equal(recorder.calls[-1][2], true_next)
        assert [info["true_reward"] for info in infos] == pytest.approx(twin_rews.tolist())
        assert rews.dtype == np.float32
        obs, twin_obs = new_obs, twin_new
    assert ends >= 2


def test_monitor_logs_true_returns_not_learned_ones() -> None:
    venv = make_learned_reward_env("Pendulum-v1", lambda o, a, n: np.full(len(o), 5.0), n_envs=2, seed=0)
    venv.reset()
    true_sum = np.zeros(2)
    episodes = []
    for _ in range(400):
        _, rews, dones, infos = venv.step(np.zeros((2, 1), dtype=np.float32))
        assert (rews == 5.0).all()
        true_sum += [info["true_reward"] for info in infos]
        for i in np.flatnonzero(dones):
            episodes.append((infos[i]["episode"]["r"], true_sum[i]))
            true_sum[i] = 0
    assert len(episodes) == 4  # 200-step time limit, 2 envs, 400 steps
    for logged, true_return in episodes:
        assert logged == pytest.approx(true_return, abs=1e-4)
        assert logged != pytest.approx(5.0 * 200)


def test_ppo_logs_true_episode_returns_through_the_wrapper() -> None:
    from stable_baselines3 import PPO

    venv = make_learned_reward_env("CartPole-v1", lambda o, a, n: np.zeros(len(o)), n_envs=2, seed=0)
    model = PPO("MlpPolicy", venv, n_steps=128, batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.learn(256)
    returns = [info["r"] for info in model.ep_info_buffer]
    lengths = [info["l"] for info in model.ep_info_buffer]
    assert returns and returns == pytest.approx(lengths)  # CartPole's true reward is 1 per step, learned is 0


def test_normalize_reward_standardises_and_freezes() -> None:
    venv = make_learned_reward_env(
        "Pendulum-v1", lambda o, a, n: 3.0 + 2.0 * a[:, 0], n_envs=4, seed=0, normalize_reward=True
    )
    venv.reset()
    space = venv.action_space
    space.seed(0)
    raw, seen = [], []
    for _ in range(300):
        acts = np.stack([space.sample() for _ in range(4)])
        _, rews, _, _ = venv.step(acts)
        raw.append(3.0 + 2.0 * acts[:, 0])
        seen.append(rews)
    raw_all = np.concatenate(raw)
    expected_last = (raw[-1] - raw_all.mean()) / raw_all.std()  # running statistics include this step
    np.testing.assert_allclose(seen[-1], expected_last, atol=1e-3)
    late = np.concatenate(seen[150:])
    assert abs(late.mean()) < 0.1 and 0.9 < late.std() < 1.1
    venv.training = False
    count = venv.reward_rms.count
    venv.step(np.zeros((4, 1), dtype=np.float32))
    assert venv.reward_rms.count == count


class FakeModel:
    def __init__(self, obs_dim: int, action_kind: str, action_dim: int) -> None:
        self.config = SimpleNamespace(obs_dim=obs_dim, action_kind=action_kind, action_dim=action_dim)

    def score(self, obs: np.ndarray, acts: np.ndarray, next_obs: np.ndarray | None = None) -> np.ndarray:
        return np.zeros(len(obs))


def test_space_mismatch_with_reward_model_is_refused() -> None:
    make_learned_reward_env("CartPole-v1", FakeModel(4, "discrete", 2).score, n_envs=1).close()
    make_learned_reward_env("Pendulum-v1", FakeModel(3, "continuous", 1).score, n_envs=1).close()
    with pytest.raises(ModelError, match="expects observations of 3 values but the environment gives 4"):
        make_learned_reward_env("CartPole-v1", FakeModel(3, "discrete", 2).score)
    with pytest.raises(ModelError, match="expects discrete actions of size 2 but the environment has continuous"):
        make_learned_reward_env("Pendulum-v1", FakeModel(3, "discrete", 2).score)


def test_environments_without_monitor_are_refused() -> None:
    plain = DummyVecEnv([lambda: gym.make("CartPole-v1")])
    with pytest.raises(ConfigError, match="no Monitor under the learned reward"):
        LearnedRewardVecEnvWrapper(plain, lambda o, a, n: np.zeros(len(o)))
    LearnedRewardVecEnvWrapper(VecMonitor(plain), lambda o, a, n: np.zeros(len(o)))


def test_bad_reward_fn_output() -> None:
    venv = make_learned_reward_env("CartPole-v1", lambda o, a, n: np.zeros((len(o), 1)), n_envs=2)
    venv.reset()
    with pytest.raises(ConfigError, match=r"reward_fn returned shape \(2, 1\); expected \(2,\)"):
        venv.step(np.zeros(2, dtype=np.int64))
    venv = make_learned_reward_env("CartPole-v1", lambda o, a, n: np.array([0.0, np.nan]), n_envs=2)
    venv.reset()
    with pytest.raises(ConfigError, match="reward_fn returned nan for environment 1"):
        venv.step(np.zeros(2, dtype=np.int64))


def test_unknown_env_id() -> None:
    with pytest.raises(ConfigError, match="unknown environment 'NoSuchEnv-v0'"):
        make_learned_reward_env("NoSuchEnv-v0", lambda o, a, n: np.zeros(len(o)))


class Constant(FakeModel):
    def score(self, obs: np.ndarray, acts: np.ndarray, next_obs: np.ndarray | None = None) -> np.ndarray:
        return np.full(len(obs), 5.0)


def test_a_reward_learned_against_absorbing_steps_is_scaled_not_centred() -> None:
    model = Constant(4, "discrete", 2)
    model.config.zero_after_termination = True  # a survival bonus: centring it would reward falling
    venv = make_learned_reward_env("CartPole-v1", model.score, n_envs=2, seed=0, normalize_reward=True)
    venv.reset()
    rews = [venv.step(np.zeros(2, dtype=np.int64))[1] for _ in range(20)]
    np.testing.assert_allclose(rews[-1], 1.0, rtol=1e-5)  # 5 / root mean square 5
    model.config.zero_after_termination = False
    centred = make_learned_reward_env("CartPole-v1", model.score, n_envs=2, seed=0, normalize_reward=True)
    centred.reset()
    rews = [centred.step(np.zeros(2, dtype=np.int64))[1] for _ in range(20)]
    assert abs(rews[-1]).max() < 0.01  # the constant is gone (up to the running statistics' start)
