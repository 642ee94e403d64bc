"""Reward-model evaluation: pairwise accuracy with bootstrap CI, per-group tables, calibration."""

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

__all__ = [
    "EvalReport",
    "GroupStats",
    "bootstrap_ci",
    "evaluate_model",
    "evaluate_with_rewards",
    "longer_wins",
    "pairwise_correct",
    "plot_reliability",
    "reliability",
    "report_from_rewards",
    "reward_table",
]
