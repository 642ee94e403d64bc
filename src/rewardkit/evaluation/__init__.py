"""Reward-model evaluation: pairwise accuracy with bootstrap CI, per-group tables, calibration, EPIC distance."""

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

__all__ = [
    "EpicResult",
    "EvalReport",
    "GroupStats",
    "bootstrap_ci",
    "epic_distance",
    "evaluate_model",
    "evaluate_with_rewards",
    "longer_wins",
    "pairwise_correct",
    "plot_reliability",
    "reliability",
    "report_from_rewards",
    "reward_table",
]
