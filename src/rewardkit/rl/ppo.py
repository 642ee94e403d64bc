"""PPO (stable-baselines3) on a learned or the true reward: return curves, true-return evaluation, progress.

The agent is SB3's ``PPO("MlpPolicy", ...)`` on :func:`~rewardkit.rl.envs.make_env`
environments (``Monitor`` innermost), under a
:class:`~rewardkit.rl.wrapper.LearnedRewardVecEnvWrapper` when a reward model is given.
:class:`ReturnCurves` records, at the end of every PPO roll-out, the mean *true* return of
the episodes finished during it (``Monitor``'s ``info["episode"]["r"]``) and their mean
*learned* return (the sum of the reward model's raw outputs, before any reward
normalisation), the two curves of the issue's protocol. :func:`evaluate_true_return` runs a
policy on the true reward alone.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy

from rewardkit.errors import ConfigError
from rewardkit.rl.envs import make_env
from rewardkit.rl.wrapper import make_learned_reward_env

#: Columns of ``curves.csv``: seed, environment steps so far, episodes finished in the roll-out,
#: their mean true return, their mean learned return (empty on the true reward), queries so far.
CURVE_COLUMNS = ("seed", "step", "episodes", "true_return", "learned_return", "queries")


class RecordingReward:
    """A reward function that remembers its last output (the raw learned reward of each environment).

    Args:
        model: A reward model with ``score(obs, acts, next_obs) -> (n,)`` and a ``config``
            (checked against the spaces by the wrapper).

    Attributes:
        last: ``(n_envs,) float32`` rewards of the latest step, or None before the first.
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        self.last: np.ndarray | None = None

    @property
    def config(self) -> Any:
        """The model's config, so :func:`~rewardkit.rl.wrapper.check_reward_spaces` sees it."""
        return self.model.config

    def __call__(self, obs: np.ndarray, acts: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        """Score the step with the model and keep the result."""
        self.last = np.asarray(self.model.score(obs, acts, next_obs), dtype=np.float32)
        return self.last


class ReturnCurves(BaseCallback):
    """Per PPO roll-out: episodes finished, their mean true and mean learned return.

    Args:
        seed: Written in every row.
        recorder: The learned reward being trained on, or None on the true reward.
        queries: Called at each row for the number of preference queries answered so far
            (None: the column stays empty).

    Attributes:
        rows: One dict per roll-out with the keys of :data:`CURVE_COLUMNS` (NaN where no
            episode finished).
    """

    def __init__(self, seed: int, recorder: RecordingReward | None = None,
                 queries: Callable[[], int] | None = None) -> None:
        super().__init__()
        self.seed, self.recorder, self.queries = seed, recorder, queries
        self.rows: list[dict[str, float]] = []
        self._learned: np.ndarray | None = None
        self._true: list[float] = []
        self._learned_done: list[float] = []

    def _on_step(self) -> bool:
        dones, infos = self.locals["dones"], self.locals["infos"]
        if self._learned is None:
            self._learned = np.zeros(len(dones), dtype=np.float64)
        if self.recorder is not None and self.recorder.last is not None:
            self._learned += self.recorder.last
        for i in np.flatnonzero(dones):
            if "episode" in infos[i]:
                self._true.append(float(infos[i]["episode"]["r"]))
                self._learned_done.append(float(self._learned[i]))
            self._learned[i] = 0.0
        return True

    def _on_rollout_end(self) -> None:
        learned = math.nan
        if self.recorder is not None and self._learned_done:
            learned = float(np.mean(self._learned_done))
        self.rows.append({
            "seed": self.seed,
            "step": int(self.num_timesteps),
            "episodes": len(self._true),
            "true_return": float(np.mean(self._true)) if self._true else math.nan,
            "learned_return": learned,
            "queries": self.queries() if self.queries is not None else math.nan,
        })
        self._true, self._learned_done = [], []


class StepProgress(BaseCallback):
    """Advance a progress bar by the environment steps of every PPO step."""

    def __init__(self, advance: Callable[[int], None]) -> None:
        super().__init__()
        self.advance = advance

    def _on_step(self) -> bool:
        self.advance(self.training_env.num_envs)
        return True


@contextmanager
def progress_bar(total: int, description: str, enabled: bool) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr over ``total`` environment steps (tqdm, as the text trainer's); yields ``advance(n)``.

    Disabled (``enabled=False``, e.g. with ``--json``) nothing is shown.
    """
    from tqdm.auto import tqdm

    with tqdm(total=total, desc=description, unit="step", disable=not enabled, leave=False) as bar:
        yield bar.update


def make_ppo(env_id: str, reward: RecordingReward | None, *, seed: int, n_envs: int, n_steps: int = 256,
             normalize_reward: bool = True) -> PPO:
    """A fresh PPO agent on ``env_id``, rewarded by ``reward`` (or the true reward when None).

    Args:
        env_id: A registered Gymnasium id.
        reward: The learned reward, or None for the environment's own.
        seed: Seed of the agent and of the environments (environment ``i``: ``seed + i``).
        n_envs: Environments stepped together.
        n_steps: Steps per environment in each PPO roll-out (SB3's ``n_steps``); the
            minibatch is 64 or the whole roll-out, whichever is smaller.
        normalize_reward: Standardise the learned reward by running statistics (imitation's
            ``NormalizedRewardNet``): its scale is arbitrary, PPO's step sizes are not.

    Raises:
        ConfigError: Unknown id or ``n_steps * n_envs`` below 2.
        ModelError: The reward model does not fit the spaces.
    """
    if n_steps * n_envs < 2:
        raise ConfigError(f"n_steps {n_steps} * n_envs {n_envs}: PPO needs a roll-out of at least 2 steps")
    if reward is None:
        venv: Any = make_env(env_id, n_envs=n_envs, seed=seed)
    else:
        venv = make_learned_reward_env(env_id, reward, n_envs=n_envs, seed=seed, normalize_reward=normalize_reward)
    batch_size = min(64, n_steps * n_envs)
    return PPO("MlpPolicy", venv, n_steps=n_steps, batch_size=batch_size, seed=seed, verbose=0, device="cpu")


def evaluate_true_return(policy: Any, env_id: str, *, n_episodes: int, seed: int) -> np.ndarray:
    """True returns of ``n_episodes`` episodes of ``policy`` (deterministic actions).

    The environment has ``Monitor`` innermost and no reward wrapper, so the returns are
    sums of the environment's own rewards (SB3's ``evaluate_policy`` reads them from ``Monitor``).

    Returns:
        ``(n_episodes,) float64`` episode returns.
    """
    venv = make_env(env_id, n_envs=1, seed=seed)
    try:
        returns, _ = evaluate_policy(policy, venv, n_eval_episodes=n_episodes, deterministic=True,
                                     return_episode_rewards=True)
    finally:
        venv.close()
    return np.asarray(returns, dtype=np.float64)


def write_curves(rows: Sequence[dict[str, float]], folder: Path, *, title: str) -> tuple[Path, Path]:
    """Write ``curves.csv`` (:data:`CURVE_COLUMNS`) and ``curves.png`` into ``folder``.

    The plot has two panels against environment steps, one line per seed: the mean true
    return of the episodes finished in each roll-out, and their mean learned return (left
    empty when training on the true reward).

    Returns:
        The two paths.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    csv_path, png_path = folder / "curves.csv", folder / "curves.png"
    with csv_path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CURVE_COLUMNS)
        writer.writeheader()
        writer.writerows({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
                         for row in rows)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for seed in sorted({int(r["seed"]) for r in rows}):
        own = [r for r in rows if int(r["seed"]) == seed]
        steps = [r["step"] for r in own]
        for ax, key in zip(axes, ("true_return", "learned_return"), strict=True):
            ax.plot(steps, [r[key] for r in own], marker=".", label=f"seed {seed}")
    axes[0].set(xlabel="environment steps", ylabel="mean episode return", title="true return")
    axes[1].set(xlabel="environment steps", ylabel="mean episode return", title="learned return")
    axes[0].legend(fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return csv_path, png_path
