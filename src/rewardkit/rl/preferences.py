"""Preference comparisons between segments: fragmenter, synthetic teacher, dataset, query schedule, selection.

The names are imitation's (HumanCompatibleAI ``imitation.algorithms.preference_comparisons``),
which does not install beside our Gymnasium/SB3 versions:

* :class:`Fragmenter` (imitation's ``RandomFragmenter``) draws random pairs of segments
  ("fragments") of L steps, each inside one episode;
* :class:`SyntheticGatherer` labels a pair from the environment's true reward with B-Pref's
  simulated teacher (Lee et al. 2021, "B-Pref: Benchmarking Preference-Based RL"): rationality
  β, myopia γ, mistake rate ε, skip and equal thresholds;
* :class:`PreferenceDataset` holds the labelled pairs (``fragments1``, ``fragments2``,
  ``preferences``: the probability that fragment 1 is preferred, 0, 1 or 0.5 for a tie) and
  saves them as one ``.npz`` file (never pickled, unlike imitation's);
* :func:`query_schedule` spreads a query budget over iterations (imitation's
  ``QUERY_SCHEDULES``); :func:`select_queries` picks which candidate pairs to ask about,
  at random or where an ensemble disagrees most (B-Pref's disagreement sampling).

A round of queries, B-Pref style::

    fragments1, fragments2 = Fragmenter(seed=0)(transitions, fragment_length=50, num_pairs=10 * n)
    chosen = select_queries(fragments1, fragments2, n, disagreement=ensemble_std, seed=0)
    dataset = dataset + SyntheticGatherer(beta=math.inf)(fragments1.take(chosen), fragments2.take(chosen))
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rewardkit.data.transitions import (
    Segments,
    Transitions,
    check_arrays,
    read_npz,
    record_arrays,
    segment_starts,
    segments_from_transitions,
    write_npz,
)
from rewardkit.errors import ConfigError, DataError

if TYPE_CHECKING:
    from torch import nn

PREFERENCES_FORMAT = "rewardkit-preferences/1"

Disagreement = Callable[[Segments, Segments], np.ndarray]
"""``(fragments1, fragments2) -> (M,)`` disagreement per pair, e.g. the standard deviation over an
ensemble's members of the predicted probability that fragment 1 is preferred."""


class Fragmenter:
    """Draw random pairs of fragments (segments of L steps inside one episode), with replacement.

    Imitation's ``RandomFragmenter``: every window of L steps that does not cross an episode
    end is equally likely (so steps near episode ends are drawn less often, and episodes
    shorter than L never). A fragment is never paired with itself when another one exists.

    With ``absorbing=True`` a window may also run past the end of an episode that terminated,
    padded with zero-reward absorbing steps (:func:`~rewardkit.data.transitions.segments_from_transitions`).
    Where the task pays a constant reward until it fails (CartPole: +1 per step until the pole
    falls), fragments inside episodes all tie, and only those that reach a termination say
    anything: with the padding, failing inside the fragment costs the remaining steps'
    reward. Absorbing states are Kostrikov et al.'s (2019, "Discriminator-Actor-Critic"); like
    Christiano et al.'s (2017) fixed-length episodes, they keep an episode's end from carrying
    the answer unseen. Without termination in the roll-outs nothing changes.

    Args:
        seed: Seed of the generator; the same seed and transitions give the same pairs.
        absorbing: Pad fragments past terminated episode ends (default False: imitation's behaviour).
    """

    def __init__(self, seed: int | None = None, *, absorbing: bool = False) -> None:
        self.rng = np.random.default_rng(seed)
        self.absorbing = absorbing

    def __call__(self, transitions: Transitions, fragment_length: int, num_pairs: int) -> tuple[Segments, Segments]:
        """Draw ``num_pairs`` pairs of fragments of ``fragment_length`` steps.

        Returns:
            ``(fragments1, fragments2)``, each ``num_pairs`` segments.

        Raises:
            ConfigError: If ``num_pairs`` is below 1, or no episode has ``fragment_length`` steps.
        """
        if num_pairs < 1:
            raise ConfigError(f"num_pairs {num_pairs}: must be at least 1")
        starts = segment_starts(transitions, fragment_length, absorbing=self.absorbing)
        if starts.size == 0:
            raise ConfigError(
                f"fragment_length {fragment_length}: no episode in the {len(transitions)} transitions is that long; "
                "collect more steps or use shorter fragments"
            )
        first = self.rng.choice(starts, size=num_pairs)
        second = self.rng.choice(starts, size=num_pairs)
        while starts.size > 1 and (same := first == second).any():
            second[same] = self.rng.choice(starts, size=int(same.sum()))
        return (
            segments_from_transitions(transitions, fragment_length, starts=first, absorbing=self.absorbing),
            segments_from_transitions(transitions, fragment_length, starts=second, absorbing=self.absorbing),
        )


