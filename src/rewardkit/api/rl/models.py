"""What the ``rewardkit rl`` verbs share: reward models for an environment's spaces, opened, committed."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from torch import nn

from rewardkit.errors import ModelError
from rewardkit.models.ensemble import RewardEnsemble
from rewardkit.models.loading import load_reward_model, reward_model_kind
from rewardkit.models.state_action import StateActionRewardModel
from rewardkit.rl.envs import make_env
from rewardkit.store import Commit, Repository


def environment_spaces(env_id: str) -> tuple[Any, Any]:
    """``(observation_space, action_space)`` of ``env_id``.

    Raises:
        ConfigError: Unknown id, or the environment cannot be built.
    """
    venv = make_env(env_id, n_envs=1)
    try:
        return venv.observation_space, venv.action_space
    finally:
        venv.close()


def new_reward_model(observation_space: Any, action_space: Any, *, ensemble: int, seed: int,
                     hidden_sizes: tuple[int, ...] = (256, 256)) -> nn.Module:
    """A fresh ``StateActionRewardModel`` for the spaces, or a ``RewardEnsemble`` of ``ensemble`` of them (seeded)."""
    import torch

    template = StateActionRewardModel.for_spaces(observation_space, action_space, hidden_sizes=hidden_sizes)
    if ensemble > 1:
        return RewardEnsemble.from_config(template.config, ensemble, seed=seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return StateActionRewardModel(template.config)


def commit_model(repo: Repository, folder: Path, message: str, params: dict[str, Any], metrics: dict[str, float],
                 data_fingerprint: str | None) -> Commit:
    """Commit a model folder with its params and finite metrics (NaN and inf are left out)."""
    finite = {k: v for k, v in metrics.items() if isinstance(v, int | float) and math.isfinite(v)}
    return repo.commit_dir(folder, message, params=params, metrics=finite, data_fingerprint=data_fingerprint)


@contextmanager
def open_reward_model(ref: str | Path, repo: Repository | None = None
                      ) -> Iterator[tuple[nn.Module, str, Commit | None]]:
    """A state-action reward model from a folder or a ref, checked by kind before its weights are read.

    Yields:
        ``(model, name, commit)``: the model (a ``StateActionRewardModel`` or an ensemble of
        them), how to name it (the folder, or ``ref (commit id)``), the commit or None.

    Raises:
        RefError: Not a folder and not a ref of the repository.
        ModelError: A text or task-conditioned model, or a damaged folder.
    """
    if Path(ref).is_dir():
        yield load_reward_model(ref, kind="state-action"), str(ref), None
        return
    repo = repo or Repository.discover()
    commit = repo.resolve(str(ref))
    with tempfile.TemporaryDirectory(prefix="rewardkit-") as scratch:
        folder = Path(scratch) / "model"
        repo.checkout(commit, folder, weights=False)
        kind = reward_model_kind(folder)
        if kind != "state-action":
            raise ModelError(f"{ref} ({commit.id[:10]}) holds a {kind} reward model, but a state-action reward "
                             "model is needed here (train one with `rewardkit rl fit` or `rewardkit rl learn`)")
        repo.checkout(commit, folder, force=True)
        yield load_reward_model(folder, kind="state-action"), f"{ref} ({commit.id[:10]})", commit


def check_model_spaces(model: nn.Module, env_id: str) -> None:
    """Refuse a reward model built for other spaces than ``env_id``'s.

    Raises:
        ModelError: Names both (see :meth:`StateActionRewardModel.check_spaces`).
    """
    member = model.members[0] if isinstance(model, RewardEnsemble) else model
    member.check_spaces(*environment_spaces(env_id))
