"""EPIC distance between two commits' state-action reward models, for ``rewardkit diff``."""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rewardkit.api.rl.models import open_reward_model
from rewardkit.data.transitions import load_transitions
from rewardkit.errors import ModelError, RewardkitError
from rewardkit.models.loading import reward_model_kind
from rewardkit.store import Commit, Repository


@dataclass(frozen=True)
class RewardDistance:
    """EPIC distance between two state-action reward models, for ``rewardkit diff``.

    Attributes:
        source: The transitions it is computed on: ``"<n> random steps of <env>"`` or the
            ``--probe`` file.
        epic: The distance, interval and sample sizes, or None (see ``missing``).
        missing: Why there is no distance; None when there is one.
    """

    source: str
    epic: Any = None
    missing: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {"source": self.source, "epic": asdict(self.epic) if self.epic else None, "missing": self.missing}


def commit_kind(repo: Repository, commit: Commit) -> str:
    """What a commit's model scores (``"text"``, ``"state-action"``, ``"task-conditioned"``), from its config alone."""
    from rewardkit.store.adapters import model_files

    config = model_files(repo, commit).get("config.json")
    if config is None:
        return "text"
    with tempfile.TemporaryDirectory(prefix="rewardkit-") as scratch:
        (Path(scratch) / "config.json").write_bytes(config)
        try:
            return reward_model_kind(scratch)
        except ModelError:
            return "text"


def reward_distance(repo: Repository, a: Commit, b: Commit, *, probe: str | Path | None = None,
                    n_samples: int = 1000, discount: float = 0.99, seed: int = 0) -> RewardDistance:
    """EPIC distance (Gleave et al. 2021) between the state-action reward models of two commits.

    The transitions are read from ``probe`` (a transitions file) when given, else
    ``n_samples`` steps of a uniformly random policy in the environment the commits'
    params name (``env_id``, B's first), seeded; the coverage distributions for the
    canonicalisation are drawn from them (see :func:`~rewardkit.evaluation.epic.epic_distance`).

    Raises:
        DataError: ``probe`` cannot be read or does not fit the models.
    """
    from rewardkit.evaluation.epic import epic_distance
    from rewardkit.rl.rollout import collect as rollout

    if probe is not None:
        transitions, source = load_transitions(probe), str(probe)
    else:
        env_id = next((c.params["env_id"] for c in (b, a) if (c.params or {}).get("env_id")), None)
        if env_id is None:
            return RewardDistance("", missing="neither commit records its environment (params env_id); pass --probe "
                                  "FILE with transitions to compare the rewards on")
        transitions, source = rollout(env_id, n_samples, seed=seed), f"{n_samples} random steps of {env_id}"
    with open_reward_model(a.id, repo) as (model_a, _, _), open_reward_model(b.id, repo) as (model_b, _, _):
        try:
            result = epic_distance(model_a.score, model_b.score, transitions.obs, transitions.acts,
                                   transitions.next_obs, discount=discount, seed=seed)
        except ModelError as exc:
            return RewardDistance(source, missing=f"the transitions do not fit the models: {exc}")
        except RewardkitError as exc:
            return RewardDistance(source, missing=str(exc))
    return RewardDistance(source, result)
