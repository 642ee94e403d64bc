"""Evaluate a reward model on rated examples: MSE, Pearson and Spearman correlation with the ratings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from rewardkit.data import RatedDataset
from rewardkit.evaluation.agreement import pearson, spearman
from rewardkit.models import TextRewardModel


@dataclass(frozen=True)
class RatingReport:
    """How well a model's rewards match held-out ratings.

    Attributes:
        n_examples: Rated examples scored.
        mse: Mean squared error of the predicted ratings, in squared rating units. The predicted
            rating is the reward, or ``reward * std + mean`` for a model trained on standardised
            ratings (so the number is comparable across runs).
        pearson: Pearson correlation of rewards and ratings; None when either is constant.
        spearman: Spearman rank correlation (average ranks for ties); None when either is constant.
        mean_rating: Mean of the ratings.
        mean_prediction: Mean of the predicted ratings.
    """

    n_examples: int
    mse: float
    pearson: float | None
    spearman: float | None
    mean_rating: float
    mean_prediction: float

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``train --json``."""
        return asdict(self)

    def metrics(self, prefix: str) -> dict[str, float]:
        """Flat metrics for a commit, e.g. ``test/mse``; undefined correlations are left out."""
        flat = {k: v for k, v in asdict(self).items() if v is not None}
        return {f"{prefix}/{k}": round(v, 5) if isinstance(v, float) else v for k, v in flat.items()}


def rating_report(ratings: Sequence[float], predictions: Sequence[float]) -> RatingReport:
    """The report of predicted ratings against true ones (same order, same length, at least one).

    Raises:
        ValueError: Empty or different lengths.
    """
    y = np.asarray(ratings, dtype=np.float64)
    p = np.asarray(predictions, dtype=np.float64)
    if len(y) == 0 or y.shape != p.shape:
        raise ValueError(f"need equally many ratings and predictions, at least one; got {len(y)} and {len(p)}")
    return RatingReport(n_examples=len(y), mse=float(np.mean((p - y) ** 2)), pearson=pearson(p, y),
                        spearman=spearman(p, y), mean_rating=float(y.mean()), mean_prediction=float(p.mean()))


def evaluate_ratings(
    model: TextRewardModel,
    dataset: RatedDataset,
    *,
    rating_scale: tuple[float, float] | None = None,
    max_length: int = 512,
    batch_size: int = 32,
    progress: bool = True,
) -> RatingReport:
    """Score every example of ``dataset`` and compare the rewards with its ratings.

    Args:
        model: The reward model.
        dataset: Rated examples (at least one).
        rating_scale: ``(mean, std)`` when the model was trained on standardised ratings; the
            predicted rating is then ``reward * std + mean``.
        max_length: Token budget per text (same truncation policy as training).
        batch_size: Texts per forward pass.
        progress: Show a progress bar.
    """
    examples = dataset.examples
    rewards = model.score([e.prompt for e in examples], [e.response for e in examples], max_length=max_length,
                          batch_size=batch_size, progress=progress)
    mean, std = rating_scale or (0.0, 1.0)
    return rating_report([e.rating for e in examples], [r * std + mean for r in rewards])
