"""Vectorised Gymnasium environments for rewardkit: checked ids, ``Monitor`` innermost, fixed seeds.

Every environment rewardkit steps is built here, by stable-baselines3's ``make_vec_env``:
one ``DummyVecEnv`` of ``n_envs`` copies of ``gym.make(env_id)``, each wrapped in SB3's
``Monitor`` directly around the environment (inside any reward wrapper), so the episode
returns SB3 logs (``info["episode"]["r"]``, ``rollout/ep_rew_mean``) are always sums of the
environment's true rewards. ``DummyVecEnv`` resets a finished environment itself and keeps its
last observation in ``infos[i]["terminal_observation"]`` and the cut-short flag in
``infos[i]["TimeLimit.truncated"]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rewardkit.errors import ConfigError


def check_env_id(env_id: str) -> None:
    """Refuse an id Gymnasium does not know, before building anything.

    Raises:
        ConfigError: ``"unknown environment '<id>': <Gymnasium's reason, with its suggestion>"``.
    """
    import gymnasium as gym

    try:
        gym.spec(env_id)
    except gym.error.Error as err:
        raise ConfigError(
            f"unknown environment '{env_id}': {err} (registered ids: gymnasium.pprint_registry())"
        ) from None


def make_env(env_id: str, *, n_envs: int = 4, seed: int = 0, monitor_dir: str | None = None) -> Any:
    """``n_envs`` copies of ``env_id`` in a ``DummyVecEnv``, each with ``Monitor`` innermost.

    Args:
        env_id: A registered Gymnasium id, e.g. ``"CartPole-v1"``.
        n_envs: Number of environments stepped together (at least 1).
        seed: Environment ``i`` is reset with seed ``seed + i`` at the first reset, and its
            action space is seeded the same way.
        monitor_dir: Where ``Monitor`` writes its CSV files (``<dir>/<i>.monitor.csv``); None
            keeps the episode statistics in memory only (``info["episode"]``).

    Returns:
        The ``stable_baselines3`` ``VecEnv``.

    Raises:
        ConfigError: If the id is unknown, ``n_envs`` is below 1, or the environment cannot be
            built (e.g. a missing MuJoCo install); the message names the id.
    """
    import gymnasium as gym
    from stable_baselines3.common.env_util import make_vec_env

    if n_envs < 1:
        raise ConfigError(f"n_envs {n_envs}: must be at least 1")
    check_env_id(env_id)
    try:
        return make_vec_env(env_id, n_envs=n_envs, seed=seed, monitor_dir=monitor_dir)
    except (ImportError, gym.error.DependencyNotInstalled) as err:
        raise ConfigError(f"environment '{env_id}' cannot be built: {err}") from None


def terminal_next_obs(obs: np.ndarray, dones: np.ndarray, infos: list[dict[str, Any]]) -> np.ndarray:
    """The true next observations of a ``VecEnv`` step: ``terminal_observation`` where an episode ended.

    Args:
        obs: ``(n_envs, *obs_shape)`` as returned by ``step_wait`` (reset observations where done).
        dones: ``(n_envs,)`` bool.
        infos: One dict per environment.

    Returns:
        A copy of ``obs`` with row ``i`` replaced by ``infos[i]["terminal_observation"]`` where
        ``dones[i]``.
    """
    next_obs = np.array(obs, copy=True)
    for i in np.flatnonzero(dones):
        next_obs[i] = infos[i]["terminal_observation"]
    return next_obs
