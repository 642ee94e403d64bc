"""Reward models for Gymnasium environments: collect roll-outs, fit R(s, a), train PPO on it, learn from preferences.

The four verbs of ``rewardkit rl``, each a short composition of :mod:`rewardkit.rl`,
:mod:`rewardkit.training` and the store:

* :func:`collect`: roll-outs of a random or a saved PPO policy, saved as transitions;
* :func:`fit`: a state-action reward model from a transitions file (MSE on the true reward)
  or a preference file (Bradley-Terry on segment pairs), evaluated on held-out data against
  the true reward, optionally committed;
* :func:`train`: PPO on the frozen learned reward (or the true one), evaluated on the true
  return over seeds, curves and policies written to the run folder;
* :func:`learn`: the preference loop (:class:`~rewardkit.rl.comparisons.PreferenceComparisons`),
  the learned reward model committed with its query count and true-return metrics.

Every argument, data file, environment id and reward model is checked before anything is
written: a refusal leaves the run folder absent and the repository as it was.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from rewardkit.api.checks import check_output_path
from rewardkit.data.transitions import Transitions, fingerprint, load_transitions, read_npz, save_transitions
from rewardkit.errors import ConfigError, DataError, ModelError, RewardkitError
from rewardkit.models.ensemble import RewardEnsemble
from rewardkit.models.loading import load_reward_model, reward_model_kind
from rewardkit.models.state_action import StateActionRewardModel
from rewardkit.rl.envs import check_env_id, make_env
from rewardkit.rl.preferences import PREFERENCES_FORMAT, PreferenceDataset, SyntheticGatherer
from rewardkit.store import Commit, Repository

#: Confidence level of every interval reported here.
LEVEL = 0.95


# ---------------------------------------------------------------------------------------------- collect
@dataclass(frozen=True)
class CollectResult:
    """Roll-outs saved to a file.

    Attributes:
        path: The transitions file written.
        env_id: The environment.
        n_steps: Transitions recorded.
        n_episodes: Episodes ended in them (terminated or truncated, the last cut by the
            budget included).
        mean_return: Mean true return of those episodes.
        fingerprint: :func:`rewardkit.data.transitions.fingerprint` of the record.
    """

    path: Path
    env_id: str
    n_steps: int
    n_episodes: int
    mean_return: float
    fingerprint: str


def collect(env_id: str, n_steps: int, out: str | Path, *, policy: str | None = None, n_envs: int = 4,
            seed: int = 0) -> CollectResult:
    """Run a random or saved policy in ``env_id`` and save ``n_steps`` transitions to ``out``.

    Args:
        env_id: A registered Gymnasium id.
        n_steps: Transitions to record over all environments.
        out: ``.npz`` or ``.parquet`` file to write (atomically).
        policy: None or ``"random"`` for uniformly random actions, else the ``.zip`` of an
            SB3 PPO policy (as ``rewardkit rl train`` saves them).
        n_envs: Environments stepped together.
        seed: Environment ``i`` is reset with ``seed + i``.

    Raises:
        ConfigError: Unknown id, a budget below 1, or a policy for other spaces.
        DataError: ``out`` has another suffix.
        ModelError: ``policy`` is not a readable SB3 PPO ``.zip``.
    """
    from rewardkit.rl.rollout import collect as rollout

    check_env_id(env_id)
    out = check_output_path(out, "transitions file", "--out", folder=False)
    if out.suffix.lower() not in (".npz", ".parquet"):
        raise DataError(f"{out}: unsupported file type '{out.suffix or 'no extension'}'; use .npz or .parquet")
    agent = None if policy in (None, "random") else load_policy(policy)
    transitions = rollout(env_id, n_steps, n_envs=n_envs, policy=agent, seed=seed)
    save_transitions(transitions, out)
    returns = episode_returns(transitions)
    return CollectResult(out, env_id, len(transitions), len(returns),
                         float(returns.mean()) if len(returns) else math.nan, fingerprint(transitions))


def load_policy(path: str | Path) -> Any:
    """A PPO policy saved by SB3 (``model.save``), for acting.

    Raises:
        ModelError: No such file, or not an SB3 PPO archive.
    """
    from stable_baselines3 import PPO

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"policy {path}: no such file; pass 'random' or a .zip saved by `rewardkit rl train`")
    try:
        return PPO.load(path, device="cpu")
    except Exception as exc:  # zipfile/pickle/key errors of a file that is not a PPO archive
        raise ModelError(f"policy {path} is not a stable-baselines3 PPO .zip ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''})") from None


def episode_returns(transitions: Transitions) -> np.ndarray:
    """``(E,) float64`` true return of each episode ending in ``transitions`` (ends: ``dones``)."""
    ends = np.flatnonzero(transitions.dones)
    sums = np.cumsum(transitions.rews, dtype=np.float64)
    totals = sums[ends]
    return np.diff(totals, prepend=0.0)


# ---------------------------------------------------------------------------------------------- fit
@dataclass(frozen=True)
class FitResult:
    """A reward model fitted to a data file, evaluated on a held-out part of it.

    Attributes:
        model_dir: The saved model folder.
        env_id: The environment the model is for.
        objective: ``"mse"`` (transitions) or ``"preferences"`` (Bradley-Terry on segment pairs).
        n_train: Transitions or pairs trained on.
        n_heldout: Transitions or pairs held out.
        metrics: ``validation/...`` metrics: ``mse`` or ``preference_accuracy``, and
            ``reward_correlation`` (Pearson, learned vs true reward per held-out transition).
        params: What the commit stores: data fingerprint, env id, objective, query count, schedule.
        losses: Mean training loss per epoch.
        commit: The commit, with a commit message; else None.
    """

    model_dir: Path
    env_id: str
    objective: str
    n_train: int
    n_heldout: int
    metrics: dict[str, float]
    params: dict[str, Any]
    losses: list[float]
    commit: Commit | None = None


def fit(
    data: str | Path,
    out: str | Path,
    *,
    env_id: str | None = None,
    ensemble: int = 1,
    epochs: int = 20,
    lr: float = 1e-3,
    batch_size: int | None = None,
    seed: int = 0,
    heldout_fraction: float = 0.2,
    hidden_sizes: tuple[int, ...] = (256, 256),
    commit_message: str | None = None,
    repo: Repository | None = None,
) -> FitResult:
    """Fit a state-action reward model to transitions (MSE) or preferences (Bradley-Terry) in ``data``.

    The file is read and checked against the environment's spaces before any model is built.
    Transitions are split by whole episodes, preference pairs by pair; ``heldout_fraction``
    of them (seeded) are held out for the metrics.

    Args:
        data: A transitions file (``.npz``/``.parquet``, :func:`~rewardkit.data.transitions.save_transitions`)
            or a preference dataset (``.npz``, :meth:`~rewardkit.rl.preferences.PreferenceDataset.save`).
        out: Folder to save the model in (``config.json`` + ``model.safetensors``).
        env_id: The environment, needed when the file does not name one (then recorded in
            the commit); must agree with the file's otherwise.
        ensemble: Members (1: a single model).
        epochs: Passes over the training part.
        lr: Adam learning rate.
        batch_size: Transitions (or pairs) per step; default 256 transitions or 32 pairs.
        seed: Seed of the split, the initialisation and the minibatch order.
        heldout_fraction: Share held out, in (0, 1).
        hidden_sizes: Widths of the MLP's hidden layers.
        commit_message: Commit the model with this message (None: do not commit).
        repo: The repository; discovered when None.

    Raises:
        DataError: The file is unreadable, invalid, does not fit the environment's spaces,
            or is too small to hold some data out.
        ConfigError: No or conflicting env id, unknown env id, or a setting out of range.
        OutputError: ``out`` cannot be written.
    """
    if ensemble < 1 or not 0 < heldout_fraction < 1:
        raise ConfigError(f"ensemble {ensemble}, held-out fraction {heldout_fraction}: need ensemble >= 1 and a "
                          "fraction in (0, 1)")
    record = load_training_data(data)
    env_id = _env_of(record, env_id, data)
    spaces = environment_spaces(env_id)
    check_data_spaces(record, *spaces, where=str(data))
    out = check_output_path(out, "model folder", "--out", folder=True)
    target = (repo or Repository.discover()) if commit_message else None
    rng = np.random.default_rng(seed)
    model = new_reward_model(*spaces, ensemble=ensemble, seed=seed, hidden_sizes=hidden_sizes)
    pairs = isinstance(record, PreferenceDataset)
    schedule = {"epochs": epochs, "batch_size": batch_size or (32 if pairs else 256), "lr": lr, "seed": seed}
    if isinstance(record, PreferenceDataset):
        train_part, heldout = _split_pairs(record, heldout_fraction, rng, str(data))
        from rewardkit.training.segments import fit_preferences

        losses = fit_preferences(model, train_part.fragments1, train_part.fragments2, train_part.preferences,
                                 **schedule)
        metrics = preference_metrics(model, heldout)
        n_train, n_held, objective, queries = len(train_part), len(heldout), "preferences", len(train_part)
        data_print = preference_fingerprint(record)
    else:
        train_part, held = _split_episodes(record, heldout_fraction, rng, str(data))
        from rewardkit.training.regression import fit_regression

        losses = fit_regression(model, train_part.obs, train_part.acts, train_part.rews, train_part.next_obs,
                                **schedule)
        metrics = regression_metrics(model, held)
        n_train, n_held, objective, queries = len(train_part), len(held), "mse", 0
        data_print = fingerprint(record)
    params = {"env_id": env_id, "objective": objective, "queries": queries, "data": str(data),
              "data_fingerprint": data_print, "ensemble": ensemble, **schedule}
    model.save(out)
    commit = _commit(target, out, commit_message, params, metrics, data_print) if target else None
    return FitResult(out, env_id, objective, n_train, n_held, metrics, params, losses, commit)


def load_training_data(path: str | Path) -> Transitions | PreferenceDataset:
    """A transitions file, or a preference dataset (a ``.npz`` whose ``format`` is ``rewardkit-preferences/1``).

    Raises:
        DataError: As :func:`~rewardkit.data.transitions.load_transitions` or
            :meth:`~rewardkit.rl.preferences.PreferenceDataset.load`.
    """
    path = Path(path)
    if path.suffix.lower() == ".npz" and path.is_file():
        tag = read_npz(path).get("format")
        if tag is not None and str(tag) == PREFERENCES_FORMAT:
            return PreferenceDataset.load(path)
    return load_transitions(path)


def _env_of(record: Transitions | PreferenceDataset, env_id: str | None, data: str | Path) -> str:
    """The file's env id, or ``env_id``; refuses none or two that differ."""
    own = record.fragments1.env_id if isinstance(record, PreferenceDataset) else record.env_id
    if own and env_id and own != env_id:
        raise ConfigError(f"{data} was collected in '{own}' but --env is '{env_id}'; drop --env or pass '{own}'")
    if not (own or env_id):
        raise ConfigError(f"{data} does not name its environment; pass --env ENV_ID (it is recorded with the model)")
    return str(own or env_id)


