"""A stable-baselines3 ``VecEnvWrapper`` that gives the agent a learned reward instead of the true one.

:class:`LearnedRewardVecEnvWrapper` (imitation's ``RewardVecEnvWrapper``, SB3's ``VecNormalize``
habit: override the step, keep the original reward retrievable) replaces each step's reward by
``reward_fn(obs, acts, next_obs)``:

* ``next_obs`` of a step that ended an episode is ``infos[i]["terminal_observation"]``, the
  state the episode really ended in, not the reset observation the ``VecEnv`` returns;
* termination and truncation are left as SB3 reports them (``dones`` plus
  ``infos[i]["TimeLimit.truncated"]``), so PPO still bootstraps through time limits;
* the true reward stays in ``infos[i]["true_reward"]``;
* SB3's ``Monitor`` must sit innermost, around each environment (as :func:`make_env` puts it),
  so the episode returns SB3 logs are true returns; a ``VecMonitor`` *above* this wrapper would
  log learned returns instead, and cannot be detected from here.

With ``normalize_reward=True`` the learned reward is standardised by running statistics
(SB3's ``RunningMeanStd`` over every step's learned reward, updated while :attr:`training`),
as imitation's ``NormalizedRewardNet`` does; :attr:`reward_rms` holds them so a trainer can
store them with the reward model. A model whose config says ``zero_after_termination`` (learned
against zero-reward absorbing steps: R = 0 is what ending the episode is worth) is only scaled,
by the running root mean square, never centred: centring would turn a survival bonus into a
reward for ending the episode early.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper, VecMonitor

from rewardkit.errors import ConfigError, ModelError
from rewardkit.rl.envs import make_env, terminal_next_obs

RewardFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
"""``(obs (n, *obs_shape), acts (n, *act_shape), next_obs (n, *obs_shape)) -> rewards (n,)``."""


class LearnedRewardVecEnvWrapper(VecEnvWrapper):
    """Replace the reward of a ``VecEnv`` by a learned one; the true reward goes to ``info``.

    Args:
        venv: The environments, each wrapped in ``Monitor`` (build them with
            :func:`~rewardkit.rl.envs.make_env`, or use :func:`make_learned_reward_env`).
        reward_fn: ``(obs, acts, next_obs) -> (n_envs,)`` numpy rewards, e.g. a
            ``StateActionRewardModel``'s ``score``. If it (or the object it is a method of)
            has a ``config`` with ``obs_dim``/``action_kind``/``action_dim``, the spaces are
            checked against it (:func:`check_reward_spaces`).
        normalize_reward: Standardise the learned reward by running mean and variance (only
            scale it, by the running root mean square, when its config has ``zero_after_termination``).
        epsilon: Added to the variance before the square root.

    Attributes:
        training: While True, normalisation statistics are updated (set False to evaluate).
        reward_rms: The running mean/variance of the learned reward (SB3's ``RunningMeanStd``).

    Raises:
        ConfigError: If no environment has ``Monitor`` below this wrapper.
        ModelError: If the reward model's observation or action dimensions do not match the spaces.
    """

    def __init__(
        self, venv: VecEnv, reward_fn: RewardFn, *, normalize_reward: bool = False, epsilon: float = 1e-8
    ) -> None:
        super().__init__(venv)
        check_monitor_inside(venv)
        check_reward_spaces(reward_fn, venv.observation_space, venv.action_space)
        self.reward_fn = reward_fn
        self.normalize_reward = normalize_reward
        self.center_reward = not getattr(reward_config(reward_fn), "zero_after_termination", False)
        self.epsilon = epsilon
        self.training = True
        self.reward_rms = RunningMeanStd(shape=())
        self._obs: np.ndarray | None = None
        self._actions: np.ndarray | None = None

    def reset(self) -> np.ndarray:
        """Reset every environment and remember the observations the next actions are taken in."""
        self._obs = self.venv.reset()
        return self._obs

    def step_async(self, actions: np.ndarray) -> None:
        """Remember the actions (the learned reward needs them) and pass them on."""
        self._actions = np.asarray(actions)
        self.venv.step_async(actions)

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        """Step, then score ``(obs, acts, next_obs)`` with the learned reward.

        Returns:
            ``(obs, rewards, dones, infos)`` as SB3 expects: ``obs`` holds the reset observation
            for finished environments, ``rewards`` are the learned ones ``(n_envs,)`` float32,
            and each ``infos[i]["true_reward"]`` is the environment's reward.

        Raises:
            ConfigError: If :meth:`reset` was not called first, or ``reward_fn`` returns
                another shape than ``(n_envs,)`` or a NaN or infinite reward.
        """
        if self._obs is None or self._actions is None:
            raise ConfigError("LearnedRewardVecEnvWrapper: call reset() before step()")
        obs, true_rews, dones, infos = self.venv.step_wait()
        next_obs = terminal_next_obs(obs, dones, infos)
        rews = np.asarray(self.reward_fn(self._obs, self._actions, next_obs), dtype=np.float64)
        if rews.shape != (self.num_envs,):
            raise ConfigError(
                f"reward_fn returned shape {rews.shape}; expected ({self.num_envs},), one reward per environment"
            )
        if not np.isfinite(rews).all():
            i = int(np.flatnonzero(~np.isfinite(rews))[0])
            raise ConfigError(f"reward_fn returned {rews[i]} for environment {i}; rewards must be finite")
        for info, true_rew in zip(infos, true_rews, strict=True):
            info["true_reward"] = float(true_rew)
        if self.normalize_reward:
            if self.training:
                self.reward_rms.update(rews)
            if self.center_reward:
                rews = (rews - self.reward_rms.mean) / np.sqrt(self.reward_rms.var + self.epsilon)
            else:  # scale only: the level (0 = the episode ended) must stay where it is
                rews = rews / np.sqrt(self.reward_rms.var + self.reward_rms.mean**2 + self.epsilon)
        self._obs = obs
        return obs, rews.astype(np.float32), dones, infos


def check_monitor_inside(venv: VecEnv) -> None:
    """Refuse environments whose episode returns would not be logged as true returns.

    Accepts ``Monitor`` around every environment, or a ``VecMonitor`` below this point.

    Raises:
        ConfigError: If neither is there; the message says how to build the environments.
    """
    inner = venv
    while isinstance(inner, VecEnvWrapper):
        if isinstance(inner, VecMonitor):
            return
        inner = inner.venv
    if all(venv.env_is_wrapped(Monitor)):
        return
    raise ConfigError(
        "the environments have no Monitor under the learned reward, so logged episode returns would not be true "
        "returns; build them with rewardkit.rl.make_env (SB3 make_vec_env) or wrap each env in Monitor"
    )


def reward_config(reward_fn: Any) -> Any:
    """The ``config`` of ``reward_fn`` or of the object it is a bound method of; None if neither has one."""
    return getattr(getattr(reward_fn, "__self__", reward_fn), "config", None)


def check_reward_spaces(reward_fn: Any, observation_space: Any, action_space: Any) -> None:
    """Refuse a reward model whose stored input sizes do not fit the environment's spaces.

    The model's expected sizes are read from ``config`` on ``reward_fn`` or on the object
    ``reward_fn`` is a bound method of (``StateActionConfig``: ``obs_dim``; ``action_kind``,
    ``"discrete"`` or ``"continuous"``; ``action_dim``, the number of actions for discrete).
    Sizes are Gymnasium's ``flatdim`` (Box: the number of values, Discrete: ``n``, one-hot).
    A callable without such a config is not checked.

    Raises:
        ModelError: ``"reward model expects ... but the environment gives ..."``.
    """
    from gymnasium import spaces

    config = reward_config(reward_fn)
    if config is None:
        return
    obs_dim = getattr(config, "obs_dim", None)
    env_obs_dim = spaces.flatdim(observation_space)
    if obs_dim is not None and obs_dim != env_obs_dim:
        raise ModelError(
            f"reward model expects observations of {obs_dim} values but the environment gives {env_obs_dim} "
            f"({observation_space}); use a model trained on this environment"
        )
    kind = getattr(config, "action_kind", None)
    action_dim = getattr(config, "action_dim", None)
    env_kind = "discrete" if isinstance(action_space, spaces.Discrete) else "continuous"
    env_action_dim = spaces.flatdim(action_space)
    if (kind is not None and kind != env_kind) or (action_dim is not None and action_dim != env_action_dim):
        raise ModelError(
            f"reward model expects {kind} actions of size {action_dim} but the environment has {env_kind} actions "
            f"of size {env_action_dim} ({action_space}); use a model trained on this environment"
        )


def make_learned_reward_env(
    env_id: str,
    reward_fn: RewardFn,
    *,
    n_envs: int = 4,
    seed: int = 0,
    normalize_reward: bool = False,
    monitor_dir: str | None = None,
) -> LearnedRewardVecEnvWrapper:
    """:func:`~rewardkit.rl.envs.make_env` (``Monitor`` innermost) under a :class:`LearnedRewardVecEnvWrapper`.

    Args:
        env_id: A registered Gymnasium id.
        reward_fn: ``(obs, acts, next_obs) -> (n_envs,)`` rewards.
        n_envs: Environments stepped together.
        seed: Environment ``i`` is reset with ``seed + i``.
        normalize_reward: Standardise the learned reward by running statistics.
        monitor_dir: Where ``Monitor`` writes its CSV files of true episode returns.

    Raises:
        ConfigError: If the id is unknown.
        ModelError: If the reward model does not fit the spaces.
    """
    venv = make_env(env_id, n_envs=n_envs, seed=seed, monitor_dir=monitor_dir)
    try:
        return LearnedRewardVecEnvWrapper(venv, reward_fn, normalize_reward=normalize_reward)
    except Exception:
        venv.close()
        raise
