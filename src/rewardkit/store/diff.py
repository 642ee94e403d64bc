"""Compare two commits as models: params, metrics by evaluation set, and tensor by tensor.

Nothing here loads a model. Tensors are compared from the objects, two at a time: a
tensor whose object id is the same in both commits is unchanged and never read (ids are
hashes of the bytes); a changed one is read from each side, its statistics are computed in
float64 chunk by chunk, and both are dropped before the next, so memory stays bounded by
the largest tensor pair whatever the size of the model. A LoRA adapter commit is compared
as the model it means (its base with the adapter merged, see :mod:`rewardkit.store.adapters`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch

from rewardkit.store.adapters import (
    ADAPTER_CONFIG_FILE,
    base_of,
    effective_tensor_ids,
    effective_tensors,
    is_adapter,
)
from rewardkit.store.modeldir import entry_nbytes

if TYPE_CHECKING:
    from rewardkit.store.commits import Commit
    from rewardkit.store.repository import Repository

#: Group of a metric key without ``/`` (the trainer writes ``train/...``, so only metrics a
#: user passed by hand land here).
UNGROUPED = "(other)"
#: Sets shown first, in this order; others follow alphabetically.
SET_ORDER = ("train", "validation", "test")
#: Model file whose JSON keys are compared (architecture and head settings).
MODEL_CONFIG_FILE = "config.json"
#: Params key left out of the params diff: the probe rewards' object id.
PROBE_REWARDS = "probe.rewards"
#: Elements per float64 chunk when comparing two tensors (1 MiB per chunk and side: fits in cache).
CHUNK = 1 << 17

TensorStatus = Literal["unchanged", "changed", "added", "removed", "incompatible"]


@dataclass(frozen=True)
class ValueChange:
    """One key whose value differs between the two commits.

    Attributes:
        key: Dotted path of the key, e.g. ``config.learning_rate``.
        a: Value in commit A; ``None`` when the key is absent there.
        b: Value in commit B; ``None`` when the key is absent there.
    """

    key: str
    a: Any
    b: Any


@dataclass(frozen=True)
class MetricRow:
    """One metric of one evaluation set, in one or two commits.

    Attributes:
        set: Evaluation set: the part of the key before its first ``/`` (``validation``,
            ``test``, ``train``, an ``--eval-data`` file name such as ``PandaLM.jsonl``),
            :data:`UNGROUPED` for a key without ``/``.
        metric: The rest of the key, e.g. ``accuracy`` or ``hh-rlhf:x.jsonl/accuracy``.
        a: Value in commit A (``None`` if absent).
        b: Value in commit B (``None`` if absent or a single commit is shown).
        change: ``b - a`` when both are numbers, else ``None``.
    """

    set: str
    metric: str
    a: Any
    b: Any = None
    change: float | None = None


@dataclass(frozen=True)
class TensorStats:
    """How much one tensor changed from A to B (both read as float64).

    Attributes:
        norm_a: ``‖A‖₂``.
        norm_diff: ``‖B − A‖₂``.
        relative_l2: ``‖B − A‖₂ / ‖A‖₂``; ``inf`` when ``‖A‖ = 0`` and B differs
            (``None`` in JSON, where ``norm_a`` then reads 0).
        cosine: ``⟨A, B⟩ / (‖A‖ ‖B‖)``; ``None`` when either norm is 0.
        max_abs_diff: ``max |B − A|`` over elements.
    """

    norm_a: float
    norm_diff: float
    relative_l2: float
    cosine: float | None
    max_abs_diff: float


@dataclass(frozen=True)
class TensorSide:
    """One tensor of the model a commit means.

    Attributes:
        id: Object id; ``None`` for a tensor an adapter commit computes (a LoRA target,
            ``W + alpha/r · B @ A``), which has no object of its own.
        dtype: Safetensors dtype name, e.g. ``"F32"``.
        shape: Tensor shape.
    """

    id: str | None
    dtype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class TensorChange:
    """One tensor name of either commit.

    Attributes:
        name: Tensor name as in ``model.safetensors``.
        status: ``unchanged`` (same object id, or equal values of a computed tensor),
            ``changed`` (same dtype and shape, other values), ``added`` (only in B),
            ``removed`` (only in A), ``incompatible`` (dtype or shape differ, so no
            element-wise statistics).
        a: A's dtype, shape and object id, ``None`` if added.
        b: B's entry, ``None`` if removed.
        stats: Statistics of a ``changed`` tensor, else ``None``.
    """

    name: str
    status: TensorStatus
    a: TensorSide | None
    b: TensorSide | None
    stats: TensorStats | None = None

    @property
    def nbytes(self) -> int:
        """Bytes of the tensor's raw data on B's side (A's for a removed one)."""
        entry = self.b or self.a
        return entry_nbytes(entry) if entry else 0


@dataclass(frozen=True)
class TensorSummary:
    """Counts and bytes of the tensor comparison.

    Attributes:
        counts: Status -> number of tensors (every status present, 0 included).
        bytes_a: Raw bytes of all of A's tensors.
        bytes_b: Raw bytes of all of B's tensors.
        bytes_differ: Raw bytes of B's tensors that are not in A as they are (changed,
            added, incompatible): what B adds to a store that holds A.
        bytes_removed: Raw bytes of A's tensors that B no longer has.
    """

    counts: dict[str, int]
    bytes_a: int
    bytes_b: int
    bytes_differ: int
    bytes_removed: int


@dataclass(frozen=True)
class CommitDiff:
    """Everything the store alone can say about how commit B differs from commit A.

    Attributes:
        a: Commit A (the old side).
        b: Commit B (the new side).
        params: Params that differ (flattened to dotted keys), plus ``backbone`` and
            ``data_fingerprint`` when they differ; not ``probe.rewards`` (the object id of
            the probe rewards, which differs whenever the models do).
        model_config: Keys of the model's ``config.json`` that differ (flattened).
        files: Other model files (tokenizer...) whose content differs: path -> status
            (``changed``, ``added``, ``removed``).
        metrics: Every metric of either commit, grouped by evaluation set (see :func:`metric_rows`).
        tensors: Every tensor name of either commit, in A's order then B's new ones.
        summary: Counts and bytes.
        top: The ``top_k`` changed tensors with the largest relative L2 change, largest first.
    """

    a: Commit
    b: Commit
    params: list[ValueChange]
    model_config: list[ValueChange]
    files: dict[str, str]
    metrics: list[MetricRow]
    tensors: list[TensorChange]
    summary: TensorSummary
    top: list[TensorChange] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (non-finite floats become ``None``)."""
        out = {
            "a": self.a.id,
            "b": self.b.id,
            "params": [asdict(c) for c in self.params],
            "model_config": [asdict(c) for c in self.model_config],
            "files": self.files,
            "metrics": [asdict(r) for r in self.metrics],
            "tensors": [_tensor_dict(t) for t in self.tensors],
            "summary": asdict(self.summary),
            "top": [t.name for t in self.top],
        }
        return json_ready(out)


def diff_commits(repo: Repository, a: Commit | str, b: Commit | str, top_k: int = 10) -> CommitDiff:
    """Compare commit ``b`` against commit ``a``: params, metrics, model files and every tensor.

    Args:
        repo: The repository holding both.
        a: The old side: a commit or a ref (``main~1``, an id prefix...).
        b: The new side.
        top_k: How many changed tensors to rank by relative L2 change.

    A LoRA adapter commit is compared as the model it means (:mod:`rewardkit.store.adapters`):
    its base's tensors with the LoRA targets merged and the head replaced, and its base's
    files overlaid by its own, so an adapter diffs against its base, a full fine-tune or
    another adapter tensor by tensor. Its effective tensors are computed one at a time, in
    its base's order (every base tensor is read once).

    Returns:
        The comparison. Unchanged tensors (same object id) are never read; changed ones
        are read (and re-hashed) two at a time.

    Raises:
        RefError: A ref does not name exactly one commit.
        StoreError: A manifest or an object read is missing or corrupt.
    """
    ca = repo.resolve(a) if isinstance(a, str) else a
    cb = repo.resolve(b) if isinstance(b, str) else b
    ma, mb = _model(repo, ca), _model(repo, cb)
    tensors = list(_tensor_changes(repo, ma, mb))
    changed = [t for t in tensors if t.stats is not None]
    top = sorted(changed, key=_most_changed_first)[: max(top_k, 0)]
    return CommitDiff(
        a=ca,
        b=cb,
        params=_params_diff(ca, cb),
        model_config=_model_config_diff(repo, ma, mb),
        files=_files_diff(ma, mb),
        metrics=metric_rows(ca.metrics or {}, cb.metrics or {}),
        tensors=tensors,
        summary=_summary(tensors, ma, mb),
        top=top,
    )


def tensor_stats(a: torch.Tensor, b: torch.Tensor) -> TensorStats:
    """Statistics of the change from ``a`` to ``b`` (same shape; any dtype), in float64.

    Computed over flat chunks of :data:`CHUNK` elements, so the float64 copies stay small
    however large the tensors.

    Raises:
        ValueError: If the shapes differ.
    """
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    fa, fb = a.reshape(-1), b.reshape(-1)
    sum_aa = sum_bb = sum_dd = sum_ab = 0.0
    max_abs = 0.0
    for start in range(0, fa.numel(), CHUNK):
        x = fa[start : start + CHUNK].to(torch.float64)
        y = fb[start : start + CHUNK].to(torch.float64)
        d = y - x  # ‖B − A‖ from the differences themselves: no cancellation when B ≈ A
        sum_aa += float(x @ x)
        sum_bb += float(y @ y)
        sum_dd += float(d @ d)
        sum_ab += float(x @ y)
        chunk_max = float(d.abs().max())  # NaN if any difference is NaN (inf − inf included)
        if not math.isnan(max_abs) and (math.isnan(chunk_max) or chunk_max > max_abs):
            max_abs = chunk_max
    norm_a, norm_b, norm_diff = math.sqrt(sum_aa), math.sqrt(sum_bb), math.sqrt(sum_dd)
    if norm_a > 0:
        relative = norm_diff / norm_a  # inf or NaN when B holds non-finite values
    else:
        relative = math.inf if norm_diff > 0 else 0.0
    cosine: float | None = None
    if not all(math.isfinite(v) for v in (sum_aa, sum_bb, sum_ab)):
        cosine = math.nan  # a non-finite weight: no angle to report, and never a made-up ±1
    elif norm_a > 0 and norm_b > 0:
        cosine = min(1.0, max(-1.0, sum_ab / (norm_a * norm_b)))  # rounding can step past ±1
    return TensorStats(norm_a=norm_a, norm_diff=norm_diff, relative_l2=relative, cosine=cosine,
                       max_abs_diff=max_abs)


def metric_rows(a: Mapping[str, Any], b: Mapping[str, Any] | None = None) -> list[MetricRow]:
    """The metrics of one commit (``b`` None) or two, grouped by evaluation set.

    A key ``validation/accuracy`` is metric ``accuracy`` of set ``validation``; per-source
    keys such as ``test/hh-rlhf:x.jsonl/accuracy`` stay in set ``test`` (set names are split
    names and ``--eval-data`` file names, which hold no ``/``; source names may). Sets come
    in the order train, validation, test, then alphabetically; within a set ``accuracy``
    first, then alphabetically.
    """
    keys = sorted(set(a) | set(b or {}), key=_metric_order)
    rows = []
    for key in keys:
        group, metric = _split_metric(key)
        va, vb = a.get(key), (b or {}).get(key)
        rows.append(MetricRow(group, metric, va, vb, _change(va, vb) if b is not None else None))
    return rows


def flatten(value: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level of dotted keys (``{"a": {"b": 1}}`` -> ``{"a.b": 1}``); lists stay values."""
    out: dict[str, Any] = {}
    for key, item in value.items():
        name = f"{prefix}{key}"
        if isinstance(item, Mapping) and item:
            out |= flatten(item, f"{name}.")
        else:
            out[name] = item
    return out


def value_changes(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[ValueChange]:
    """The keys of two flat mappings whose values differ (absent = ``None``), sorted."""
    return [ValueChange(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


# -- helpers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Model:
    """A commit as the model it means: its (effective) tensors and files."""

    commit: Commit
    tensors: dict[str, TensorSide]
    files: dict[str, str]


def _model(repo: Repository, commit: Commit) -> _Model:
    manifest = repo.manifest(commit)
    if not is_adapter(commit):
        tensors = {n: TensorSide(e.id, e.dtype, e.shape) for n, e in manifest.tensors.items()}
        return _Model(commit, tensors, manifest.files)
    base = repo.manifest(base_of(repo, commit))
    ids = effective_tensor_ids(repo, commit)
    tensors = {n: TensorSide(ids[n], e.dtype, e.shape) for n, e in base.tensors.items()}
    own = {n: i for n, i in manifest.files.items() if n != ADAPTER_CONFIG_FILE}  # as adapters.model_files
    return _Model(commit, tensors, base.files | own)


def _read_in_order(repo: Repository, model: _Model, names: list[str]) -> Iterator[torch.Tensor]:
    """The tensors ``names`` of ``model``, in that order, each read (and re-hashed) when asked for.

    An adapter's effective tensors come in its base's order; one asked for later is kept
    until then (none when ``names`` follows that order, as diff's does).
    """
    if not is_adapter(model.commit):
        for name in names:
            yield repo.objects.get_tensor(model.tensors[name].id or "", verify=True)
        return
    wanted, early = set(names), {}
    effective = effective_tensors(repo, model.commit)
    for name in names:
        while name not in early:
            got, tensor = next(effective)
            if got in wanted:
                early[got] = tensor
        yield early.pop(name)


def _tensor_changes(repo: Repository, ma: _Model, mb: _Model) -> Iterator[TensorChange]:
    def read(a: TensorSide, b: TensorSide | None) -> bool:
        same_kind = b is not None and (a.dtype, a.shape) == (b.dtype, b.shape)
        return same_kind and (a.id is None or a.id != b.id)  # type: ignore[union-attr]

    names = [n for n, ea in ma.tensors.items() if read(ea, mb.tensors.get(n))]
    # two generators, not zip(): zip keeps its last tuple, a third tensor in memory at each read
    from_a, from_b = _read_in_order(repo, ma, names), _read_in_order(repo, mb, names)
    for name, ea in ma.tensors.items():
        eb = mb.tensors.get(name)
        if eb is None:
            yield TensorChange(name, "removed", ea, None)
        elif (ea.dtype, ea.shape) != (eb.dtype, eb.shape):
            yield TensorChange(name, "incompatible", ea, eb)
        elif not read(ea, eb):
            yield TensorChange(name, "unchanged", ea, eb)
        else:
            stats = tensor_stats(next(from_a), next(from_b))
            same = stats.norm_diff == 0 and stats.max_abs_diff == 0  # two computed tensors may be equal
            yield TensorChange(name, "unchanged" if same else "changed", ea, eb, None if same else stats)
    for name, eb in mb.tensors.items():
        if name not in ma.tensors:
            yield TensorChange(name, "added", None, eb)


def _most_changed_first(t: TensorChange) -> tuple[bool, float]:
    """Sort key: a NaN change first (damaged weights), then by relative L2 change, largest first."""
    relative = t.stats.relative_l2 if t.stats else 0.0
    return (not math.isnan(relative), 0.0 if math.isnan(relative) else -relative)


def _summary(tensors: list[TensorChange], ma: _Model, mb: _Model) -> TensorSummary:
    counts = dict.fromkeys(("unchanged", "changed", "incompatible", "added", "removed"), 0)
    for t in tensors:
        counts[t.status] += 1
    return TensorSummary(
        counts=counts,
        bytes_a=sum(entry_nbytes(e) for e in ma.tensors.values()),
        bytes_b=sum(entry_nbytes(e) for e in mb.tensors.values()),
        bytes_differ=sum(t.nbytes for t in tensors if t.status in ("changed", "added", "incompatible")),
        bytes_removed=sum(t.nbytes for t in tensors if t.status == "removed"),
    )


def _params_diff(a: Commit, b: Commit) -> list[ValueChange]:
    def flat(c: Commit) -> dict[str, Any]:
        out = flatten(c.params or {}) | {"backbone": c.backbone, "data_fingerprint": c.data_fingerprint}
        out.pop(PROBE_REWARDS, None)  # differs whenever the models do; the behaviour diff compares them
        return out

    return value_changes(flat(a), flat(b))


def _model_config_diff(repo: Repository, ma: _Model, mb: _Model) -> list[ValueChange]:
    ia, ib = ma.files.get(MODEL_CONFIG_FILE), mb.files.get(MODEL_CONFIG_FILE)
    if ia == ib:
        return []
    return value_changes(_json_file(repo, ia), _json_file(repo, ib))


def _json_file(repo: Repository, id: str | None) -> dict[str, Any]:
    if id is None:
        return {}
    try:
        value = json.loads(repo.objects.get_bytes(id, verify=True))
    except ValueError:
        return {}  # not JSON: the file list still says it changed
    return flatten(value) if isinstance(value, dict) else {}


def _files_diff(ma: _Model, mb: _Model) -> dict[str, str]:
    out = {}
    for name in sorted(set(ma.files) | set(mb.files)):
        ia, ib = ma.files.get(name), mb.files.get(name)
        if ia != ib:
            out[name] = "added" if ia is None else "removed" if ib is None else "changed"
    return out


def _split_metric(key: str) -> tuple[str, str]:
    group, sep, metric = key.partition("/")
    return (group, metric) if sep and group and metric else (UNGROUPED, key)


def _metric_order(key: str) -> tuple[int, str, int, str]:
    group, metric = _split_metric(key)
    rank = SET_ORDER.index(group) if group in SET_ORDER else len(SET_ORDER) + (group == UNGROUPED)
    return rank, group, metric != "accuracy", metric


def _change(a: Any, b: Any) -> float | None:
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (a, b))
    return b - a if numbers else None


def _tensor_dict(t: TensorChange) -> dict[str, Any]:
    return {
        "name": t.name,
        "status": t.status,
        "a": asdict(t.a) if t.a else None,
        "b": asdict(t.b) if t.b else None,
        "nbytes": t.nbytes,
        "stats": asdict(t.stats) if t.stats else None,
    }


def json_ready(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by ``None`` (JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return value
