"""Merge branches of reward models in weight space, evaluate the merge, commit it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from rewardkit.api.models import open_model
from rewardkit.data import chat_template_renderer, load_pairs
from rewardkit.store import Repository
from rewardkit.store.merge import MergePlan, commit_merge, fast_forward, plan_merge
from rewardkit.store.probe import Probe, load_probe, make_probe

if TYPE_CHECKING:
    from rewardkit.evaluation import EvalReport
    from rewardkit.models import TextRewardModel
    from rewardkit.store import Commit


@dataclass
class MergeRun:
    """The outcome of :func:`merge`.

    Attributes:
        plan: What the merge did (kind, base, sides, per-tensor steps, recipe).
        commit: The merge commit, for a plan of kind ``"merge"``; else None.
        evaluations: Report of the merged model per ``eval_data`` file name.
    """

    plan: MergePlan
    commit: Commit | None
    evaluations: dict[str, EvalReport]


def merge(
    branches: Sequence[str],
    *,
    strategy: str = "average",
    weights: Sequence[float] | None = None,
    lam: float = 1.0,
    density: float | None = None,
    seed: int = 0,
    eval_data: Sequence[str | Path] = (),
    message: str | None = None,
    repo: Repository | None = None,
    progress: bool = True,
) -> MergeRun:
    """Merge ``branches`` into the current branch (see :mod:`rewardkit.store.merge`).

    The plan is made (and any refusal raised) from the manifests alone, and ``eval_data`` is
    read and checked, before any tensor is read or written. The merged model is evaluated
    on every ``eval_data`` file (all of it) before it is committed, and the commit stores
    those metrics as ``train`` does (``<file name>/accuracy``...); it also scores HEAD's probe
    set (if HEAD has one) and stores those rewards, so ``diff`` compares the merge with its
    parents without ``--probe``. Without ``eval_data`` no model is loaded.

    Args:
        branches: Refs to merge into HEAD, at least one.
        strategy: ``average`` (WARM), ``task-arithmetic``, ``ties``, ``dare``, ``ours``, ``theirs``.
        weights: One per model, HEAD first; None: equal.
        lam: Scale λ of the merged task vector.
        density: Kept fraction for ``ties``/``dare``; None: the strategy's default.
        seed: Seed of ``dare``'s masks.
        eval_data: Preference data files to evaluate the merged model on.
        message: Commit message; default ``"merge A into main (average)"``.
        repo: The repository; discovered when None.
        progress: Show progress bars.

    Raises:
        RefError: A branch does not resolve.
        StoreError: The merge is refused (see :func:`rewardkit.store.merge.plan_merge`), or
            the branch moved meanwhile; the repository is unchanged.
        DataError: ``eval_data`` cannot be read.
    """
    repo = repo or Repository.discover()
    plan = plan_merge(repo, branches, strategy=strategy, weights=weights, lam=lam, density=density, seed=seed)
    if plan.kind == "fast-forward":
        fast_forward(repo, plan)
    if plan.kind != "merge":
        return MergeRun(plan, None, {})
    datasets = {}
    if eval_data:
        with open_model(plan.head, repo) as head:
            render = chat_template_renderer(head.tokenizer)
            datasets = {Path(d).name: load_pairs(d, render_chat=render) for d in eval_data}
    head_probe = load_probe(repo.objects, repo.commits.get(plan.head)) if datasets else None
    reports: dict[str, EvalReport] = {}
    loaded: dict[str, TextRewardModel] = {}

    def model_of(draft: Commit) -> TextRewardModel:
        if "model" not in loaded:
            with open_model(draft, repo) as source:
                loaded["model"] = source.load()
        return loaded["model"]

    def evaluate(draft: Commit) -> dict[str, Any]:
        from rewardkit.evaluation import evaluate_model

        model = model_of(draft)
        metrics: dict[str, Any] = {}
        for name, dataset in datasets.items():
            reports[name] = evaluate_model(model, dataset, max_length=model.max_length, progress=progress)
            metrics |= reports[name].metrics(name)
        return metrics

    def rescore_probe(draft: Commit) -> Probe | None:
        """HEAD's probe pairs scored by the merged model (the model is loaded for --eval anyway)."""
        from rewardkit.evaluation import reward_table

        if head_probe is None:
            return None
        model = model_of(draft)
        pairs = [SimpleNamespace(**pair) for pair in head_probe.pairs]
        return make_probe(pairs, reward_table(model, pairs, max_length=model.max_length))

    commit = commit_merge(repo, plan, message, evaluate=evaluate if datasets else None,
                          probe=rescore_probe if datasets else None, progress=progress)
    return MergeRun(plan, commit, reports)