def environment_spaces(env_id: str) -> tuple[Any, Any]:
    """``(observation_space, action_space)`` of ``env_id``.

    Raises:
        ConfigError: Unknown id, or the environment cannot be built.
    """
    venv = make_env(env_id, n_envs=1)
    try:
        return venv.observation_space, venv.action_space
    finally:
        venv.close()


def check_data_spaces(record: Transitions | PreferenceDataset, observation_space: Any, action_space: Any, *,
                      where: str) -> None:
    """Refuse data whose observations or actions the environment's spaces cannot have produced.

    Raises:
        DataError: Names the file, the field, the first bad row, and what the space expects.
    """
    from gymnasium import spaces

    parts = ([("fragments1.", record.fragments1), ("fragments2.", record.fragments2)]
             if isinstance(record, PreferenceDataset) else [("", record)])
    lead = 2 if isinstance(record, PreferenceDataset) else 1
    obs_dim = spaces.flatdim(observation_space)
    for prefix, part in parts:
        if math.prod(part.obs.shape[lead:]) != obs_dim:
            raise DataError(f"{where}: field '{prefix}obs' row 0: {math.prod(part.obs.shape[lead:])} values per "
                            f"observation, but the environment's {observation_space} has {obs_dim}")
        acts = part.acts
        if isinstance(action_space, spaces.Discrete):
            bad = np.flatnonzero((acts.reshape(-1) < action_space.start)
                                 | (acts.reshape(-1) >= action_space.start + action_space.n)
                                 | (acts.reshape(-1) != np.round(acts.reshape(-1))))
            if acts.shape[lead:] != () or bad.size:
                row = int(bad[0]) if bad.size else 0
                raise DataError(f"{where}: field '{prefix}acts' row {row}: expected one integer action in "
                                f"{action_space} per step, got shape {acts.shape}")
        elif math.prod(acts.shape[lead:]) != spaces.flatdim(action_space):
            raise DataError(f"{where}: field '{prefix}acts' row 0: {math.prod(acts.shape[lead:])} values per action, "
                            f"but the environment's {action_space} has {spaces.flatdim(action_space)}")


