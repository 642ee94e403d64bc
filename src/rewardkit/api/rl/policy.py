"""``rewardkit rl train`` and ``rewardkit rl learn``: PPO on a frozen learned reward, and the preference loop."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from rewardkit.api.checks import check_output_path
from rewardkit.api.rl.data import preference_fingerprint
from rewardkit.api.rl.models import (
    check_model_spaces,
    commit_model,
    environment_spaces,
    new_reward_model,
    open_reward_model,
)
from rewardkit.errors import ConfigError
from rewardkit.rl.envs import check_env_id
from rewardkit.rl.preferences import PreferenceDataset, SyntheticGatherer
from rewardkit.store import Commit, Repository

#: Confidence level of every interval reported here.
LEVEL = 0.95


# ---------------------------------------------------------------------------------------------- train
@dataclass(frozen=True)
class PolicyRun:
    """PPO trained on a reward, per seed, and its true return.

    Attributes:
        out_dir: Run folder (curves, policies, summary).
        env_id: The environment.
        reward: What the agent was rewarded by: ``"true reward"`` or the reward model's name.
        seeds: The seeds.
        returns: Per seed, the mean true return over the evaluation episodes.
        mean_return: Mean over seeds.
        ci_low: Lower end of the percentile bootstrap interval of the mean, over seeds.
        ci_high: Upper end.
        policies: Each seed's ``policy-seed<S>.zip``.
        curves: ``curves.csv`` and ``curves.png``.
    """

    out_dir: Path
    env_id: str
    reward: str
    seeds: list[int]
    returns: list[float]
    mean_return: float
    ci_low: float
    ci_high: float
    policies: list[Path]
    curves: tuple[Path, Path]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        values = asdict(self)
        return {k: (str(v) if isinstance(v, Path) else [str(p) for p in v] if k in ("policies", "curves") else v)
                for k, v in values.items()}


def train(
    env_id: str,
    reward: str | Path | None,
    out: str | Path,
    *,
    steps: int = 20_000,
    seeds: int = 3,
    n_envs: int = 4,
    n_steps: int = 256,
    eval_episodes: int = 10,
    normalize_reward: bool = True,
    repo: Repository | None = None,
    progress: bool = False,
) -> PolicyRun:
    """Train PPO on the frozen learned reward ``reward`` (None: the true reward) and report the true return.

    Args:
        env_id: A registered Gymnasium id.
        reward: A state-action reward model: a folder or a ref of ``repo``; None trains on
            the environment's reward (the baseline).
        out: Run folder; gets ``curves.csv``, ``curves.png`` and ``policy-seed<S>.zip``.
        steps: PPO environment steps per seed.
        seeds: Seeds 0 to ``seeds - 1`` (agent and environments).
        n_envs: Environments stepped together.
        n_steps: Steps per environment in each PPO roll-out.
        eval_episodes: Episodes of the trained policy (deterministic) on the true reward, per seed.
        normalize_reward: Standardise the learned reward by running statistics.
        repo: The repository, for a ref; discovered when None.
        progress: Show a progress bar (stderr).

    Raises:
        ConfigError: Unknown env id or a budget out of range.
        ModelError: ``reward`` is a text (or task-conditioned) model, or was built for other spaces.
        RefError: ``reward`` is neither a folder nor a ref.
        OutputError: ``out`` cannot be written.
    """
    from rewardkit.rl.ppo import RecordingReward, ReturnCurves, StepProgress, make_ppo, progress_bar, write_curves

    check_env_id(env_id)
    if steps < 1 or seeds < 1 or eval_episodes < 1:
        raise ConfigError(f"steps {steps}, seeds {seeds}, eval episodes {eval_episodes}: each must be at least 1")
    out = check_output_path(out, "run folder", "--out", folder=True)
    with _maybe_reward(reward, repo) as (model, name):
        if model is not None:
            check_model_spaces(model, env_id)
        rows, returns, policies = [], [], []
        with progress_bar(steps * seeds, f"PPO on {name}", progress) as advance:
            for seed in range(seeds):
                recorder = RecordingReward(model) if model is not None else None
                agent = make_ppo(env_id, recorder, seed=seed, n_envs=n_envs, n_steps=n_steps,
                                 normalize_reward=normalize_reward)
                curves = ReturnCurves(seed, recorder)
                agent.learn(steps, callback=[curves, StepProgress(advance)])
                rows += curves.rows
                returns.append(float(evaluate_true_return_mean(agent, env_id, eval_episodes, seed)))
                out.mkdir(parents=True, exist_ok=True)
                agent.save(out / f"policy-seed{seed}.zip")
                policies.append(out / f"policy-seed{seed}.zip")
    low, high = _seed_ci(returns)
    paths = write_curves(rows, out, title=f"PPO on {name}, {env_id}")
    return PolicyRun(out, env_id, name, list(range(seeds)), returns, float(np.mean(returns)), low, high,
                     policies, paths)


@contextmanager
def _maybe_reward(reward: str | Path | None, repo: Repository | None) -> Iterator[tuple[nn.Module | None, str]]:
    if reward is None or str(reward) == "none":
        yield None, "true reward"
        return
    with open_reward_model(reward, repo) as (model, name, _):
        yield model, name


def evaluate_true_return_mean(agent: Any, env_id: str, episodes: int, seed: int) -> float:
    """Mean true return of ``episodes`` deterministic episodes (evaluation environments seeded apart from training)."""
    from rewardkit.rl.ppo import evaluate_true_return

    return float(evaluate_true_return(agent, env_id, n_episodes=episodes, seed=10_000 + seed).mean())


def _seed_ci(values: list[float]) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over seeds (a single seed gives its value twice)."""
    from rewardkit.evaluation.metrics import bootstrap_ci

    if len(values) == 1:
        return values[0], values[0]
    return bootstrap_ci(values, level=LEVEL)


