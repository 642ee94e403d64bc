"""Evaluate a reward model on preference pairs: accuracy with CI, per-group tables, calibration."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from rewardkit.data import PreferenceDataset, PreferencePair
from rewardkit.evaluation.metrics import Reliability, bootstrap_ci, longer_wins, pairwise_correct, reliability
from rewardkit.models import TextRewardModel


@dataclass(frozen=True)
class GroupStats:
    """Accuracy of the pairs of one source or subset."""

    n_pairs: int
    accuracy: float
    longer_wins_accuracy: float
    mean_margin: float


@dataclass
class EvalReport:
    """Everything ``rewardkit eval`` reports.

    Attributes:
        n_pairs: Pairs with a preference (ties excluded).
        n_ties: Tied pairs, scored but excluded from accuracy.
        accuracy: Pairwise accuracy: share of pairs where ``r_chosen > r_rejected``
            (equal rewards count one half).
        accuracy_ci: 95% cluster-bootstrap interval over prompt groups (1000 resamples):
            whole groups of pairs sharing :attr:`PreferencePair.group_key` are resampled,
            since pairs of one prompt are correlated (see :func:`bootstrap_ci`).
        mean_margin: Mean of ``r_chosen - r_rejected``, in reward units.
        longer_wins_accuracy: Accuracy of the baseline that prefers the longer response
            (in characters) on the same pairs.
        ece: Expected calibration error of ``σ(r_chosen - r_rejected)`` (10 bins).
        tie_mean_abs_diff: Mean ``|r_a - r_b|`` over ties (small is good: "either is fine").
        n_identical: Ties whose two responses are the same text (see ``PreferencePair.identical``).
        n_empty: Pairs and ties with an empty chosen or rejected response.
        by_source: Per-source :class:`GroupStats`.
        by_subset: Per-``subset`` :class:`GroupStats` (pairs without a subset are left out).
        reliability: Reliability-diagram bins behind ``ece``.
    """

    n_pairs: int
    n_ties: int
    accuracy: float
    accuracy_ci: tuple[float, float]
    mean_margin: float
    longer_wins_accuracy: float
    ece: float
    tie_mean_abs_diff: float | None
    n_identical: int = 0
    n_empty: int = 0
    by_source: dict[str, GroupStats] = field(default_factory=dict)
    by_subset: dict[str, GroupStats] = field(default_factory=dict)
    reliability: Reliability | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON shape of ``eval --json``."""
        out = asdict(self)
        out["accuracy_ci"] = list(self.accuracy_ci)
        out["by_source"] = {k: asdict(v) for k, v in self.by_source.items()}
        out["by_subset"] = {k: asdict(v) for k, v in self.by_subset.items()}
        out["reliability"] = asdict(self.reliability) if self.reliability else None
        return out

    def metrics(self, prefix: str) -> dict[str, float]:
        """Flat metrics for a commit, e.g. ``validation/accuracy``."""
        flat = {
            "accuracy": self.accuracy,
            "accuracy_ci_low": self.accuracy_ci[0],
            "accuracy_ci_high": self.accuracy_ci[1],
            "n_pairs": self.n_pairs,
            "n_ties": self.n_ties,
            "n_identical": self.n_identical,
            "n_empty": self.n_empty,
            "mean_margin": self.mean_margin,
            "longer_wins_accuracy": self.longer_wins_accuracy,
            "ece": self.ece,
        }
        for name, stats in self.by_source.items():
            flat[f"{name}/accuracy"] = stats.accuracy
        return {f"{prefix}/{k}": round(v, 5) if isinstance(v, float) else v for k, v in flat.items()}


def evaluate_model(
    model: TextRewardModel,
    dataset: PreferenceDataset,
    *,
    max_length: int = 512,
    batch_size: int = 32,
    seed: int = 0,
    progress: bool = True,
) -> EvalReport:
    """Score every distinct (prompt, response) of ``dataset`` once and compute the report.

    Args:
        model: The reward model.
        dataset: Pairs and ties to evaluate.
        max_length: Token budget per text (same truncation policy as training).
        batch_size: Texts per forward pass.
        seed: Seed of the bootstrap.
        progress: Show a progress bar.
    """
    return evaluate_with_rewards(model, dataset, max_length=max_length, batch_size=batch_size, seed=seed,
                                 progress=progress)[0]


