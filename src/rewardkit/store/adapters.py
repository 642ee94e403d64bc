"""LoRA adapter commits: an adapter's tensors and head, stored on top of a base commit.

An **adapter commit** stores what ``peft`` saves for a LoRA reward model and nothing more:
the tensors of ``adapter_model.safetensors`` under their peft names
(``base_model.model.<module>.lora_A.weight``, ``...lora_B.weight``, and the trained head,
e.g. ``base_model.model.score.weight``), ``adapter_config.json`` and the tokenizer files.
Its ``params["adapter"]`` names the **base commit**, a full model whose tensors the adapter
applies to::

    {"base": "<commit id>", "peft_type": "LORA", "r": 8, "lora_alpha": 16.0,
     "target_modules": ["query", "value"], "modules_to_save": ["classifier"]}

What the adapter means in weights, its **effective tensors** (:func:`effective_tensors`),
is the base's tensors with every LoRA target replaced by ``W + alpha/r * B @ A`` (as
``peft``'s ``merge_and_unload`` computes it) and the head replaced by the adapter's head.
Checkout writes either the adapter folder, with the base beside it in ``base/``
(``peft.PeftModel.from_pretrained(base, folder)`` loads it), or, ``merged``, those
effective tensors as a plain model folder (``AutoModelForSequenceClassification``).

For diff and merge, :func:`effective_tensors` and :func:`effective_tensor_ids` read any
commit, adapter or full model, the same way, and :func:`check_mergeable` says whether a
set of commits can be merged tensor by tensor.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from rewardkit.errors import ModelError, StoreError
from rewardkit.store.commits import Commit
from rewardkit.store.modeldir import WEIGHTS_METADATA, staged_folder, write_model_dir, write_weights
from rewardkit.store.objects import tensor_bytes

if TYPE_CHECKING:
    from rewardkit.store.manifest import Manifest, TensorEntry
    from rewardkit.store.repository import Repository

ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors"
ADAPTER_CONFIG_FILE = "adapter_config.json"
#: peft's name prefix of every tensor of a ``PeftModel`` adapter file.
PEFT_PREFIX = "base_model.model."
#: Where an adapter checkout puts its base model, beside the adapter files.
BASE_DIR = "base"
#: Files of an adapter folder that are not stored: peft's generated model card.
_NOT_STORED = ("README.md",)
_LORA_A, _LORA_B = ".lora_A.weight", ".lora_B.weight"


def is_adapter(commit: Commit) -> bool:
    """Whether ``commit`` stores a LoRA adapter on a base commit (``params["adapter"]``)."""
    return isinstance((commit.params or {}).get("adapter"), dict)


def base_of(repo: Repository, commit: Commit) -> Commit:
    """The base commit an adapter commit applies to.

    Raises:
        StoreError: ``commit`` is not an adapter, or its base is not in the repository.
    """
    if not is_adapter(commit):
        raise StoreError(f"commit {commit.id[:10]} is a full model, not a LoRA adapter")
    base = commit.adapter_base()  # params["adapter"]["base"]; gc keeps it reachable
    if not base or not repo.commits.has(base):
        raise StoreError(f"adapter commit {commit.id[:10]} names base commit {str(base)[:10]}, which is not in "
                         "the repository; restore it from a backup or a remote")
    return repo.commits.get(base)


# -- committing ------------------------------------------------------------------------

def read_adapter_dir(folder: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, bytes]]:
    """Read an adapter folder as ``PeftModel.save_pretrained`` (and the tokenizer) wrote it.

    Returns:
        The tensors of ``adapter_model.safetensors`` by their peft names (CPU), and every
        other top-level file except peft's ``README.md``; ``adapter_config.json`` has its
        ``base_model_name_or_path`` cleared, since the base is a commit (a checkout fills it in).

    Raises:
        ModelError: The folder lacks ``adapter_model.safetensors`` or ``adapter_config.json``,
            or they cannot be read.
    """
    folder = Path(folder)
    weights, config_path = folder / ADAPTER_WEIGHTS_FILE, folder / ADAPTER_CONFIG_FILE
    for path in (weights, config_path):
        if not path.is_file():
            raise ModelError(f"{folder} has no {path.name}; save the LoRA model with "
                             "peft_model.save_pretrained(folder)")
    try:
        with safe_open(str(weights), framework="pt") as f:
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118
        config = json.loads(config_path.read_text())
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ModelError(f"cannot read the adapter in {folder}: {exc}") from exc
    config["base_model_name_or_path"] = None
    files = {p.name: p.read_bytes() for p in sorted(folder.iterdir())
             if p.is_file() and p.name not in (ADAPTER_WEIGHTS_FILE, ADAPTER_CONFIG_FILE, *_NOT_STORED)}
    files[ADAPTER_CONFIG_FILE] = (json.dumps(config, indent=2, sort_keys=True) + "\n").encode()
    return tensors, files


def commit_adapter(repo: Repository, folder: str | Path, base: Commit, message: str, *,
                   params: dict[str, Any] | None = None, **meta: Any) -> Commit:  # noqa: ANN401 (commit fields)
    """Commit the adapter folder ``folder`` as an adapter on ``base``; only its own tensors are stored.

    The adapter is checked against the base's manifest (every LoRA target and the head
    exist there with matching shapes) before anything is written.

    Args:
        repo: The repository.
        folder: The adapter folder (see :func:`read_adapter_dir`).
        base: A full-model commit of ``repo``.
        message: The commit message.
        params: Other params; ``params["adapter"]`` is added.
        **meta: Passed to :meth:`Repository.commit_tensors` (metrics, backbone, ...).

    Raises:
        ModelError: The folder is not a readable adapter.
        StoreError: ``base`` is an adapter itself, or the adapter does not fit its tensors.
    """
    if is_adapter(base):
        raise StoreError(f"the base of a LoRA adapter must be a full model; {base.id[:10]} is an adapter itself: "
                         "check it out with --merged and commit that folder to use it as a base")
    tensors, files = read_adapter_dir(folder)
    config = json.loads(files[ADAPTER_CONFIG_FILE])
    plan = _LoraPlan.build(config, {n: (t.dtype, tuple(t.shape)) for n, t in tensors.items()}, repo.manifest(base))
    adapter = {"base": base.id, "peft_type": config.get("peft_type"), "r": config.get("r"),
               "lora_alpha": config.get("lora_alpha"), "target_modules": sorted(config.get("target_modules") or []),
               "modules_to_save": sorted({name.rsplit(".", 1)[0] for name in plan.replaced})}
    return repo.commit_tensors(tensors, files, message, params=(params or {}) | {"adapter": adapter}, **meta)


# -- reading -----------------------------------------------------------------------------

@dataclass(frozen=True)
class _LoraPlan:
    """How an adapter's tensors turn a base's tensors into the effective ones.

    Attributes:
        deltas: Base tensor name -> (lora_A name, lora_B name) in the adapter.
        replaced: Base tensor name -> adapter tensor name (the head: peft's ``modules_to_save``).
        scaling: ``lora_alpha / r`` (``/ sqrt(r)`` with rsLoRA).
        fan_in_fan_out: The base stores these weights transposed (GPT-2's ``Conv1D``).
    """

    deltas: dict[str, tuple[str, str]]
    replaced: dict[str, str]
    scaling: float
    fan_in_fan_out: bool

    @classmethod
    def build(cls, config: dict[str, Any], adapter: dict[str, tuple[str, tuple[int, ...]]],
              base: Manifest) -> _LoraPlan:
        """Match an adapter (``name -> (dtype, shape)``) to a base manifest.

        Raises:
            StoreError: A kind of adapter this does not support (not LoRA, DoRA, per-module
                ranks, LoRA biases or embeddings), or a tensor with no counterpart of the
                right shape in the base.
        """
        unsupported = [what for what, bad in (
            (f"peft_type {config.get('peft_type')!r}", config.get("peft_type") != "LORA"),
            ("DoRA", config.get("use_dora")), ("per-module ranks", config.get("rank_pattern")),
            ("per-module alphas", config.get("alpha_pattern")), ("LoRA biases", config.get("lora_bias")),
        ) if bad]
        r, alpha = config.get("r"), config.get("lora_alpha")
        if not isinstance(r, int) or r < 1 or not isinstance(alpha, int | float):
            unsupported.append(f"r={r!r}, lora_alpha={alpha!r}")
        if unsupported:
            raise StoreError(f"unsupported adapter ({', '.join(unsupported)}): rewardkit stores plain LoRA adapters")
        fan_in_fan_out = bool(config.get("fan_in_fan_out"))
        deltas, replaced = {}, {}
        for name, (_, shape) in adapter.items():
            short = name.removeprefix(PEFT_PREFIX)
            if short.endswith(_LORA_A):
                module = short.removesuffix(_LORA_A)
                b_name = PEFT_PREFIX + module + _LORA_B
                if b_name not in adapter:
                    raise StoreError(f"adapter tensor {name} has no {b_name} beside it")
                b_shape = adapter[b_name][1]
                if len(shape) != 2 or len(b_shape) != 2 or shape[0] != r or b_shape[1] != r:
                    raise StoreError(f"adapter tensors {name} {list(shape)} and {b_name} {list(b_shape)} do not "
                                     f"have rank r={r} (lora_A must be [r, in], lora_B [out, r])")
                out_in = (b_shape[0], shape[1])
                target = module + ".weight"
                expected = out_in[::-1] if fan_in_fan_out else out_in
                deltas[target] = (name, b_name)
            elif short.endswith(_LORA_B):
                continue  # checked with its lora_A
            elif ".lora_" in short:
                raise StoreError(f"unsupported adapter tensor {name}: only LoRA on linear layers is stored")
            else:
                target, expected = short, shape
                replaced[target] = name
            entry = base.tensors.get(target)
            if entry is None or tuple(entry.shape) != tuple(expected):
                found = "none" if entry is None else f"shape {list(entry.shape)}"
                raise StoreError(f"adapter tensor {name} does not fit the base: it needs {target} of shape "
                                 f"{list(expected)}, the base has {found}; train the adapter on this base")
        scaling = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
        return cls(deltas, replaced, scaling, fan_in_fan_out)

    def apply(self, name: str, base: torch.Tensor, adapter: dict[str, torch.Tensor]) -> torch.Tensor:
        """The effective tensor ``name`` from its base tensor, as ``merge_and_unload`` computes it."""
        if name in self.replaced:
            return adapter[self.replaced[name]].to(base.dtype)
        a, b = (adapter[n] for n in self.deltas[name])
        if b.dtype in (torch.float16, torch.bfloat16):  # peft multiplies half-precision factors in float32 on CPU
            a, b = a.float(), b.float()
        delta = b @ a
        return base + ((delta.T if self.fan_in_fan_out else delta) * self.scaling).to(base.dtype)


def _plan(repo: Repository, commit: Commit) -> tuple[Manifest, _LoraPlan, Manifest]:
    """(adapter manifest, plan, base manifest) of an adapter commit."""
    base = base_of(repo, commit)
    manifest, base_manifest = repo.manifest(commit), repo.manifest(base)
    config = json.loads(repo.objects.get_bytes(manifest.files[ADAPTER_CONFIG_FILE], verify=True))
    shapes = {n: (e.dtype, tuple(e.shape)) for n, e in manifest.tensors.items()}
    return manifest, _LoraPlan.build(config, shapes, base_manifest), base_manifest


def effective_tensor_ids(repo: Repository, commit: Commit) -> dict[str, str | None]:
    """Each effective tensor's name -> its object id when it is stored as is, None when computed.

    A full commit maps every tensor to its object; an adapter commit maps the base tensors
    it leaves alone to the base's objects, its head to the adapter's objects, and its LoRA
    targets to None (they exist only as ``W + alpha/r * B @ A``). Reads no tensor: diff can
    skip a name whose ids are equal on both sides.

    Raises:
        StoreError: The commit, its base or an adapter tensor does not fit (see :func:`base_of`).
    """
    if not is_adapter(commit):
        return {n: e.id for n, e in repo.manifest(commit).tensors.items()}
    manifest, plan, base = _plan(repo, commit)
    ids: dict[str, str | None] = {}
    for name, entry in base.tensors.items():
        head = manifest.tensors.get(plan.replaced.get(name, ""))
        if head is not None:  # stored as is, unless apply() has to cast it to the base's dtype
            ids[name] = head.id if head.dtype == entry.dtype else None
        else:
            ids[name] = None if name in plan.deltas else entry.id
    return ids


def effective_tensors(repo: Repository, commit: Commit, *, verify: bool = True) -> Iterator[tuple[str, torch.Tensor]]:
    """The model's tensors by name, one at a time: an adapter's merged into its base's.

    A full commit yields its own tensors. An adapter commit yields every tensor of its base,
    in the base's order, with LoRA targets merged (``W + alpha/r * B @ A``, bit-identical to
    ``peft``'s ``merge_and_unload``) and the head replaced by the adapter's. Only the
    adapter (small) and the current tensor are in memory.

    Args:
        repo: The repository.
        commit: Any commit.
        verify: Re-hash every object read.

    Raises:
        StoreError: An object is missing or corrupt, or the adapter does not fit its base.
    """
    entries, read = _effective_reader(repo, commit, verify)
    for name in entries:
        yield name, read(name)


def _effective_reader(repo: Repository, commit: Commit, verify: bool
                      ) -> tuple[Mapping[str, TensorEntry], Callable[[str], torch.Tensor]]:
    """The entries (name, dtype, shape) of the model a commit means, and a reader of one tensor by name."""
    if not is_adapter(commit):
        own = repo.manifest(commit).tensors
        return own, lambda name: repo.objects.get_tensor(own[name].id, verify=verify)
    manifest, plan, base = _plan(repo, commit)
    adapter = {n: repo.objects.get_tensor(e.id, verify=verify) for n, e in manifest.tensors.items()}

    def read(name: str) -> torch.Tensor:
        tensor = repo.objects.get_tensor(base.tensors[name].id, verify=verify)
        return plan.apply(name, tensor, adapter) if name in plan.deltas or name in plan.replaced else tensor

    return base.tensors, read


def model_files(repo: Repository, commit: Commit, *, verify: bool = True) -> dict[str, bytes]:
    """The small files of the model a commit means: for an adapter, its base's overlaid by its own.

    An adapter commit stores no ``config.json``: the base's is used, and the adapter's
    tokenizer files (which carry the training ``max_length``) replace the base's;
    ``adapter_config.json`` is left out, so the files describe a plain model.
    """
    own = {n: repo.objects.get_bytes(i, verify=verify) for n, i in repo.manifest(commit).files.items()}
    if not is_adapter(commit):
        return own
    base = {n: repo.objects.get_bytes(i, verify=verify) for n, i in repo.manifest(base_of(repo, commit)).files.items()}
    return base | {n: data for n, data in own.items() if n != ADAPTER_CONFIG_FILE}


# -- checkout ------------------------------------------------------------------------------

def checkout_adapter(repo: Repository, commit: Commit, to: str | Path, *, merged: bool = False,
                     force: bool = False, verify: bool = True) -> Path:
    """Write an adapter commit as an adapter folder with its base in ``base/``, or ``merged`` as a plain model.

    The adapter folder holds ``adapter_model.safetensors``, ``adapter_config.json`` (its
    ``base_model_name_or_path`` set to the absolute path of ``<to>/base``) and the tokenizer
    files; ``<to>/base`` is a checkout of the base commit. ``peft.PeftModel.from_pretrained(
    AutoModelForSequenceClassification.from_pretrained(to / "base"), to)`` and
    ``AutoPeftModelForSequenceClassification.from_pretrained(to)`` load it. ``merged`` writes
    :func:`effective_tensors` and :func:`model_files` as a folder that
    ``AutoModelForSequenceClassification.from_pretrained`` loads.

    Raises:
        StoreError: ``to`` is a file or a non-empty folder (without ``force``), the commit is
            not an adapter, or an object is missing or corrupt.
    """
    to = Path(to)
    base = base_of(repo, commit)
    with staged_folder(to, force=force) as stage:  # a failed checkout leaves `to` as it was
        if merged:  # streamed: one merged tensor in memory at a time
            entries, read = _effective_reader(repo, commit, verify)
            write_model_dir(stage, None, model_files(repo, commit, verify=verify))
            write_weights(stage, entries, lambda name: tensor_bytes(read(name)))
            return to
        manifest = repo.manifest(commit)
        files = {n: repo.objects.get_bytes(i, verify=verify) for n, i in manifest.files.items()}
        config = json.loads(files[ADAPTER_CONFIG_FILE])
        config["base_model_name_or_path"] = str((to / BASE_DIR).resolve())
        files[ADAPTER_CONFIG_FILE] = (json.dumps(config, indent=2, sort_keys=True) + "\n").encode()
        repo.checkout(base.id, stage / BASE_DIR, verify=verify)
        write_model_dir(stage, None, files)
        tensors = {n: repo.objects.get_tensor(e.id, verify=verify) for n, e in manifest.tensors.items()}
        save_file(tensors, str(stage / ADAPTER_WEIGHTS_FILE), metadata=WEIGHTS_METADATA)
    return to


# -- merge ---------------------------------------------------------------------------------

def check_mergeable(repo: Repository, commits: Iterable[Commit]) -> None:
    """Refuse a set of commits that cannot be merged tensor by tensor through :func:`effective_tensors`.

    Full commits always pass here (merge checks architectures itself). Adapter commits
    pass when every one resolves against its base (base present, plain LoRA that fits)
    and all adapters share one base model (the same base tensors): their merge is then the
    merge of their effective weights, a full model. Adapters on different bases are refused.

    Raises:
        StoreError: Which adapter fails, and why.
    """
    bases: dict[str, str] = {}
    for commit in commits:
        if is_adapter(commit):
            _plan(repo, commit)
            bases[commit.id] = base_of(repo, commit).manifest_id
    if len(set(bases.values())) > 1:
        shown = ", ".join(f"{cid[:10]} on base weights {mid[:10]}" for cid, mid in bases.items())
        raise StoreError(f"cannot merge LoRA adapters trained on different base models ({shown}); train them "
                         "on one base (train --base-model REF) or merge full checkouts (checkout --merged)")