def new_reward_model(observation_space: Any, action_space: Any, *, ensemble: int, seed: int,
                     hidden_sizes: tuple[int, ...] = (256, 256)) -> nn.Module:
    """A fresh ``StateActionRewardModel`` for the spaces, or a ``RewardEnsemble`` of ``ensemble`` of them (seeded)."""
    import torch

    template = StateActionRewardModel.for_spaces(observation_space, action_space, hidden_sizes=hidden_sizes)
    if ensemble > 1:
        return RewardEnsemble.from_config(template.config, ensemble, seed=seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return StateActionRewardModel(template.config)


def _split_episodes(t: Transitions, fraction: float, rng: np.random.Generator, where: str
                    ) -> tuple[Transitions, Transitions]:
    """Whole episodes held out (by ``dones``), so no held-out step is a neighbour of a training step."""
    episode = np.concatenate([[0], np.cumsum(t.dones)[:-1]])
    ids = np.unique(episode)
    if len(ids) < 2:
        raise DataError(f"{where}: holds {len(ids)} episode; at least 2 are needed to hold one out "
                        "(collect more steps)")
    held_ids = rng.choice(ids, size=max(1, round(fraction * len(ids))), replace=False)
    held = np.isin(episode, held_ids)
    return _take(t, ~held), _take(t, held)


def _take(t: Transitions, rows: np.ndarray) -> Transitions:
    return Transitions(t.obs[rows], t.acts[rows], t.rews[rows], t.next_obs[rows], t.terminated[rows],
                       t.truncated[rows], t.env_id)


def _split_pairs(d: PreferenceDataset, fraction: float, rng: np.random.Generator, where: str
                 ) -> tuple[PreferenceDataset, PreferenceDataset]:
    if len(d) < 2:
        raise DataError(f"{where}: holds {len(d)} pair; at least 2 are needed to hold one out")
    held = np.zeros(len(d), dtype=bool)
    held[rng.choice(len(d), size=max(1, round(fraction * len(d))), replace=False)] = True
    parts = [PreferenceDataset(d.fragments1.take(m), d.fragments2.take(m), d.preferences[m]) for m in (~held, held)]
    return parts[0], parts[1]


def regression_metrics(model: nn.Module, held: Transitions) -> dict[str, float]:
    """``validation/mse`` and ``validation/reward_correlation`` on held-out transitions."""
    predicted = model.score(held.obs, held.acts, held.next_obs).astype(np.float64)
    return {"validation/mse": float(np.mean((predicted - held.rews) ** 2)),
            "validation/reward_correlation": _pearson(predicted, held.rews)}


def preference_metrics(model: nn.Module, held: PreferenceDataset) -> dict[str, float]:
    """``validation/preference_accuracy`` on held-out pairs and ``validation/reward_correlation`` on their steps."""
    from rewardkit.rl.preferences import preference_accuracy

    accuracy = preference_accuracy(model, held)
    steps = [np.concatenate([getattr(f, name).reshape(-1, *getattr(f, name).shape[2:])
                             for f in (held.fragments1, held.fragments2)]) for name in ("obs", "acts", "next_obs")]
    true = np.concatenate([held.fragments1.rews.reshape(-1), held.fragments2.rews.reshape(-1)])
    return {"validation/preference_accuracy": accuracy,
            "validation/reward_correlation": _pearson(model.score(*steps).astype(np.float64), true)}


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation; NaN when either side is constant."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) < 2 or x.std() == 0 or y.std() == 0:
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])


