"""rewardkit: reward models as versioned software.

>>> import rewardkit
>>> run = rewardkit.train("pairs.jsonl", rewardkit.RewardConfig(epochs=1), commit_message="v1")  # doctest: +SKIP
>>> rewardkit.evaluate("main", "held_out.jsonl").accuracy  # doctest: +SKIP

The names below are imported on first use (see :mod:`rewardkit.lazy`).
"""

from typing import TYPE_CHECKING

from rewardkit.lazy import lazy_exports

if TYPE_CHECKING:
    from rewardkit.api import evaluate, load_model, score, train
    from rewardkit.store import Repository
    from rewardkit.training import RewardConfig

__version__ = "0.1.0"
__all__ = ["RewardConfig", "Repository", "evaluate", "load_model", "score", "train"]
__getattr__, __dir__ = lazy_exports(__name__, {
    "RewardConfig": "rewardkit.training.config",
    "Repository": "rewardkit.store.repository",
    **dict.fromkeys(("evaluate", "load_model", "score", "train"), "rewardkit.api"),
})
