"""``rewardkit rl collect`` and ``rewardkit rl fit``: roll-outs saved as transitions, R(s, a) fitted to a data file."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from rewardkit.api.checks import check_output_path
from rewardkit.api.rl.models import commit_model, environment_spaces, new_reward_model
from rewardkit.data.transitions import Transitions, fingerprint, load_transitions, read_npz, save_transitions
from rewardkit.errors import ConfigError, DataError, ModelError
from rewardkit.rl.envs import check_env_id
from rewardkit.rl.preferences import PREFERENCES_FORMAT, PreferenceDataset
from rewardkit.store import Commit, Repository


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
    init_from: str | None = None,
    freeze: Sequence[str] = (),
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
        init_from: Transfer: start from the stored state-action model this ref names (its
            observation normaliser kept; ``ensemble`` and ``hidden_sizes`` are then its own)
            and record it as the commit's lineage (``params["base"]``, ``params["frozen"]``).
        freeze: With ``init_from``: fnmatch patterns of parameters kept as stored (``mlp.0.*``).

    Raises:
        DataError: The file is unreadable, invalid, does not fit the environment's spaces,
            or is too small to hold some data out.
        ConfigError: No or conflicting env id, unknown env id, a setting out of range, or a
            freeze pattern that matches no parameter (or ``freeze`` without ``init_from``).
        ModelError: ``init_from`` names a text or task-conditioned model, or one for other spaces.
        RefError: ``init_from`` names no commit.
        OutputError: ``out`` cannot be written.
    """
    if ensemble < 1 or not 0 < heldout_fraction < 1:
        raise ConfigError(f"ensemble {ensemble}, held-out fraction {heldout_fraction}: need ensemble >= 1 and a "
                          "fraction in (0, 1)")
    record = load_training_data(data)
    env_id = _env_of(record, env_id, data)
    spaces = environment_spaces(env_id)
    check_data_spaces(record, *spaces, where=str(data))
    if freeze and not init_from:
        raise ConfigError("--freeze needs --init-from REF: only a stored model has parameters worth keeping")
    target = (repo or Repository.discover()) if commit_message or init_from else None
    from rewardkit.api.rl.reuse import transfer_start

    start = transfer_start(target, init_from, env_id, freeze) if init_from else None
    out = check_output_path(out, "model folder", "--out", folder=True)
    rng = np.random.default_rng(seed)
    model = start.model if start else new_reward_model(*spaces, ensemble=ensemble, seed=seed,
                                                       hidden_sizes=hidden_sizes)
    pairs = isinstance(record, PreferenceDataset)
    schedule = {"epochs": epochs, "batch_size": batch_size or (32 if pairs else 256), "lr": lr, "seed": seed}
    keep = {"update_normalizer": start is None}
    if isinstance(record, PreferenceDataset):
        train_part, heldout = _split_pairs(record, heldout_fraction, rng, str(data))
        from rewardkit.training.segments import fit_preferences

        losses = fit_preferences(model, train_part.fragments1, train_part.fragments2, train_part.preferences,
                                 **schedule, **keep)
        metrics = preference_metrics(model, heldout)
        n_train, n_held, objective, queries = len(train_part), len(heldout), "preferences", len(train_part)
        data_print = preference_fingerprint(record)
    else:
        train_part, held = _split_episodes(record, heldout_fraction, rng, str(data))
        from rewardkit.training.regression import fit_regression

        losses = fit_regression(model, train_part.obs, train_part.acts, train_part.rews, train_part.next_obs,
                                **schedule, **keep)
        if record.terminated.any():  # the true rewards' level is meaningful: ending the episode is worth 0
            from rewardkit.models.state_action import mark_zero_after_termination

            mark_zero_after_termination(model)
        metrics = regression_metrics(model, held)
        n_train, n_held, objective, queries = len(train_part), len(held), "mse", 0
        data_print = fingerprint(record)
    params = {"env_id": env_id, "objective": objective, "queries": queries, "data": str(data),
              "data_fingerprint": data_print, "ensemble": len(getattr(model, "members", [model])), **schedule,
              **(start.lineage() if start else {})}
    model.save(out)
    commit = commit_model(target, out, commit_message, params, metrics, data_print) if commit_message else None
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
