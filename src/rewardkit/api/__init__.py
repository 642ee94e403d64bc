"""The Python API: one function per main job, each a short composition of the core packages.

The CLI calls exactly these functions and only renders what they return. One module per
concept: :mod:`~rewardkit.api.training` (train, evaluate on the held-out splits, commit),
:mod:`~rewardkit.api.evaluation` (evaluate and score), :mod:`~rewardkit.api.models` (open a
model from an object, a folder or a ref; commit a folder), :mod:`~rewardkit.api.diff` (compare
two versions), :mod:`~rewardkit.api.tracking` (log a training run to MLflow), :mod:`~rewardkit.api.remote`
(push, fetch, pull, clone, check out from a remote) and :mod:`~rewardkit.api.checks`
(arguments checked before slow work). The names below are imported on first use (see
:mod:`rewardkit.lazy`), so the CLI loads torch only once a command needs it.
"""

from typing import TYPE_CHECKING

from rewardkit.lazy import lazy_exports

if TYPE_CHECKING:
    from rewardkit.api.diff import ModelDiff, diff
    from rewardkit.api.evaluation import evaluate, score, score_data
    from rewardkit.api.models import ModelSource, checkout, commit, load_model, open_model
    from rewardkit.api.remote import checkout_from, clone, fetch, pull, push
    from rewardkit.api.tracking import MlflowTracking
    from rewardkit.api.training import TrainRun, train

__all__ = [
    "MlflowTracking",
    "ModelDiff",
    "ModelSource",
    "TrainRun",
    "checkout",
    "checkout_from",
    "clone",
    "commit",
    "diff",
    "evaluate",
    "fetch",
    "load_model",
    "open_model",
    "pull",
    "push",
    "score",
    "score_data",
    "train",
]
__getattr__, __dir__ = lazy_exports(__name__, {
    **dict.fromkeys(("ModelDiff", "diff"), "rewardkit.api.diff"),
    **dict.fromkeys(("evaluate", "score", "score_data"), "rewardkit.api.evaluation"),
    **dict.fromkeys(("ModelSource", "checkout", "commit", "load_model", "open_model"), "rewardkit.api.models"),
    **dict.fromkeys(("TrainRun", "train"), "rewardkit.api.training"),
    **dict.fromkeys(("checkout_from", "clone", "fetch", "pull", "push"), "rewardkit.api.remote"),
    "MlflowTracking": "rewardkit.api.tracking",
})