def evaluate_with_rewards(
    model: TextRewardModel,
    dataset: PreferenceDataset,
    *,
    max_length: int = 512,
    batch_size: int = 32,
    seed: int = 0,
    progress: bool = True,
) -> tuple[EvalReport, dict[tuple[str, str], float]]:
    """:func:`evaluate_model`, also returning the rewards it computed (see :func:`reward_table`).

    ``train`` reuses them for the probe set it stores with a commit, so those pairs are not
    scored twice.
    """
    reward_of = reward_table(model, [*dataset.pairs, *dataset.ties], max_length=max_length, batch_size=batch_size,
                             progress=progress)
    report = report_from_rewards(dataset.pairs, dataset.ties, lambda p, r: reward_of[(p.prompt, r)], seed=seed)
    return report, reward_of


def reward_table(
    model: TextRewardModel,
    pairs: Sequence[PreferencePair],
    *,
    max_length: int,
    batch_size: int = 32,
    progress: bool = False,
) -> dict[tuple[str, str], float]:
    """Reward of every distinct ``(prompt, response)`` of ``pairs``, each text scored once.

    qa-feedback answers appear in three pairs each, so scoring distinct texts saves work.
    """
    texts = sorted({(p.prompt, r) for p in pairs for r in (p.chosen, p.rejected)})
    rewards = model.score([t[0] for t in texts], [t[1] for t in texts], max_length=max_length,
                          batch_size=batch_size, progress=progress)
    return dict(zip(texts, rewards, strict=True))


def report_from_rewards(
    pairs: Sequence[PreferencePair], ties: Sequence[PreferencePair], reward, seed: int = 0  # noqa: ANN001
) -> EvalReport:
    """Build an :class:`EvalReport` given ``reward(pair, response) -> float``.

    The accuracy interval is a cluster bootstrap over :attr:`PreferencePair.group_key`
    (Field & Welsh 2007, "Bootstrapping clustered data"): several pairs of one prompt
    (6 per question in qa-feedback, ~6 per instruction in PandaLM) are not independent,
    and resampling them i.i.d. would understate the uncertainty.
    """
    diff = np.array([reward(p, p.chosen) - reward(p, p.rejected) for p in pairs], dtype=np.float64)
    correct = pairwise_correct(diff)
    longer = longer_wins([len(p.chosen) for p in pairs], [len(p.rejected) for p in pairs])
    calib = reliability(diff)
    tie_gaps = [abs(reward(t, t.chosen) - reward(t, t.rejected)) for t in ties]
    return EvalReport(
        n_pairs=len(pairs),
        n_ties=len(ties),
        accuracy=_mean(correct),
        accuracy_ci=bootstrap_ci(correct, groups=[p.group_key for p in pairs], seed=seed),
        mean_margin=_mean(diff),
        longer_wins_accuracy=_mean(longer),
        ece=calib.ece,
        tie_mean_abs_diff=float(np.mean(tie_gaps)) if tie_gaps else None,
        n_identical=sum(t.identical for t in ties),
        n_empty=sum(p.has_empty_response for p in [*pairs, *ties]),
        by_source=_by(pairs, lambda p: p.source, correct, longer, diff),
        by_subset=_by(pairs, lambda p: p.subset, correct, longer, diff),
        reliability=calib,
    )


def _by(pairs, key, correct, longer, diff) -> dict[str, GroupStats]:  # noqa: ANN001
    rows: dict[str, list[int]] = defaultdict(list)
    for i, pair in enumerate(pairs):
        name = key(pair)
        if name is not None:
            rows[str(name)].append(i)
    return {
        name: GroupStats(len(idx), _mean(correct[idx]), _mean(longer[idx]), _mean(diff[idx]))
        for name, idx in sorted(rows.items())
    }


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else float("nan")