# ---------------------------------------------------------------------------------------------- learn
@dataclass(frozen=True)
class LearnRun:
    """A reward model learned from preferences while PPO trained on it.

    Attributes:
        out_dir: Run folder (``reward_model/``, ``preferences.npz``, curves, policy).
        model_dir: The reward model folder.
        env_id: The environment.
        n_queries: Labelled pairs (skipped queries not counted).
        true_return: Mean true return of the final policy over the evaluation episodes.
        ci_low: Percentile bootstrap interval of that mean, over episodes.
        ci_high: Upper end.
        metrics: What the commit stores as metrics.
        params: What the commit stores as params.
        curves: ``curves.csv`` and ``curves.png``.
        commit: The commit, with a commit message; else None.
    """

    out_dir: Path
    model_dir: Path
    env_id: str
    n_queries: int
    true_return: float
    ci_low: float
    ci_high: float
    metrics: dict[str, float]
    params: dict[str, Any]
    curves: tuple[Path, Path]
    commit: Commit | None = None


@dataclass
class TeacherKnobs:
    """B-Pref's synthetic teacher settings (see :class:`~rewardkit.rl.preferences.SyntheticGatherer`)."""

    beta: float = math.inf
    gamma: float = 1.0
    mistake_rate: float = 0.0
    skip_threshold: float | None = None
    equal_threshold: float = 0.0


@dataclass
class LearnSettings:
    """The loop's budgets and choices (see :class:`~rewardkit.rl.comparisons.PreferenceComparisons`)."""

    queries: int = 100
    steps: int = 20_000
    segment_length: int = 25
    query_selection: str = "random"
    ensemble: int = 1
    iterations: int = 5
    n_envs: int = 4
    n_steps: int = 256
    reward_epochs: int = 10
    eval_episodes: int = 10
    seed: int = 0
    teacher: TeacherKnobs = field(default_factory=TeacherKnobs)


