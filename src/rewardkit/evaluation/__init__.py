"""Reward-model evaluation: pairwise accuracy with CI, per-group tables, calibration, EPIC, rating MSE/correlation."""

from rewardkit.evaluation.epic import EpicResult, epic_distance
from rewardkit.evaluation.evaluate import (
    EvalReport,
    GroupStats,
    evaluate_model,
    evaluate_with_rewards,
    report_from_rewards,
    reward_table,
)
from rewardkit.evaluation.metrics import bootstrap_ci, longer_wins, pairwise_correct, reliability
from rewardkit.evaluation.plots import plot_reliability
from rewardkit.evaluation.rated import RatingReport, evaluate_ratings, rating_report

__all__ = [
    "EpicResult",
    "EvalReport",
    "GroupStats",
    "RatingReport",
    "bootstrap_ci",
    "epic_distance",
    "evaluate_model",
    "evaluate_ratings",
    "evaluate_with_rewards",
    "longer_wins",
    "pairwise_correct",
    "plot_reliability",
    "rating_report",
    "reliability",
    "report_from_rewards",
    "reward_table",
]
