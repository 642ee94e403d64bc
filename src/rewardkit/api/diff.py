"""Compare two versions of a reward model: what the store holds, and how they behave."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from rewardkit.api.checks import DataSource, source_names
from rewardkit.api.models import open_model
from rewardkit.api.rl import RewardDistance, commit_kind, reward_distance
from rewardkit.data import PreferencePair, chat_template_renderer, load_pairs
from rewardkit.errors import DataError
from rewardkit.evaluation import reward_table
from rewardkit.evaluation.agreement import Agreement, agreement
from rewardkit.models import TextRewardModel
from rewardkit.store import Commit, Repository
from rewardkit.store.diff import CommitDiff, diff_commits, json_ready
from rewardkit.store.probe import load_probe, probe_param


@dataclass(frozen=True)
class Behaviour:
    """How two versions' rewards compare on the same pairs.

    Attributes:
        source: Where the pairs come from: ``"stored probe"`` (the pairs ``train`` stored
            with both commits; nothing re-run) or the ``--probe`` data names.
        n_pairs: Pairs compared; 0 when there is no comparison.
        agreement: The comparison, or None when there is none (see ``missing``).
        missing: Why there is no comparison and what to pass instead; None when there is one.
    """

    source: str
    n_pairs: int
    agreement: Agreement | None
    missing: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return asdict(self) | {"agreement": self.agreement.to_dict() if self.agreement else None}


@dataclass(frozen=True)
class ModelDiff:
    """The store-level diff of two commits and their behaviour.

    Attributes:
        store: Params, metrics, files and tensors (see :class:`~rewardkit.store.diff.CommitDiff`).
        behaviour: Rewards compared on the same pairs.
        reward_distance: For two state-action reward models, their EPIC distance
            (:class:`~rewardkit.api.rl.RewardDistance`); None for text models.
    """

    store: CommitDiff
    behaviour: Behaviour
    reward_distance: RewardDistance | None = None

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON shape of ``diff --json`` (``epic`` only for state-action models)."""
        extra = {"epic": json_ready(self.reward_distance.to_dict())} if self.reward_distance else {}
        return self.store.to_dict() | {"behaviour": json_ready(self.behaviour.to_dict())} | extra


def diff(
    a: str,
    b: str,
    *,
    probe: DataSource | None = None,
    format: str | None = None,  # noqa: A002 (the data format, as in --format)
    repo: Repository | None = None,
    top_k: int = 10,
) -> ModelDiff:
    """Compare commit ``b`` with commit ``a``: params, metrics, tensors and behaviour.

    Behaviour is compared on the probe pairs ``train`` stored with both commits when they
    are the same pairs (nothing is scored again), or, with ``probe``, by scoring both
    models on every non-tied pair of that data (read and checked before any weights are
    loaded; one model in memory at a time, each with its own tokenizer's chat template).
    Two state-action reward models are compared by EPIC distance instead
    (:func:`rewardkit.api.rl.reward_distance`), on ``probe`` (one transitions file) or on
    random roll-outs of the environment their commits name.

    Args:
        a: The old side: a ref of ``repo`` (``main~1``, a tag, an id prefix).
        b: The new side.
        probe: Preference data to score both on instead of the stored probe.
        format: Format of ``probe``; detected when None.
        repo: The repository; discovered when None.
        top_k: How many changed tensors to rank by relative L2 change.

    Raises:
        RefError: ``a`` or ``b`` does not name exactly one commit.
        DataError: ``probe`` cannot be read or holds no preference pair.
        StoreError: An object is missing or corrupt.
        ModelError: With ``probe``, a commit's model does not load.
    """
    repo = repo or Repository.discover()
    ca, cb = repo.resolve(a), repo.resolve(b)
    if commit_kind(repo, ca) == commit_kind(repo, cb) == "state-action":
        transitions = None if probe is None else source_names(probe)[0]
        distance = reward_distance(repo, ca, cb, probe=transitions)
        return ModelDiff(diff_commits(repo, ca, cb, top_k), Behaviour(
            "EPIC", 0, None, missing="state-action reward models: compared by EPIC distance"), distance)
    if probe is None:
        return ModelDiff(diff_commits(repo, ca, cb, top_k), _stored_behaviour(repo, ca, cb, a, b))
    names = ", ".join(source_names(probe))
    with open_model(ca.id, repo) as sa, open_model(cb.id, repo) as sb:
        datasets = [load_pairs(probe, format, render_chat=chat_template_renderer(s.tokenizer)).pairs
                    for s in (sa, sb)]
        if not datasets[0]:
            raise DataError(f"{names} holds no preference pair to probe with (ties are left out)")
        store = diff_commits(repo, ca, cb, top_k)  # after the data, before the weights
        rewards = [_rewards(source.load(), pairs) for source, pairs in zip((sa, sb), datasets, strict=True)]
    lengths = [[len(p.chosen), len(p.rejected)] for p in datasets[0]]
    return ModelDiff(store, _compare(names, rewards[0], rewards[1], lengths))


def _compare(source: str, rewards_a: np.ndarray, rewards_b: np.ndarray, lengths: np.ndarray | list[list[int]]
             ) -> Behaviour:
    """:func:`agreement` as a :class:`Behaviour`; non-finite rewards become its ``missing`` reason."""
    try:
        result = agreement(rewards_a, rewards_b, lengths)
    except ValueError as exc:
        return Behaviour(source, 0, None, missing=str(exc))
    return Behaviour(source, result.n_pairs, result)


def _rewards(model: TextRewardModel, pairs: Sequence[PreferencePair]) -> np.ndarray:
    """``(n, 2)`` float64 rewards of ``pairs`` (columns chosen, rejected), each distinct text scored once."""
    reward_of = reward_table(model, pairs, max_length=model.max_length)
    return np.array([[reward_of[(p.prompt, p.chosen)], reward_of[(p.prompt, p.rejected)]] for p in pairs])


def _stored_behaviour(repo: Repository, ca: Commit, cb: Commit, a: str, b: str) -> Behaviour:
    for commit, ref in ((ca, a), (cb, b)):
        if probe_param(commit) is None:
            return Behaviour("stored probe", 0, None, missing=(
                f"{ref} ({commit.id[:10]}) has no stored probe set (only `train --commit` stores one); "
                "pass --probe DATA to score both versions on the same data"))
    pa, pb = probe_param(ca), probe_param(cb)
    if pa.get("pairs") != pb.get("pairs"):
        return Behaviour("stored probe", 0, None, missing=(
            f"the two commits were probed on different pairs ({str(pa.get('pairs'))[:10]} vs "
            f"{str(pb.get('pairs'))[:10]}: other data or split seed); pass --probe DATA to score both on the "
            "same data"))
    probe_a, probe_b = load_probe(repo.objects, ca), load_probe(repo.objects, cb)
    return _compare("stored probe", probe_a.rewards.numpy(), probe_b.rewards.numpy(), probe_a.lengths.numpy())