def learn(env_id: str, out: str | Path, settings: LearnSettings, *, commit_message: str | None = None,
          repo: Repository | None = None, progress: bool = False) -> LearnRun:
    """Learn a reward model from synthetic preferences while PPO trains on it; save (and commit) it.

    The loop is :class:`~rewardkit.rl.comparisons.PreferenceComparisons` (Christiano et al.
    2017, imitation's structure). PPO is on-policy: every roll-out is scored by the reward
    model current when it is collected and discarded after one update, so no replay buffer
    needs PEBBLE-style relabelling when the reward model changes.

    Args:
        env_id: A registered Gymnasium id.
        out: Run folder: ``reward_model/``, ``preferences.npz`` (every labelled pair),
            ``policy.zip``, ``curves.csv``, ``curves.png``.
        settings: Budgets, query selection and teacher.
        commit_message: Commit the reward model with this message: params (env id,
            objective, query count, data fingerprint, settings) and metrics (true return of
            the final policy with its interval, preference accuracy on fresh held-out pairs).
        repo: The repository; discovered when None.
        progress: Show a progress bar (stderr).

    Raises:
        ConfigError: Unknown env id, a setting out of range, or episodes shorter than a segment.
        OutputError: ``out`` cannot be written.
    """
    from rewardkit.evaluation.metrics import bootstrap_ci
    from rewardkit.rl.comparisons import PreferenceComparisons
    from rewardkit.rl.ppo import evaluate_true_return, progress_bar, write_curves
    from rewardkit.rl.preferences import preference_accuracy

    check_env_id(env_id)
    s = settings
    if s.ensemble < 1 or s.eval_episodes < 1:
        raise ConfigError(f"ensemble {s.ensemble}, eval episodes {s.eval_episodes}: each must be at least 1")
    gatherer = SyntheticGatherer(**asdict(s.teacher), seed=s.seed)
    out = check_output_path(out, "run folder", "--out", folder=True)
    target = (repo or Repository.discover()) if commit_message else None
    model = new_reward_model(*environment_spaces(env_id), ensemble=s.ensemble, seed=s.seed)
    loop = PreferenceComparisons(env_id, model, gatherer, fragment_length=s.segment_length,
                                 query_selection=s.query_selection, n_envs=s.n_envs, n_steps=s.n_steps,
                                 reward_epochs=s.reward_epochs, seed=s.seed)
    with progress_bar(s.steps, f"preference loop on {env_id}", progress) as advance:
        rows = loop.train(s.steps, s.queries, n_iterations=s.iterations, advance=advance)
    returns = evaluate_true_return(loop.agent, env_id, n_episodes=s.eval_episodes, seed=10_000 + s.seed)
    low, high = bootstrap_ci(returns, level=LEVEL)
    heldout = _fresh_pairs(loop)
    accuracy = preference_accuracy(model, heldout) if heldout is not None else math.nan
    metrics = {"rl/true_return": float(returns.mean()), "rl/true_return_ci_low": low,
               "rl/true_return_ci_high": high, "validation/preference_accuracy": accuracy}
    dataset = loop.dataset
    assert dataset is not None  # train() refuses to run the agent without labels
    params = {"env_id": env_id, "objective": "preferences", "queries": len(dataset),
              "data_fingerprint": preference_fingerprint(dataset), "steps": s.steps,
              **{k: v for k, v in asdict(s).items() if k not in ("teacher", "steps")},
              "teacher": {k: ("inf" if isinstance(v, float) and math.isinf(v) else v)
                          for k, v in asdict(s.teacher).items()}}
    out.mkdir(parents=True, exist_ok=True)
    model_dir = model.save(out / "reward_model")
    dataset.save(out / "preferences.npz")
    loop.agent.save(out / "policy.zip")
    paths = write_curves(rows, out, title=f"preference loop, {env_id}, {len(dataset)} queries")
    commit = commit_model(target, model_dir, commit_message, params, metrics, params["data_fingerprint"]) \
        if target else None
    return LearnRun(out, model_dir, env_id, len(dataset), float(returns.mean()), low, high, metrics, params,
                    paths, commit)


def _fresh_pairs(loop: Any, n_pairs: int = 100) -> PreferenceDataset | None:
    """Pairs from fresh roll-outs of the final policy, labelled by a perfect teacher (never trained on)."""
    from rewardkit.rl.preferences import Fragmenter
    from rewardkit.rl.rollout import collect as rollout

    transitions = rollout(loop.env_id, max(2 * loop.fragment_length * 20, 1000), n_envs=loop.n_envs,
                          policy=loop.agent, seed=loop.seed + 99_999)
    try:
        pairs = Fragmenter(seed=loop.seed + 1, absorbing=loop.absorbing)(transitions, loop.fragment_length, n_pairs)
    except ConfigError:
        return None
    return SyntheticGatherer(seed=loop.seed)(*pairs)