def preference_fingerprint(dataset: PreferenceDataset) -> str:
    """SHA-256 of a preference dataset: both fragment sets' fingerprints and the labels' bytes."""
    import hashlib

    digest = hashlib.sha256(PREFERENCES_FORMAT.encode() + b"\n")
    for fragments in (dataset.fragments1, dataset.fragments2):
        digest.update(fingerprint(fragments).encode() + b"\n")
    digest.update(np.ascontiguousarray(dataset.preferences, dtype="<f4").tobytes())
    return digest.hexdigest()


def _commit(repo: Repository, folder: Path, message: str, params: dict[str, Any], metrics: dict[str, float],
            data_fingerprint: str | None) -> Commit:
    finite = {k: v for k, v in metrics.items() if isinstance(v, int | float) and math.isfinite(v)}
    return repo.commit_dir(folder, message, params=params, metrics=finite, data_fingerprint=data_fingerprint)


# ---------------------------------------------------------------------------------------------- reward models
@contextmanager
def open_reward_model(ref: str | Path, repo: Repository | None = None
                      ) -> Iterator[tuple[nn.Module, str, Commit | None]]:
    """A state-action reward model from a folder or a ref, checked by kind before its weights are read.

    Yields:
        ``(model, name, commit)``: the model (a ``StateActionRewardModel`` or an ensemble of
        them), how to name it (the folder, or ``ref (commit id)``), the commit or None.

    Raises:
        RefError: Not a folder and not a ref of the repository.
        ModelError: A text or task-conditioned model, or a damaged folder.
    """
    if Path(ref).is_dir():
        yield load_reward_model(ref, kind="state-action"), str(ref), None
        return
    repo = repo or Repository.discover()
    commit = repo.resolve(str(ref))
    with tempfile.TemporaryDirectory(prefix="rewardkit-") as scratch:
        folder = Path(scratch) / "model"
        repo.checkout(commit, folder, weights=False)
        kind = reward_model_kind(folder)
        if kind != "state-action":
            raise ModelError(f"{ref} ({commit.id[:10]}) holds a {kind} reward model, but a state-action reward "
                             "model is needed here (train one with `rewardkit rl fit` or `rewardkit rl learn`)")
        repo.checkout(commit, folder, force=True)
        yield load_reward_model(folder, kind="state-action"), f"{ref} ({commit.id[:10]})", commit