def preference_probability(return_diff: np.ndarray, beta: float, clip: float = 50.0) -> np.ndarray:
    """Boltzmann-rational probability that fragment 1 is preferred: ``σ(β (R1 − R2))``.

    Args:
        return_diff: ``(M,)`` ``R1 − R2``, in reward units.
        beta: Rationality β ≥ 0 (imitation's ``1 / temperature``); ``math.inf`` gives the
            perfectly rational teacher (1 if R1 > R2, 0 if R1 < R2, 0.5 if equal), 0 a coin flip.
        clip: ``β (R1 − R2)`` is clipped to ``±clip`` against overflow (imitation's threshold).

    Returns:
        ``(M,)`` float64 probabilities.
    """
    diff = np.asarray(return_diff, dtype=np.float64)
    if math.isinf(beta):
        return (np.sign(diff) + 1) / 2
    return 1 / (1 + np.exp(-np.clip(beta * diff, -clip, clip)))


@dataclass
class SyntheticGatherer:
    """B-Pref's simulated teacher: labels pairs of fragments from the environment's true reward.

    For each pair, with undiscounted returns R1, R2 (sums of the true rewards) and myopic
    returns R1_γ, R2_γ (step t of L weighted ``γ ** (L - 1 - t)``: the teacher remembers the
    end of a segment best), in B-Pref's order:

    1. skip: if ``skip_threshold`` is set and both R1 and R2 are below it, the pair is not
       asked about (dropped; B-Pref skips queries where neither segment shows anything);
    2. label: P(1 ≻ 2) = ``σ(β (R1_γ − R2_γ))``; with ``sample`` the label is drawn from it
       (0 or 1), else the probability is the label; β = inf gives 1, 0, or 0.5 on an exact tie
       (imitation's temperature 0), without drawing;
    3. mistake: each label is flipped (``1 − label``) with probability ``mistake_rate``
       (without ``sample``: the probability becomes ``ε (1 − p) + (1 − ε) p``);
    4. equal: if ``|R1 − R2| < equal_threshold`` the label is 0.5 (both equally preferable).

    The perfect teacher (β = inf, γ = 1, ε = 0, no thresholds) prefers the fragment with the
    higher true return. Thresholds are in the environment's reward units (B-Pref scales them
    by the average return of a segment; pass the scaled value).

    Attributes:
        beta: Rationality β ≥ 0; ``math.inf`` (default) for a perfectly rational teacher.
        gamma: Myopia γ in [0, 1]; 1 (default) weighs every step equally.
        mistake_rate: ε in [0, 1], the chance a label is flipped.
        skip_threshold: Skip a pair whose returns are both below this; None never skips.
        equal_threshold: Label 0.5 when the returns differ by less than this (≥ 0).
        sample: Draw 0/1 labels (True, default) or return probabilities.
        seed: Seed of the generator for sampling and mistakes.

    Raises:
        ConfigError: If a knob is outside its range (the message names it).
    """

    beta: float = math.inf
    gamma: float = 1.0
    mistake_rate: float = 0.0
    skip_threshold: float | None = None
    equal_threshold: float = 0.0
    sample: bool = True
    seed: int | None = None
    rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        checks = {
            "beta": self.beta >= 0,
            "gamma": 0 <= self.gamma <= 1,
            "mistake_rate": 0 <= self.mistake_rate <= 1,
            "equal_threshold": self.equal_threshold >= 0,
        }
        for name, ok in checks.items():
            if not ok or math.isnan(getattr(self, name)):
                limits = {"beta": ">= 0 (inf: perfectly rational)", "equal_threshold": ">= 0"}
                raise ConfigError(f"{name} {getattr(self, name)}: must be {limits.get(name, 'in [0, 1]')}")
        if self.skip_threshold is not None and math.isnan(self.skip_threshold):
            raise ConfigError("skip_threshold nan: must be a number or None")
        self.rng = np.random.default_rng(self.seed)

    def label(self, fragments1: Segments, fragments2: Segments) -> tuple[np.ndarray, np.ndarray]:
        """Label every pair, and say which were asked about.

        Args:
            fragments1: M segments.
            fragments2: M segments of the same length.

        Returns:
            ``(preferences, kept)``: ``kept`` is ``(M,)`` bool, False for skipped pairs;
            ``preferences`` is ``(kept.sum(),)`` float32, P(fragment 1 preferred) for the kept pairs.

        Raises:
            DataError: If the two sets differ in size or fragment length.
        """
        _check_pair_shapes(fragments1, fragments2, "SyntheticGatherer")
        returns1, returns2 = fragments1.returns(), fragments2.returns()
        kept = np.ones(len(fragments1), dtype=bool)
        if self.skip_threshold is not None:
            kept = np.maximum(returns1, returns2) >= self.skip_threshold
        equal = np.abs(returns1 - returns2) < self.equal_threshold
        probs = preference_probability(fragments1.returns(self.gamma) - fragments2.returns(self.gamma), self.beta)
        if self.sample:
            labels = probs if math.isinf(self.beta) else (self.rng.random(len(probs)) < probs).astype(np.float64)
            flip = self.rng.random(len(labels)) < self.mistake_rate
            labels = np.where(flip, 1 - labels, labels)
        else:
            labels = self.mistake_rate * (1 - probs) + (1 - self.mistake_rate) * probs
        labels = np.where(equal, 0.5, labels)
        return labels[kept].astype(np.float32), kept

    def __call__(self, fragments1: Segments, fragments2: Segments) -> PreferenceDataset:
        """The labelled pairs that were not skipped, as a :class:`PreferenceDataset`."""
        preferences, kept = self.label(fragments1, fragments2)
        return PreferenceDataset(fragments1.take(kept), fragments2.take(kept), preferences)


