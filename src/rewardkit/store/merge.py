"""Three-way merge of model versions in weight space.

A merge of HEAD with one or more commits works like git's, tensor by tensor:

1. Find the merge-base (:func:`merge_base`): the common ancestor of all of them.
2. Plan (:func:`plan_merge`), from the manifests alone (no tensor is read): for every tensor
   name, a tensor unchanged on every side keeps the base's object; one changed on one side
   only (or changed identically on several) takes that side's object; one changed
   differently on several sides is combined by the strategy
   (:mod:`rewardkit.store.merge_strategies`) from the base and the sides that changed it.
   Every refusal happens here, before anything is written: different architectures
   (``config.json`` fields such as ``model_type``, ``architectures``, ``hidden_size``),
   different tokenizers (for a strategy that computes weights), a shape or dtype that
   differs, an integer tensor changed differently, a tensor deleted on one side and changed
   on another, or a non-tensor file changed differently on several sides (``ours``/``theirs``
   resolve the last three); LoRA adapters on different base models. A LoRA adapter commit
   takes part as the model it means (:func:`effective_manifest`: its base's tensors with
   ``W + alpha/r * B @ A`` for each target), so the merge of adapters is the merge of their
   effective weights, committed as a full model.
3. Write (:func:`write_merge`): only the combined tensors (and an adapter's computed
   ones it takes) are read and written, one at a time (base + the sides that changed it,
   then the result is stored and dropped), so memory is bounded by a few tensors, never a
   whole model per side.
4. Commit (:func:`commit_merge`): a commit with every merged commit as a parent and the
   recipe in ``params["merge"]``, moving the branch by compare-and-swap.

A fast-forward (HEAD is an ancestor of the one commit merged) moves the branch without a new
commit; merging a commit HEAD already contains changes nothing ("Already up to date").

When several best merge-bases exist (a criss-cross history) the merge is refused: a
weight-space merge combines task vectors relative to the base, and picking one base
arbitrarily (as ``git merge-base`` does) would silently change every combined tensor.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Literal

import torch
from tqdm.auto import tqdm

from rewardkit.errors import StoreError
from rewardkit.store.adapters import (
    ADAPTER_CONFIG_FILE,
    _plan,  # the adapter's LoRA plan, to compute one effective tensor by name
    base_of,
    check_mergeable,
    effective_tensor_ids,
    is_adapter,
)
from rewardkit.store.commits import Commit
from rewardkit.store.manifest import Manifest, TensorEntry
from rewardkit.store.merge_strategies import DARE_DENSITY, PICKING, TIES_DENSITY, check_strategy, combine
from rewardkit.store.probe import PARAM as PROBE_PARAM
from rewardkit.store.probe import Probe, probe_param
from rewardkit.store.refs import HEAD, HEADS
from rewardkit.store.repository import Repository

#: ``config.json`` fields that define the architecture: equal on the base and every side.
ARCHITECTURE_FIELD = re.compile(
    r"^(model_type|architectures|num_.+|n_.+|.+_size|.+_dim|.+_layers|max_position_embeddings|d_model)$"
)
#: Files of a tokenizer (by base name): equal on every side for a strategy that computes weights.
TOKENIZER_FILE = re.compile(
    r"^(tokenizer.*|vocab.*|merges\.txt|special_tokens_map\.json|added_tokens\.json|spiece\.model|"
    r"sentencepiece.*\.model|chat_template.*)$"
)
CONFIG_FILE = "config.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
#: JSON files that merge key by key when several sides changed them.
MERGED_BY_KEY = (CONFIG_FILE, TOKENIZER_CONFIG)
#: Keys of ``tokenizer_config.json`` that describe a run, not the vocabulary (``train`` records its max_length).
RUN_SETTINGS = ("model_max_length",)
_FLOAT_DTYPES = ("F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2")
#: Id prefix, in an effective manifest, of a tensor that exists only as an adapter's ``W + alpha/r * B @ A``.
COMPUTED = "lora:"


@dataclass(frozen=True)
class Side:
    """One model of a merge.

    Attributes:
        label: How messages name it: ``"HEAD (main)"`` or the ref the user gave.
        ref: The ref as given (``HEAD``'s branch name for HEAD).
        commit: Its commit id.
        manifest: Its effective manifest (:func:`effective_manifest`): for a LoRA adapter
            commit, the model it means, not the adapter's own tensors.
    """

    label: str
    ref: str
    commit: str
    manifest: Manifest


@dataclass(frozen=True)
class TensorStep:
    """What the merge does with one tensor name.

    Attributes:
        name: Tensor name.
        entry: The merged entry when it is taken as is (kept or taken from one side);
            None when it is combined or deleted.
        sides: For a combined tensor, the indices (into :attr:`MergePlan.sides`) of the
            sides that changed it; empty otherwise.
    """

    name: str
    entry: TensorEntry | None
    sides: tuple[int, ...] = ()

    @property
    def combined(self) -> bool:
        """Whether the merge computes this tensor."""
        return bool(self.sides)


@dataclass(frozen=True)
class MergePlan:
    """What a merge will do, decided from the manifests before anything is written.

    Attributes:
        kind: ``"merge"`` (a merge commit), ``"fast-forward"`` (the branch moves to the
            merged commit) or ``"up-to-date"`` (nothing to do).
        branch: The branch that moves (the current branch).
        head: HEAD's commit id before the merge.
        base: The merge-base commit id (None for fast-forward and up-to-date).
        sides: HEAD first, then each merged commit not already contained in HEAD.
        strategy: Strategy name (see :data:`~rewardkit.store.merge_strategies.STRATEGIES`).
        weights: One weight per side, HEAD first, or None.
        lam: Scale λ of the merged task vector.
        density: Kept fraction for ``ties``/``dare`` (their default filled in); None for the others.
        seed: Seed of ``dare``'s masks.
        tensors: One step per tensor name of the merged model, in name order.
        files: The merged model's files (path -> blob id), or JSON to store for a
            ``config.json`` merged key by key.
        target: For a fast-forward, the commit the branch moves to.
        target_ref: For a fast-forward, that commit as the user named it.
        base_manifest: The merge-base's effective manifest (None unless ``kind`` is ``"merge"``).
    """

    kind: Literal["merge", "fast-forward", "up-to-date"]
    branch: str
    head: str
    base: str | None = None
    sides: tuple[Side, ...] = ()
    strategy: str = "average"
    weights: tuple[float, ...] | None = None
    lam: float = 1.0
    density: float | None = None
    seed: int = 0
    tensors: tuple[TensorStep, ...] = ()
    files: dict[str, str | bytes] = field(default_factory=dict)
    target: str | None = None
    target_ref: str | None = None
    base_manifest: Manifest | None = None

    @property
    def parents(self) -> list[str]:
        """The merge commit's parents: HEAD first, then each merged commit."""
        return [s.commit for s in self.sides]

    def counts(self) -> dict[str, int]:
        """Tensors kept from the base, taken from one side, combined, and deleted."""
        at_base = self.base_manifest.tensors if self.base_manifest is not None else {}
        counts = dict.fromkeys(("kept", "taken", "combined", "deleted"), 0)
        for step in self.tensors:
            kind = ("combined" if step.combined else "deleted" if step.entry is None
                    else "kept" if at_base.get(step.name) == step.entry else "taken")
            counts[kind] += 1
        return counts

    def recipe(self) -> dict[str, Any]:
        """What ``params["merge"]`` records: strategy, its settings, the base and every side."""
        return {
            "strategy": self.strategy,
            "weights": list(self.weights) if self.weights is not None else None,
            "lambda": self.lam,
            "density": self.density,
            "seed": self.seed,
            "base": self.base,
            "branch": self.branch,
            "sides": [{"ref": s.ref, "commit": s.commit} for s in self.sides],
            "tensors": self.counts(),
        }


def merge_base(repo: Repository, ids: Sequence[str]) -> str | None:
    """Return the best common ancestor of commits ``ids`` (through all parents), or None.

    A commit is an ancestor of itself. The best common ancestors are those that are not an
    ancestor of another common ancestor; for two commits on a line, the one that is the
    other's ancestor.

    Raises:
        StoreError: If there are several best common ancestors (a criss-cross history),
            naming them: the merge needs one base (see the module docstring).
    """
    if not ids:
        raise StoreError("merge_base needs at least one commit")
    common: set[str] | None = None
    for id in ids:
        reachable = {c.id for c in repo.walk([id])}
        common = reachable if common is None else common & reachable
    if not common:
        return None
    # the common ancestors are closed under "ancestor of", so the strict ancestors of any of
    # them are exactly what the walk from their parents reaches
    parents = [p for id in common for p in repo.commits.get(id).parents]
    below = {c.id for c in repo.walk(parents)} if parents else set()
    best = sorted(common - below)
    if len(best) > 1:
        raise StoreError(
            f"{', '.join(id[:10] for id in best)} are all best common ancestors of "
            f"{', '.join(id[:10] for id in ids)} (a criss-cross history); a weight-space merge needs one base: "
            "merge one of the branches into the other first"
        )
    return best[0]


def plan_merge(
    repo: Repository,
    refs: Sequence[str],
    *,
    strategy: str = "average",
    weights: Sequence[float] | None = None,
    lam: float = 1.0,
    density: float | None = None,
    seed: int = 0,
) -> MergePlan:
    """Decide what merging ``refs`` into the current branch does; read manifests only, write nothing.

    Args:
        repo: The repository.
        refs: The commits to merge into HEAD (branches, tags, ids), at least one.
        strategy: How a tensor changed on several sides is combined.
        weights: One weight per model, HEAD first, then ``refs`` in order; None: equal.
        lam: Scale λ of the merged task vector (``task-arithmetic``, ``ties``, ``dare``).
        density: Kept fraction for ``ties``/``dare``; None: the strategy's default
            (:data:`~rewardkit.store.merge_strategies.TIES_DENSITY`, ``DARE_DENSITY``).
        seed: Seed of ``dare``'s masks.

    Returns:
        The plan; its ``kind`` says whether it is a merge, a fast-forward or nothing.

    Raises:
        RefError: A ref does not resolve.
        StoreError: No common ancestor, several best ones, bad strategy settings, or a
            refusal listed in the module docstring; the message names the tensor or file
            and the sides.
    """
    if not refs:
        raise StoreError("nothing to merge: name at least one branch, e.g. rewardkit merge exp/lr")
    check_strategy(strategy, weights, 1 + len(refs), density)
    if density is None:  # recorded resolved, so the recipe reproduces the merge whatever the defaults become
        density = {"ties": TIES_DENSITY, "dare": DARE_DENSITY}.get(strategy)
    if strategy == "theirs" and len(refs) > 1:
        raise StoreError("--strategy theirs needs exactly one branch to merge (whose version would win?)")
    branch = repo.current_branch()
    head_id = repo.resolve(HEAD).id
    others = [(ref, repo.resolve(ref).id) for ref in refs]
    w = list(weights) if weights is not None else None

    ancestors_of_head = {c.id for c in repo.walk([head_id])}
    keep = [i for i, (_, id) in enumerate(others) if id not in ancestors_of_head]
    if not keep:
        return MergePlan("up-to-date", branch, head_id)
    others = [others[i] for i in keep]
    if w is not None:
        w = [w[0], *(w[1 + i] for i in keep)]
    if len(others) == 1 and head_id in {c.id for c in repo.walk([others[0][1]])}:
        return MergePlan("fast-forward", branch, head_id, target=others[0][1], target_ref=others[0][0])

    base_id = merge_base(repo, [head_id, *(id for _, id in others)])
    if base_id is None:
        names = ", ".join(ref for ref, _ in others)
        raise StoreError(
            f"refusing to merge unrelated histories: {branch} and {names} have no common ancestor"
        )
    check_mergeable(repo, [repo.commits.get(id) for id in (base_id, head_id, *(id for _, id in others))])
    base = effective_manifest(repo, repo.commits.get(base_id))
    sides = (
        Side(f"HEAD ({branch})", branch, head_id, effective_manifest(repo, repo.commits.get(head_id))),
        *(Side(ref, ref, id, effective_manifest(repo, repo.commits.get(id))) for ref, id in others),
    )
    _check_architecture(repo, base, sides)
    if strategy not in PICKING:
        _check_tokenizers(repo, sides)
    files = _merge_files(repo, base, sides, strategy)
    tensors = tuple(_tensor_step(name, base, sides, strategy) for name in _names(base, sides))
    return MergePlan(
        "merge", branch, head_id, base_id, sides, strategy,
        tuple(w) if w is not None else None, lam, density, seed, tensors, files, base_manifest=base,
    )


def write_merge(repo: Repository, plan: MergePlan, *, progress: bool = False) -> str:
    """Write the combined tensors and the merged manifest; return the manifest id.

    Streams: for each combined tensor, the base's (except for ``average``) and the changed
    sides' objects are read (re-hashed), combined (in float32; float64 for float64 tensors),
    stored, and dropped before the next, so memory holds one tensor's versions, never a
    model. Call it inside ``repo.objects.undo_on_error()`` so a failure deletes what it wrote.

    Raises:
        StoreError: An object is missing or corrupt.
    """
    objects = repo.objects
    base = plan.base_manifest or Manifest()
    read = _TensorReader(repo)
    entries: dict[str, TensorEntry] = {}
    work = [s for s in plan.tensors if s.combined or _computed(s.entry)]
    total = sum(_nbytes(base.tensors.get(s.name) or s.entry) for s in work)
    with tqdm(total=total, desc="merging", unit="B", unit_scale=True, disable=not progress, leave=False) as bar:
        for step in plan.tensors:
            if step.entry is not None and not _computed(step.entry):
                entries[step.name] = step.entry
                continue
            if step.entry is not None:  # taken from an adapter side: its effective tensor is stored now
                entries[step.name] = TensorEntry.from_ref(objects.put_tensor(read(step.name, step.entry)))
                bar.update(_nbytes(step.entry))
                continue
            if not step.combined:  # deleted
                continue
            base_tensor = (None if plan.strategy == "average"  # the mean of the sides needs no base
                           else read(step.name, base.tensors[step.name]))
            versions = [read(step.name, plan.sides[i].manifest.tensors[step.name]) for i in step.sides]
            weights = [plan.weights[i] for i in step.sides] if plan.weights is not None else None
            merged = combine(plan.strategy, base_tensor, versions, weights=weights, lam=plan.lam,
                             density=plan.density, seed=plan.seed, name=step.name)
            entries[step.name] = TensorEntry.from_ref(objects.put_tensor(merged))
            bar.update(_nbytes(base.tensors[step.name]))
            del base_tensor, versions, merged  # one tensor's versions alive at a time
    files = {name: blob if isinstance(blob, str) else objects.put_blob(blob) for name, blob in plan.files.items()}
    return Manifest(tensors=entries, files=files).store(objects)


def commit_merge(
    repo: Repository,
    plan: MergePlan,
    message: str | None = None,
    *,
    evaluate: Callable[[Commit], dict[str, Any]] | None = None,
    probe: Callable[[Commit], Probe | None] | None = None,
    author: str | None = None,
    progress: bool = False,
) -> Commit:
    """Carry out a plan of kind ``"merge"``: write the merged model, evaluate it, commit it.

    Everything happens under the object store's write lock: if anything fails (the branch
    moved meanwhile, evaluation failed, an interrupt), the objects this merge created are
    deleted and no ref moves. Commits in other processes wait meanwhile (evaluation
    included), as they wait for any commit writing objects.

    Args:
        repo: The repository the plan was made in.
        plan: A plan of kind ``"merge"``.
        message: The commit message; default ``"merge A, B into main (strategy)"``.
        evaluate: Called with the merge commit before it is stored (its metrics empty);
            returns the metrics to store with it.
        probe: Called with that draft commit too; returns HEAD's probe set with the merged
            model's rewards on it (see :mod:`rewardkit.store.probe`), stored with the commit
            so ``diff`` compares the merge with its parents without re-running anything.
        author: Who merged; default the login name.
        progress: Show a progress bar over the combined tensors' bytes.

    Returns:
        The merge commit, with every side as a parent (HEAD first) and the recipe in
        ``params["merge"]``.

    Raises:
        StoreError: The branch moved since the plan was made, or an object is missing or corrupt.
    """
    if plan.kind != "merge":
        raise StoreError(f"nothing to commit for a {plan.kind} merge")
    message = message or default_message(plan)
    head = repo.commits.get(plan.head)
    params: dict[str, Any] = {"merge": plan.recipe()}
    if "config" in (head.params or {}):  # so `eval --split` recomputes the same held-out splits
        params["config"] = head.params["config"]
    with repo.objects.undo_on_error():
        manifest_id = write_merge(repo, plan, progress=progress)
        metrics: dict[str, Any] = {}
        draft = Commit.create(manifest_id, plan.parents, message, author or "merge", params=params,
                              backbone=head.backbone)
        if evaluate is not None:
            metrics = evaluate(draft)
        scored = probe(draft) if probe is not None else None
        if scored is not None:  # the same pairs as HEAD's probe (same blob), the merged model's rewards
            repo.objects.put_blob(scored.pairs_bytes())
            repo.objects.put_tensor(scored.rewards.to(torch.float32).contiguous())
            params[PROBE_PARAM] = scored.param() | {k: v for k, v in (probe_param(head) or {}).items()
                                                    if k == "split"}
        repo.objects.check_lock()
        return repo.commit_manifest(
            manifest_id, message, parents=plan.parents, branch=plan.branch, expected_head=plan.head,
            author=author, params=params, metrics=metrics, backbone=head.backbone, reflog_action="merge",
        )


def fast_forward(repo: Repository, plan: MergePlan) -> None:
    """Move the branch of a ``"fast-forward"`` plan to its target, by compare-and-swap.

    Raises:
        StoreError: The branch moved since the plan was made.
    """
    if plan.kind != "fast-forward" or plan.target is None:
        raise StoreError(f"a {plan.kind} merge is not a fast-forward")
    repo.refs.set_ref(HEADS + plan.branch, plan.target, plan.head, f"merge {plan.target_ref}: Fast-forward")


def default_message(plan: MergePlan) -> str:
    """``"merge exp/a, exp/b into main (average)"``."""
    names = ", ".join(s.ref for s in plan.sides[1:])
    return f"merge {names} into {plan.branch} ({plan.strategy})"


# -- effective models ----------------------------------------------------------------


def effective_manifest(repo: Repository, commit: Commit) -> Manifest:
    """The manifest of the model a commit means, read from manifests only.

    A full commit's own manifest. For a LoRA adapter commit, the model
    :func:`~rewardkit.store.adapters.effective_tensors` yields: its base's tensors, the
    head taken from the adapter, and each LoRA target as an entry whose id is
    ``"lora:<commit id>"`` (it exists only as ``W + alpha/r * B @ A``, computed when
    read); its files are :func:`~rewardkit.store.adapters.model_files`' (the base's overlaid
    by the adapter's, without ``adapter_config.json``). So a merge of adapters on one base
    is the merge of their effective weights, and its commit is a full model.
    """
    if not is_adapter(commit):
        return repo.manifest(commit)
    base, own = repo.manifest(base_of(repo, commit)), repo.manifest(commit)
    ids = effective_tensor_ids(repo, commit)
    tensors = {n: TensorEntry(ids[n] or COMPUTED + commit.id, e.dtype, e.shape) for n, e in base.tensors.items()}
    files = base.files | {n: i for n, i in own.files.items() if n != ADAPTER_CONFIG_FILE}
    return Manifest(tensors=tensors, files=files)


class _TensorReader:
    """Reads an effective manifest's tensor: a stored object (re-hashed), or an adapter's LoRA target computed.

    Each adapter's own tensors (small: the LoRA factors and the head) are read once and kept.
    """

    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self._adapters: dict[str, tuple[Any, dict[str, Any], Manifest]] = {}

    def __call__(self, name: str, entry: TensorEntry) -> Any:  # noqa: ANN401 (a torch.Tensor)
        get = self.repo.objects.get_tensor
        if not _computed(entry):
            return get(entry.id, verify=True)
        commit_id = entry.id.removeprefix(COMPUTED)
        if commit_id not in self._adapters:
            manifest, lora, base = _plan(self.repo, self.repo.commits.get(commit_id))
            self._adapters[commit_id] = (lora, {n: get(e.id, verify=True) for n, e in manifest.tensors.items()}, base)
        lora, adapter, base = self._adapters[commit_id]
        return lora.apply(name, get(base.tensors[name].id, verify=True), adapter)


def _computed(entry: TensorEntry | None) -> bool:
    return entry is not None and entry.id.startswith(COMPUTED)


# -- planning ------------------------------------------------------------------------


def _names(base: Manifest, sides: Sequence[Side]) -> list[str]:
    names = set(base.tensors)
    for side in sides:
        names |= set(side.manifest.tensors)
    return sorted(names)


def _tensor_step(name: str, base: Manifest, sides: Sequence[Side], strategy: str) -> TensorStep:
    """Decide one tensor (see the module docstring); raise on a conflict no strategy can resolve."""
    at_base = base.tensors.get(name)
    versions = [s.manifest.tensors.get(name) for s in sides]
    changed = [i for i, v in enumerate(versions) if v != at_base]
    if not changed:
        return TensorStep(name, at_base)
    if len({versions[i] for i in changed}) == 1:  # one side, or the same change on several
        return TensorStep(name, versions[changed[0]])
    if strategy in PICKING:
        return TensorStep(name, versions[0] if strategy == "ours" else versions[-1])
    who = " and ".join(sides[i].label for i in changed)
    if at_base is None:
        raise StoreError(f"tensor {name!r} was added differently on {who}; use --strategy ours or theirs")
    missing = [sides[i].label for i in changed if versions[i] is None]
    if missing:
        present = [sides[i].label for i in changed if versions[i] is not None]
        raise StoreError(f"tensor {name!r} was deleted on {', '.join(missing)} but changed on "
                         f"{', '.join(present)}; use --strategy ours or theirs")
    for i in changed:
        v = versions[i]
        if (v.dtype, v.shape) != (at_base.dtype, at_base.shape):
            raise StoreError(
                f"tensor {name!r} is {v.dtype} {list(v.shape)} on {sides[i].label} but {at_base.dtype} "
                f"{list(at_base.shape)} at the merge-base: shapes and dtypes must match to merge in weight space"
            )
    if at_base.dtype not in _FLOAT_DTYPES:
        raise StoreError(f"integer tensor {name!r} ({at_base.dtype}) differs on {who}: it cannot be averaged; "
                         "use --strategy ours or theirs")
    return TensorStep(name, None, tuple(changed))


def _check_architecture(repo: Repository, base: Manifest, sides: Sequence[Side]) -> None:
    """Refuse when a ``config.json`` architecture field differs between the base and a side."""
    labelled = [("the merge-base", base), *((s.label, s.manifest) for s in sides)]
    configs = [(label, _json(repo, m.files[CONFIG_FILE])) for label, m in labelled if CONFIG_FILE in m.files]
    if len(configs) < 2:
        return
    first_label, first = configs[0]
    for label, config in configs[1:]:
        for key in sorted(set(first) | set(config)):
            if ARCHITECTURE_FIELD.match(key) and first.get(key) != config.get(key):
                raise StoreError(
                    f"different architectures: {CONFIG_FILE} has {key}={json.dumps(config.get(key))} on {label} "
                    f"but {json.dumps(first.get(key))} on {first_label}; only models of one architecture merge"
                )


def _check_tokenizers(repo: Repository, sides: Sequence[Side]) -> None:
    """Refuse when the tokenizer files differ between two sides (weights of different vocabularies).

    ``tokenizer_config.json`` is compared without its per-run settings (:data:`RUN_SETTINGS`,
    e.g. the ``model_max_length`` training records): two runs at other lengths share a
    vocabulary; the file then merges key by key like ``config.json``.
    """
    def tokenizer(side: Side) -> dict[str, Any]:
        return {n: _json_without(repo, i, RUN_SETTINGS) if PurePosixPath(n).name == TOKENIZER_CONFIG else i
                for n, i in side.manifest.files.items() if TOKENIZER_FILE.match(PurePosixPath(n).name)}

    first = tokenizer(sides[0])
    for side in sides[1:]:
        other = tokenizer(side)
        differ = sorted(n for n in set(first) | set(other) if first.get(n) != other.get(n))
        if differ:
            raise StoreError(
                f"different tokenizers: {differ[0]} differs between {sides[0].label} and {side.label}; "
                "weights trained with different tokenizers do not merge (use --strategy ours or theirs)"
            )


def _merge_files(repo: Repository, base: Manifest, sides: Sequence[Side], strategy: str) -> dict[str, str | bytes]:
    """Three-way merge of the non-tensor files; :data:`MERGED_BY_KEY` files changed on several sides merge by key."""
    names = set(base.files).union(*(s.manifest.files for s in sides))
    out: dict[str, str | bytes] = {}
    for name in sorted(names):
        at_base = base.files.get(name)
        versions = [s.manifest.files.get(name) for s in sides]
        changed = [i for i, v in enumerate(versions) if v != at_base]
        if not changed:
            chosen: str | bytes | None = at_base
        elif len({versions[i] for i in changed}) == 1:
            chosen = versions[changed[0]]
        elif strategy in PICKING:
            chosen = versions[0] if strategy == "ours" else versions[-1]
        elif name in MERGED_BY_KEY and at_base is not None and all(versions[i] is not None for i in changed):
            chosen = _merge_json(repo, name, at_base, sides, changed)
        else:
            who = " and ".join(sides[i].label for i in changed)
            raise StoreError(f"file {name} was changed differently on {who}; use --strategy ours or theirs "
                             "to take one side's version")
        if chosen is not None:
            out[name] = chosen
    return out


def _merge_json(repo: Repository, name: str, base_id: str, sides: Sequence[Side], changed: list[int]) -> bytes:
    """Three-way merge of a JSON object's top-level keys; refuse a key changed differently on several sides."""
    base = _json(repo, base_id)
    versions = {i: _json(repo, sides[i].manifest.files[name]) for i in changed}
    merged = dict(base)
    for key in sorted(set(base).union(*versions.values())):
        values = {i: v.get(key, _MISSING) for i, v in versions.items()}
        moved = {i: val for i, val in values.items() if val != base.get(key, _MISSING)}
        distinct = {json.dumps(val, sort_keys=True, default=str) for val in moved.values()}
        if len(distinct) > 1:
            who = " and ".join(sides[i].label for i in moved)
            raise StoreError(f"file {name}: key {key!r} was changed differently on {who}; use --strategy ours "
                             "or theirs to take one side's version")
        if moved:
            value = next(iter(moved.values()))
            if value is _MISSING:
                merged.pop(key, None)
            else:
                merged[key] = value
    return (json.dumps(merged, indent=2, sort_keys=True) + "\n").encode()


_MISSING = object()


def _json_without(repo: Repository, blob: str, keys: Sequence[str]) -> str:
    """A JSON object file's canonical text without ``keys`` (the raw id if it is not a JSON object)."""
    try:
        value = json.loads(repo.objects.get_bytes(blob, verify=True))
    except ValueError:
        return blob
    if not isinstance(value, dict):
        return blob
    return json.dumps({k: v for k, v in value.items() if k not in keys}, sort_keys=True)


def _json(repo: Repository, blob: str) -> dict[str, Any]:
    try:
        value = json.loads(repo.objects.get_bytes(blob, verify=True))
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _nbytes(entry: TensorEntry) -> int:
    from rewardkit.store.objects import torch_dtype

    n = 1
    for d in entry.shape:
        n *= d
    return n * torch_dtype(entry.dtype).itemsize
