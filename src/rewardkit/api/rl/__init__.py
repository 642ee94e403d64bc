"""Reward models for Gymnasium environments: collect roll-outs, fit R(s, a), train PPO on it, learn from preferences.

The four verbs of ``rewardkit rl``, each a short composition of :mod:`rewardkit.rl`,
:mod:`rewardkit.training` and the store, one module per group:

* :mod:`~rewardkit.api.rl.data`: :func:`collect`, roll-outs of a random or a saved PPO
  policy saved as transitions; :func:`fit`, a state-action reward model from a transitions
  file (MSE on the true reward) or a preference file (Bradley-Terry on segment pairs),
  evaluated on held-out data against the true reward, optionally committed;
* :mod:`~rewardkit.api.rl.policy`: :func:`train`, PPO on the frozen learned reward (or the
  true one), evaluated on the true return over seeds, curves and policies written to the
  run folder; :func:`learn`, the preference loop
  (:class:`~rewardkit.rl.comparisons.PreferenceComparisons`), the learned reward model
  committed with its query count and true-return metrics;
* :mod:`~rewardkit.api.rl.reuse`: reuse across tasks: :func:`transfer_start` (``fit
  --init-from``), :func:`fit_tasks` (one task-conditioned model over a task family),
  :func:`maml` (meta-training) and :func:`adapt` (few-shot adaptation to a task);
* :mod:`~rewardkit.api.rl.epic`: :func:`reward_distance`, the EPIC distance between two
  commits' reward models, for ``rewardkit diff``;
* :mod:`~rewardkit.api.rl.models`: what they share: a reward model for an environment's
  spaces, opened from a folder or ref, committed.

Every argument, data file, environment id and reward model is checked before anything is
written: a refusal leaves the run folder absent and the repository as it was.
"""

from rewardkit.api.rl.data import (
    CollectResult,
    FitResult,
    check_data_spaces,
    collect,
    episode_returns,
    fit,
    load_policy,
    load_training_data,
    preference_fingerprint,
    preference_metrics,
    regression_metrics,
)
from rewardkit.api.rl.epic import RewardDistance, commit_kind, reward_distance
from rewardkit.api.rl.models import (
    check_model_spaces,
    commit_model,
    environment_spaces,
    new_reward_model,
    open_reward_model,
)
from rewardkit.api.rl.policy import (
    LEVEL,
    LearnRun,
    LearnSettings,
    PolicyRun,
    TeacherKnobs,
    evaluate_true_return_mean,
    learn,
    train,
)
from rewardkit.api.rl.reuse import AdaptResult, TasksResult, adapt, fit_tasks, maml, transfer_start

__all__ = [
    "LEVEL",
    "AdaptResult",
    "TasksResult",
    "adapt",
    "fit_tasks",
    "maml",
    "transfer_start",
    "CollectResult",
    "FitResult",
    "LearnRun",
    "LearnSettings",
    "PolicyRun",
    "RewardDistance",
    "TeacherKnobs",
    "check_data_spaces",
    "check_model_spaces",
    "collect",
    "commit_kind",
    "commit_model",
    "environment_spaces",
    "episode_returns",
    "evaluate_true_return_mean",
    "fit",
    "learn",
    "load_policy",
    "load_training_data",
    "new_reward_model",
    "open_reward_model",
    "preference_fingerprint",
    "preference_metrics",
    "regression_metrics",
    "reward_distance",
    "train",
]