@dataclass(frozen=True, eq=False)
class PreferenceDataset:
    """Labelled pairs of fragments (imitation's ``PreferenceDataset``), saved as one ``.npz``.

    Attributes:
        fragments1: M segments of L steps.
        fragments2: M segments of L steps, with the same observation and action shapes.
        preferences: ``(M,)`` float32 in [0, 1], the probability that fragment 1 is preferred
            (0 or 1 for a sampled label, 0.5 for equally preferable).

    Raises:
        DataError: If the counts or shapes disagree, or a preference is NaN or outside [0, 1]
            (the message names the field and the first bad row).
    """

    fragments1: Segments
    fragments2: Segments
    preferences: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "preferences", _check_preferences(self.preferences, self.fragments1, "PreferenceDataset")
        )
        _check_pair_shapes(self.fragments1, self.fragments2, "PreferenceDataset")

    def __len__(self) -> int:
        return len(self.preferences)

    def __add__(self, other: PreferenceDataset) -> PreferenceDataset:
        """Both datasets' pairs, ``self``'s first (imitation's ``push``)."""
        return PreferenceDataset(
            _concat(self.fragments1, other.fragments1),
            _concat(self.fragments2, other.fragments2),
            np.concatenate([self.preferences, other.preferences]),
        )

    def save(self, path: str | Path) -> Path:
        """Write the dataset to ``path`` (``.npz``) in one atomic rename.

        Entries: ``fragments1.obs`` ... ``fragments2.rews``, ``preferences``, ``format``
        (``"rewardkit-preferences/1"``) and ``env_id``.

        Raises:
            DataError: If the suffix is not ``.npz``.
        """
        path = Path(path)
        if path.suffix.lower() != ".npz":
            raise DataError(f"{path}: unsupported file type '{path.suffix or 'no extension'}'; use .npz")
        arrays = {
            **record_arrays(self.fragments1, "fragments1."),
            **record_arrays(self.fragments2, "fragments2."),
            "preferences": self.preferences,
        }
        return write_npz(path, arrays, {"format": PREFERENCES_FORMAT, "env_id": self.fragments1.env_id or ""})

    @classmethod
    def load(cls, path: str | Path) -> PreferenceDataset:
        """Read and check a dataset written by :meth:`save`.

        Raises:
            DataError: One line naming the file, the field (``fragments2.obs``) and the first
                bad row: a missing field, counts or lengths that disagree, NaN or infinite
                values, preferences outside [0, 1], another kind of file.
        """
        path = Path(path)
        arrays = read_npz(path)
        tag = str(arrays.pop("format", PREFERENCES_FORMAT))
        if tag != PREFERENCES_FORMAT:
            raise DataError(f"{path}: field 'format' is '{tag}', not '{PREFERENCES_FORMAT}'; not a preference dataset")
        env_id = str(arrays.pop("env_id", "")) or None
        fragments = []
        for prefix in ("fragments1.", "fragments2."):
            own = {key.removeprefix(prefix): value for key, value in arrays.items() if key.startswith(prefix)}
            checked = check_arrays(own, kind="segments", where=str(path), prefix=prefix)
            fragments.append(Segments(**checked, env_id=env_id))
        _check_pair_shapes(*fragments, str(path))
        if "preferences" not in arrays:
            raise DataError(f"{path}: field 'preferences' is missing; a preference dataset needs one per pair")
        return cls(*fragments, _check_preferences(arrays["preferences"], fragments[0], str(path)))


