"""Transfer: start a reward model from a stored version, freeze some of its parameters, record the lineage.

The state-action counterpart of ``train --init-from REF [--freeze PATTERN]``, in three steps:

1. :func:`init_from` checks the version ``REF`` names out of the repository and loads it
   (:func:`rewardkit.models.load_reward_model`): its weights and its normalisation buffers
   become the starting point of the new model;
2. :meth:`Transfer.freeze` stops gradients of the parameters whose names match fnmatch
   patterns (``mlp.0.*`` the first layer, ``mlp.[02].*`` the first two, ``task_embedding.*``…)
   with :func:`rewardkit.training.freeze.freeze_parameters`; the optimiser leaves them bit for
   bit as they were;
3. :func:`commit_model` commits the fine-tuned model with its lineage as text training records
   it (:func:`rewardkit.training.freeze.lineage_params`): ``params["base"]`` the commit id,
   ``params["frozen"]`` the freeze patterns. :meth:`rewardkit.store.Commit.base_commits` reads
   that base as it reads a LoRA adapter's, so ``gc`` keeps it, ``fsck`` checks it, ``push``
   sends it, and ``show`` and ``log`` name it.

Fine-tune with the stored normaliser (``update_normalizer=False`` in
:func:`~rewardkit.training.fit_regression` and :func:`~rewardkit.training.fit_preferences`):
the weights were trained under it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from rewardkit.models.loading import RewardModelKind, load_reward_model
from rewardkit.store.commits import Commit
from rewardkit.store.repository import Repository
from rewardkit.training.freeze import freeze_parameters, lineage_params


@dataclass
class Transfer:
    """A model loaded from a stored version, ready to fine-tune.

    Attributes:
        model: The loaded reward model (trained in place by the caller).
        base: The commit it was loaded from.
        ref: How the caller named it (``"main"``, ``"v1"``, an id prefix).
        patterns: The freeze patterns given to :meth:`freeze`, in order (recorded in the lineage).
        frozen: Names of the parameters they froze, in model order.
    """

    model: nn.Module
    base: Commit
    ref: str
    patterns: list[str] = field(default_factory=list)
    frozen: list[str] = field(default_factory=list)

    def freeze(self, patterns: str | Sequence[str]) -> list[str]:
        """Freeze the parameters of :attr:`model` matching ``patterns`` and remember them.

        Args:
            patterns: One fnmatch pattern or several (see
                :func:`~rewardkit.training.freeze.freeze_parameters`).

        Returns:
            The names frozen by this call, in model order.

        Raises:
            ConfigError: A pattern matches no parameter, or the patterns match them all.
        """
        names = freeze_parameters(self.model, patterns)
        patterns = [patterns] if isinstance(patterns, str) else list(patterns)
        self.patterns += [p for p in patterns if p not in self.patterns]
        self.frozen = [n for n, p in self.model.named_parameters() if not p.requires_grad]
        return names

    def lineage(self) -> dict[str, Any]:
        """``{"base": <commit id>, "frozen": [patterns]}``, to merge into the new commit's params."""
        return lineage_params(self.base.id, self.patterns)


def init_from(repo: Repository, ref: str, *, kind: RewardModelKind | None = None) -> Transfer:
    """Load the reward model ``ref`` names in ``repo`` as the starting point of a new one.

    Args:
        repo: The repository.
        ref: Branch, tag, alias, ``HEAD~N`` or commit-id prefix.
        kind: The kind of model needed (``"state-action"``, ``"task-conditioned"``,
            ``"text"``); another kind is refused.

    Returns:
        The model with its base commit.

    Raises:
        RefError: ``ref`` names no commit.
        ModelError: The version is not a loadable reward model, or not of ``kind``.
        StoreError: An object is missing or corrupt.
    """
    from rewardkit.store.adapters import checkout_adapter, is_adapter

    base = repo.resolve(ref)
    with tempfile.TemporaryDirectory(prefix="rewardkit-init-") as scratch:
        folder = Path(scratch) / "model"
        if is_adapter(base):  # a LoRA adapter starts a new model as its merged weights
            checkout_adapter(repo, base, folder, merged=True)
        else:
            repo.checkout(base, folder)
        model = load_reward_model(folder, kind=kind)
    return Transfer(model, base, ref)


def commit_model(
    repo: Repository, model: nn.Module, message: str, *, transfer: Transfer | None = None,
    params: dict[str, Any] | None = None, metrics: dict[str, Any] | None = None,
    data_fingerprint: str | None = None, branch: str | None = None,
) -> Commit:
    """Commit a state-action, task-conditioned or ensemble reward model, with its lineage if transferred.

    Args:
        repo: The repository.
        model: A model with ``save(folder)`` (:class:`~rewardkit.models.StateActionRewardModel` and kin).
        message: The commit message.
        transfer: Where the model started, recorded as ``params["base"]`` and ``params["frozen"]``.
        params: Further training parameters.
        metrics: Evaluation results.
        data_fingerprint: Fingerprint of the training data.
        branch: The branch to advance; default the current one.

    Raises:
        StoreError: The repository refuses the commit (empty message, bad branch).
    """
    with tempfile.TemporaryDirectory(prefix="rewardkit-commit-") as scratch:
        folder = model.save(Path(scratch) / "model")
        lineage = transfer.lineage() if transfer is not None else {}
        return repo.commit_dir(folder, message, params={**(params or {}), **lineage}, metrics=metrics,
                               data_fingerprint=data_fingerprint, branch=branch)
