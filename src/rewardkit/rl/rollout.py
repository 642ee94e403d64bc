"""Roll-outs: step vectorised Gymnasium environments with a policy and record :class:`Transitions`.

The environments come from :func:`rewardkit.rl.envs.make_env` (SB3 ``DummyVecEnv``). When an
episode ends, ``DummyVecEnv`` has already reset that environment and returns the *reset*
observation; the step's true next observation is ``infos[i]["terminal_observation"]``, and
that is what goes into ``next_obs``. ``terminated`` and ``truncated`` are kept apart:
``truncated`` is SB3's ``infos[i]["TimeLimit.truncated"]`` (cut short, not terminated).

The transitions are stored environment by environment (all steps of environment 0 in order,
then environment 1, ...), so the steps of each episode are consecutive. The last step of each
environment's stream is marked ``truncated`` when its episode was still running: the
collection budget cut it, and a segment must not run on into the next environment's steps.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from rewardkit.data.transitions import Transitions
from rewardkit.errors import ConfigError
from rewardkit.rl.envs import make_env, terminal_next_obs


def collect(
    env_id: str,
    n_steps: int,
    *,
    n_envs: int = 4,
    policy: Any = None,
    seed: int = 0,
    deterministic: bool = False,
) -> Transitions:
    """Run a policy in ``n_envs`` copies of an environment and record ``n_steps`` transitions.

    Args:
        env_id: A registered Gymnasium id, e.g. ``"Pendulum-v1"``.
        n_steps: Total transitions to record, over all environments (environment ``i`` takes
            ``n_steps // n_envs`` steps, plus one for the first ``n_steps % n_envs``).
        n_envs: Environments stepped together.
        policy: None for uniformly random actions (the action space seeded with ``seed``), or
            anything with SB3's ``predict(obs, deterministic=...) -> (actions, state)``: a
            ``stable_baselines3`` model (``PPO.load(...)``) or policy.
        seed: Environment ``i`` is reset with ``seed + i``; the same seed gives the same data.
        deterministic: Passed to ``policy.predict`` (ignored for random actions).

    Returns:
        ``n_steps`` transitions with ``env_id`` set, episodes consecutive.

    Raises:
        ConfigError: If the id is unknown, ``n_steps`` or ``n_envs`` is below 1, the spaces are
            not Box or Discrete, or the policy was trained on other spaces.
    """
    if n_steps < 1:
        raise ConfigError(f"n_steps {n_steps}: must be at least 1")
    if n_envs < 1:
        raise ConfigError(f"n_envs {n_envs}: must be at least 1")
    n_envs = min(n_envs, n_steps)
    venv = make_env(env_id, n_envs=n_envs, seed=seed)
    try:
        check_supported_spaces(env_id, venv.observation_space, venv.action_space)
        if policy is not None:
            check_policy_spaces(env_id, policy, venv.observation_space, venv.action_space)
        return _record(venv, env_id, n_steps, policy, seed, deterministic)
    finally:
        venv.close()


def _record(venv: Any, env_id: str, n_steps: int, policy: Any, seed: int, deterministic: bool) -> Transitions:
    n_envs = venv.num_envs
    per_env = np.full(n_envs, n_steps // n_envs) + (np.arange(n_envs) < n_steps % n_envs)
    horizon = int(per_env.max())
    action_space = copy.deepcopy(venv.action_space)
    action_space.seed(seed)

    obs_buf, acts_buf, rews_buf, next_buf, term_buf, trunc_buf = [], [], [], [], [], []
    obs = venv.reset()
    for _ in range(horizon):
        if policy is None:
            acts = np.stack([np.asarray(action_space.sample()) for _ in range(n_envs)])
        else:
            acts, _ = policy.predict(obs, deterministic=deterministic)
        new_obs, rews, dones, infos = venv.step(acts)
        next_obs = terminal_next_obs(new_obs, dones, infos)
        cut = [bool(info.get("TimeLimit.truncated", False)) for info in infos]
        truncated = dones & np.array(cut, dtype=bool)
        obs_buf.append(obs)
        acts_buf.append(np.asarray(acts))
        rews_buf.append(rews)
        next_buf.append(next_obs)
        term_buf.append(dones & ~truncated)
        trunc_buf.append(truncated)
        obs = new_obs

    def env_major(steps: list[np.ndarray]) -> np.ndarray:
        stacked = np.stack(steps, axis=1)  # (n_envs, horizon, ...)
        return np.concatenate([stacked[i, : per_env[i]] for i in range(n_envs)])

    terminated, truncated = env_major(term_buf), env_major(trunc_buf)
    last_of_each_env = np.cumsum(per_env) - 1
    truncated[last_of_each_env] |= ~terminated[last_of_each_env]  # cut by the budget
    return Transitions(
        obs=env_major(obs_buf).astype(np.float32),
        acts=env_major(acts_buf),
        rews=env_major(rews_buf).astype(np.float32),
        next_obs=env_major(next_buf).astype(np.float32),
        terminated=terminated,
        truncated=truncated,
        env_id=env_id,
    )


def check_supported_spaces(env_id: str, observation_space: Any, action_space: Any) -> None:
    """Refuse spaces a :class:`Transitions` record cannot hold as one array per field.

    Raises:
        ConfigError: If the observation space is not Box or Discrete, or the action space is
            not Box or Discrete; the message says how to flatten.
    """
    from gymnasium import spaces

    if not isinstance(observation_space, spaces.Box | spaces.Discrete):
        raise ConfigError(
            f"environment '{env_id}': observation space {observation_space} is not Box or Discrete; "
            "wrap it in gymnasium.wrappers.FlattenObservation"
        )
    if not isinstance(action_space, spaces.Box | spaces.Discrete):
        raise ConfigError(f"environment '{env_id}': action space {action_space} is not Box or Discrete")


def check_policy_spaces(env_id: str, policy: Any, observation_space: Any, action_space: Any) -> None:
    """Refuse a policy trained on other observation or action spaces than the environment's.

    Raises:
        ConfigError: If ``policy`` has no ``predict``, or its ``observation_space`` or
            ``action_space`` differs from the environment's; the message shows both.
    """
    if not callable(getattr(policy, "predict", None)):
        raise ConfigError(
            f"policy {type(policy).__name__}: has no predict(obs, deterministic=...); pass a "
            "stable-baselines3 model or policy, or None for random actions"
        )
    for name, space in (("observation_space", observation_space), ("action_space", action_space)):
        theirs = getattr(policy, name, None)
        if theirs is not None and theirs != space:
            raise ConfigError(f"policy's {name} {theirs} does not match environment '{env_id}''s {space}")