def _check_pair_shapes(fragments1: Segments, fragments2: Segments, where: str) -> None:
    for name in ("obs", "acts"):
        one, two = getattr(fragments1, name), getattr(fragments2, name)
        if one.shape != two.shape:
            rows = min(len(one), len(two))
            row = rows if len(one) != len(two) else 0
            raise DataError(
                f"{where}: field 'fragments2.{name}' row {row}: shape {two.shape} but 'fragments1.{name}' has "
                f"{one.shape}; the two fragments of a pair need the same number of pairs, steps and dimensions"
            )


def _check_preferences(preferences: np.ndarray, fragments1: Segments, where: str) -> np.ndarray:
    array = np.asarray(preferences)
    if array.dtype.kind not in "iuf":
        raise DataError(f"{where}: field 'preferences' has dtype {array.dtype}; expected float32 in [0, 1]")
    array = array.astype(np.float32)
    if array.shape != (len(fragments1),):
        row = min(len(array), len(fragments1)) if array.ndim == 1 else 0
        raise DataError(
            f"{where}: field 'preferences' row {row}: shape {array.shape} but there are {len(fragments1)} pairs; "
            "one preference per pair"
        )
    bad = np.flatnonzero(~((array >= 0) & (array <= 1)))  # NaN fails both
    if bad.size:
        raise DataError(
            f"{where}: field 'preferences' row {bad[0]}: value {array[bad[0]]}; expected the probability that "
            "fragment 1 is preferred, in [0, 1]"
        )
    return array


def _concat(a: Segments, b: Segments) -> Segments:
    arrays = {f.name: np.concatenate([getattr(a, f.name), getattr(b, f.name)]) for f in fields(Segments)
              if f.name != "env_id"}
    return Segments(**arrays, env_id=a.env_id or b.env_id)


QUERY_SCHEDULES: dict[str, Callable[[float], float]] = {
    "constant": lambda t: 1.0,
    "hyperbolic": lambda t: 1.0 / (1.0 + t),
    "inverse_quadratic": lambda t: 1.0 / (1.0 + t**2),
}
"""Imitation's query rates over training progress t in [0, 1] (unnormalised)."""


def query_schedule(
    total: int,
    n_iterations: int,
    *,
    schedule: str | Callable[[float], float] = "hyperbolic",
    initial_fraction: float = 0.1,
) -> list[int]:
    """Spread ``total`` queries over a preference loop, as imitation's ``PreferenceComparisons`` does.

    ``int(total * initial_fraction)`` queries come first (to pretrain the reward model on
    fragments of a random agent); the rest are shared among ``n_iterations`` iterations in
    proportion to ``schedule(t)`` at ``t = linspace(0, 1, n_iterations)``, rounded to integers
    by largest remainders, so the counts add up to ``total`` exactly.

    Args:
        total: Queries in all (≥ 0).
        n_iterations: Iterations of agent and reward-model training (≥ 1).
        schedule: ``"constant"``, ``"hyperbolic"`` (``1 / (1 + t)``, default),
            ``"inverse_quadratic"`` (``1 / (1 + t²)``), or a callable rate ``t -> float ≥ 0``.
        initial_fraction: Share of ``total`` queried before the first iteration, in [0, 1].

    Returns:
        ``n_iterations + 1`` counts: the initial queries, then one per iteration.

    Raises:
        ConfigError: If a count or fraction is out of range, the name is unknown, or the
            rates are negative or all zero.
    """
    if total < 0 or n_iterations < 1 or not 0 <= initial_fraction <= 1:
        raise ConfigError(
            f"query_schedule(total={total}, n_iterations={n_iterations}, initial_fraction={initial_fraction}): "
            "need total >= 0, n_iterations >= 1, initial_fraction in [0, 1]"
        )
    if isinstance(schedule, str):
        if schedule not in QUERY_SCHEDULES:
            raise ConfigError(f"query schedule '{schedule}': unknown; use one of {', '.join(QUERY_SCHEDULES)}")
        schedule = QUERY_SCHEDULES[schedule]
    initial = int(total * initial_fraction)
    rates = np.array([schedule(float(t)) for t in np.linspace(0, 1, n_iterations)], dtype=np.float64)
    if not np.isfinite(rates).all() or (rates < 0).any() or rates.sum() <= 0:
        raise ConfigError(f"query schedule rates {rates.tolist()}: must be finite, >= 0 and not all 0")
    shares = rates / rates.sum() * (total - initial)
    counts = np.floor(shares).astype(np.int64)
    remainder = (total - initial) - int(counts.sum())
    counts[np.argsort(-(shares - counts), kind="stable")[:remainder]] += 1
    return [initial, *counts.tolist()]