def check_model_spaces(model: nn.Module, env_id: str) -> None:
    """Refuse a reward model built for other spaces than ``env_id``'s.

    Raises:
        ModelError: Names both (see :meth:`StateActionRewardModel.check_spaces`).
    """
    member = model.members[0] if isinstance(model, RewardEnsemble) else model
    member.check_spaces(*environment_spaces(env_id))


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
    commit = _commit(target, model_dir, commit_message, params, metrics, params["data_fingerprint"]) \
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
        pairs = Fragmenter(seed=loop.seed + 1)(transitions, loop.fragment_length, n_pairs)
    except ConfigError:
        return None
    return SyntheticGatherer(seed=loop.seed)(*pairs)


# ---------------------------------------------------------------------------------------------- diff: EPIC
@dataclass(frozen=True)
class RewardDistance:
    """EPIC distance between two state-action reward models, for ``rewardkit diff``.

    Attributes:
        source: The transitions it is computed on: ``"<n> random steps of <env>"`` or the
            ``--probe`` file.
        epic: The distance, interval and sample sizes, or None (see ``missing``).
        missing: Why there is no distance; None when there is one.
    """

    source: str
    epic: Any = None
    missing: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {"source": self.source, "epic": asdict(self.epic) if self.epic else None, "missing": self.missing}


def commit_kind(repo: Repository, commit: Commit) -> str:
    """What a commit's model scores (``"text"``, ``"state-action"``, ``"task-conditioned"``), from its config alone."""
    from rewardkit.store.adapters import model_files

    config = model_files(repo, commit).get("config.json")
    if config is None:
        return "text"
    with tempfile.TemporaryDirectory(prefix="rewardkit-") as scratch:
        (Path(scratch) / "config.json").write_bytes(config)
        try:
            return reward_model_kind(scratch)
        except ModelError:
            return "text"


def reward_distance(repo: Repository, a: Commit, b: Commit, *, probe: str | Path | None = None,
                    n_samples: int = 1000, discount: float = 0.99, seed: int = 0) -> RewardDistance:
    """EPIC distance (Gleave et al. 2021) between the state-action reward models of two commits.

    The transitions are read from ``probe`` (a transitions file) when given, else
    ``n_samples`` steps of a uniformly random policy in the environment the commits'
    params name (``env_id``, B's first), seeded; the coverage distributions for the
    canonicalisation are drawn from them (see :func:`~rewardkit.evaluation.epic.epic_distance`).

    Raises:
        DataError: ``probe`` cannot be read or does not fit the models.
    """
    from rewardkit.evaluation.epic import epic_distance
    from rewardkit.rl.rollout import collect as rollout

    if probe is not None:
        transitions, source = load_transitions(probe), str(probe)
    else:
        env_id = next((c.params["env_id"] for c in (b, a) if (c.params or {}).get("env_id")), None)
        if env_id is None:
            return RewardDistance("", missing="neither commit records its environment (params env_id); pass --probe "
                                  "FILE with transitions to compare the rewards on")
        transitions, source = rollout(env_id, n_samples, seed=seed), f"{n_samples} random steps of {env_id}"
    with open_reward_model(a.id, repo) as (model_a, _, _), open_reward_model(b.id, repo) as (model_b, _, _):
        try:
            result = epic_distance(model_a.score, model_b.score, transitions.obs, transitions.acts,
                                   transitions.next_obs, discount=discount, seed=seed)
        except ModelError as exc:
            return RewardDistance(source, missing=f"the transitions do not fit the models: {exc}")
        except RewardkitError as exc:
            return RewardDistance(source, missing=str(exc))
    return RewardDistance(source, result)
