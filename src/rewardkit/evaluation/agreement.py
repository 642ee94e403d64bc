"""How alike two reward models behave on the same preference pairs.

Given the rewards of two versions A and B on the same ``n`` pairs, as ``(n, 2)`` arrays
(column 0: the chosen response, column 1: the rejected one), :func:`agreement` reports
whether B ranks responses as A does (Spearman), whether it prefers the same response of
each pair, how its reward scale drifted, and how much each leans on response length.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from rewardkit.evaluation.metrics import pairwise_correct


@dataclass(frozen=True)
class Agreement:
    """Behaviour of version B compared with version A on ``n_pairs`` pairs.

    Attributes:
        n_pairs: Pairs compared (``2 * n_pairs`` rewards per version).
        spearman: Spearman rank correlation of A's and B's rewards over all
            ``2 * n_pairs`` responses (average ranks for ties); ``None`` when either
            version gives every response the same reward.
        preference_agreement: Fraction of pairs that A and B order the same way:
            ``sign(r_chosen - r_rejected)`` equal in both, a tie (equal rewards) being its
            own sign, so a pair tied in one version and not in the other counts as a
            disagreement, and a pair tied in both as an agreement.
        accuracy_a: A's pairwise accuracy on these pairs (equal rewards count one half).
        accuracy_b: B's.
        mean_a: Mean reward of A over all responses (reward units).
        mean_b: Mean reward of B.
        std_a: Standard deviation (population, ``ddof=0``) of A's rewards.
        std_b: Standard deviation of B's rewards.
        length_corr_a: Pearson correlation of A's reward with the response's length in
            characters (the response alone, without the prompt), over all responses;
            ``None`` when the rewards or the lengths are all equal.
        length_corr_b: The same for B.
    """

    n_pairs: int
    spearman: float | None
    preference_agreement: float
    accuracy_a: float
    accuracy_b: float
    mean_a: float
    mean_b: float
    std_a: float
    std_b: float
    length_corr_a: float | None
    length_corr_b: float | None

    @property
    def mean_drift(self) -> float:
        """``mean_b - mean_a`` in reward units."""
        return self.mean_b - self.mean_a

    @property
    def std_drift(self) -> float:
        """``std_b - std_a`` in reward units."""
        return self.std_b - self.std_a

    def to_dict(self) -> dict[str, Any]:
        """The fields plus ``mean_drift`` and ``std_drift``."""
        return asdict(self) | {"mean_drift": self.mean_drift, "std_drift": self.std_drift}


def agreement(
    rewards_a: np.ndarray | Sequence[Sequence[float]],
    rewards_b: np.ndarray | Sequence[Sequence[float]],
    lengths: np.ndarray | Sequence[Sequence[int]],
) -> Agreement:
    """Compare two versions' rewards on the same pairs.

    Args:
        rewards_a: ``(n, 2)`` float rewards of version A: ``[:, 0]`` chosen, ``[:, 1]`` rejected.
        rewards_b: ``(n, 2)`` rewards of version B on the same pairs, in the same order.
        lengths: ``(n, 2)`` lengths of the chosen and rejected responses in characters.

    Raises:
        ValueError: If the shapes differ, are not ``(n, 2)``, or ``n`` is 0, or a version
            gives a NaN or infinite reward (the message says which and how many).
    """
    a = np.asarray(rewards_a, dtype=np.float64)
    b = np.asarray(rewards_b, dtype=np.float64)
    length = np.asarray(lengths, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 2 or a.shape[0] == 0 or a.shape != b.shape or a.shape != length.shape:
        raise ValueError(f"expected three (n, 2) arrays with n > 0, got {a.shape}, {b.shape} and {length.shape}")
    for name, rewards in (("A", a), ("B", b)):
        bad = int((~np.isfinite(rewards)).sum())
        if bad:
            raise ValueError(f"version {name} gives a NaN or infinite reward to {bad} of {rewards.size} responses; "
                             "its weights are damaged or diverged")
    sign_a, sign_b = np.sign(a[:, 0] - a[:, 1]), np.sign(b[:, 0] - b[:, 1])
    return Agreement(
        n_pairs=len(a),
        spearman=spearman(a.ravel(), b.ravel()),
        preference_agreement=float(np.mean(sign_a == sign_b)),
        accuracy_a=float(np.mean(pairwise_correct(a[:, 0] - a[:, 1]))),
        accuracy_b=float(np.mean(pairwise_correct(b[:, 0] - b[:, 1]))),
        mean_a=float(a.mean()),
        mean_b=float(b.mean()),
        std_a=float(a.std()),
        std_b=float(b.std()),
        length_corr_a=pearson(a.ravel(), length.ravel()),
        length_corr_b=pearson(b.ravel(), length.ravel()),
    )


def rank_average(x: np.ndarray) -> np.ndarray:
    """Ranks ``1..n`` of a 1-d array, equal values sharing the average of their ranks.

    Same as ``scipy.stats.rankdata(x, method="average")``.
    """
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(1, len(x) + 1)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return sums[inverse] / counts[inverse]


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman rank correlation: the Pearson correlation of the average ranks (1-d, same length)."""
    return pearson(rank_average(x), rank_average(y))


def pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    """Pearson correlation of two 1-d arrays; ``None`` when either is constant (undefined)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if np.ptp(x) == 0 or np.ptp(y) == 0:  # checked on the values: centring leaves rounding noise
        return None
    x, y = x - x.mean(), y - y.mean()
    denom = np.sqrt((x @ x) * (y @ y))
    return float(np.clip((x @ y) / denom, -1.0, 1.0))