def select_queries(
    fragments1: Segments,
    fragments2: Segments,
    n: int,
    *,
    disagreement: Disagreement | None = None,
    seed: int | None = None,
) -> np.ndarray:
    """Choose which ``n`` of M candidate pairs to ask the teacher about.

    Args:
        fragments1: M candidate first fragments.
        fragments2: M candidate second fragments.
        n: Pairs to choose, 0 ≤ n ≤ M.
        disagreement: None for uniform random choice; otherwise ``(fragments1, fragments2) ->
            (M,)`` disagreement (e.g. an ensemble's standard deviation of P(1 ≻ 2)), and the
            ``n`` pairs with the highest are chosen (B-Pref's disagreement sampling; ties by index).
        seed: Seed of the random choice.

    Returns:
        ``(n,)`` int64 indices into the candidates (for ``Segments.take``), without repeats.

    Raises:
        ConfigError: If ``n`` is out of range, or ``disagreement`` returns another shape or a
            NaN.
    """
    _check_pair_shapes(fragments1, fragments2, "select_queries")
    m = len(fragments1)
    if not 0 <= n <= m:
        raise ConfigError(f"select_queries: n={n} but there are {m} candidate pairs; ask for at most {m}")
    if disagreement is None:
        return np.random.default_rng(seed).choice(m, size=n, replace=False).astype(np.int64)
    scores = np.asarray(disagreement(fragments1, fragments2), dtype=np.float64)
    if scores.shape != (m,) or np.isnan(scores).any():
        raise ConfigError(
            f"select_queries: disagreement returned shape {scores.shape} (or NaN); expected ({m},) numbers, "
            "one per pair"
        )
    return np.argsort(-scores, kind="stable")[:n].astype(np.int64)


def fragment_returns(score: Callable[..., np.ndarray], fragments: Segments, **score_kw: Any) -> np.ndarray:
    """Learned returns of fragments: ``(M,)`` for a ``score``, ``(K, M)`` for an ensemble's ``score_members``.

    Absorbing steps (``fragments.absorbing``) count 0, as in training.

    Args:
        score: Numpy scorer taking ``(obs, acts, next_obs)`` of ``M * L`` steps.
        fragments: ``M`` fragments of ``L`` steps.
        **score_kw: Passed on to ``score`` (``task`` rows of a task-conditioned model).
    """
    m, length = fragments.rews.shape
    flat = [x.reshape(m * length, *x.shape[2:]) for x in (fragments.obs, fragments.acts, fragments.next_obs)]
    rewards = np.asarray(score(*flat, **score_kw), dtype=np.float64)
    rewards = rewards.reshape(*rewards.shape[:-1], m, length)
    return np.where(fragments.absorbing, 0.0, rewards).sum(axis=-1)


def preference_accuracy(model: nn.Module, dataset: PreferenceDataset, task: Any = None) -> float:
    """Share of the strictly labelled pairs whose preferred fragment has the higher learned return.

    Args:
        model: A model with a numpy ``score`` (state-action, ensemble), or a task-conditioned one with ``task``.
        dataset: The labelled pairs; those labelled 0.5 (equal) are left out.
        task: The :class:`~rewardkit.rl.tasks.Task` the pairs belong to, for a task-conditioned model.

    Returns:
        Accuracy in ``[0, 1]``; NaN when every pair is a tie.
    """
    score_kw = {}
    if task is not None:
        from rewardkit.training.multitask import task_inputs

        score_kw["task"] = task_inputs(model, task, dataset.fragments1.rews.size)
    labels = np.asarray(dataset.preferences)
    decided = labels != 0.5
    if not decided.any():
        return math.nan
    returns = [fragment_returns(model.score, f, **score_kw) for f in (dataset.fragments1, dataset.fragments2)]
    predicted = returns[0][decided] > returns[1][decided]
    return float((predicted == (labels[decided] > 0.5)).mean())
