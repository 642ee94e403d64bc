"""rewardkit's store against DVC, MLflow and plain ``cp`` on a chain of versions of a large model.

One run builds a BERT reward model of at least ``--size-gib`` (the default backbone's
architecture, all-MiniLM-L6-v2, scaled up: hidden 1024, 16 heads, as many layers as the size
needs; random init; one-output head) and a chain of ``--versions`` versions of it, as training
would save them (``model.safetensors``, ``config.json``, the tokenizer): the base, then
head-only changes, a few with the top two layers changed, one full fine-tune (every tensor
``θ + 1e-3·noise``) and a last head-only change. Each tool stores every version, then checks
out the last one and the base:

- rewardkit: ``rewardkit commit`` / ``rewardkit checkout`` (the CLI's ``main()``);
- DVC: ``dvc add`` + ``git commit`` in a scratch git repository; ``git checkout <rev> --
  model.dvc`` + ``dvc checkout``; bytes = the DVC cache;
- MLflow: a run per version, ``mlflow.log_artifacts`` to a local store (SQLite backend, local
  artifact root); ``mlflow.artifacts.download_artifacts``; bytes = artifacts + database;
- cp: ``cp -r`` of the model folder to a folder per version; checkout is ``cp -r`` back: the
  baseline for checkout speed.

Every commit and checkout runs in its own process (this script with ``--worker``), so peak
memory is that process's own: its ``VmHWM`` (see :func:`peak_rss`), or a child's ``ru_maxrss``
(``git``, ``cp``) if larger. The tool is imported before the clock starts: *seconds* is the
operation, *process seconds* the whole command (interpreter start-up and imports included). Only public APIs and
CLIs are called, so the numbers follow whatever the store does today.

``--merge`` also times ``rewardkit merge BRANCH --strategy average`` of two branches whose
every tensor differs from their merge-base, and reports its peak memory against the model's
size. It is skipped, with the reason, when the CLI has no ``merge`` (or ``branch``/``switch``).

    PYTHONPATH=src .venv/bin/python bench/store_vs_dvc_mlflow.py --merge --json bench/store.json
    PYTHONPATH=src .venv/bin/python bench/store_vs_dvc_mlflow.py --size-gib 0.01 --versions 3  # smoke
    PYTHONPATH=src .venv/bin/python bench/store_vs_dvc_mlflow.py --report bench/store.json  # the table again

Method, columns and results: bench/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from cpu_meter import DEFAULT_THRESHOLD, CpuMeter

TOOLS = ("rewardkit", "dvc", "mlflow", "cp")
LABELS = {"rewardkit": "rewardkit", "dvc": "DVC", "mlflow": "MLflow", "cp": "cp"}
WEIGHTS = "model.safetensors"
HEAD = "classifier."  # BertForSequenceClassification's one-output head
HIDDEN_MAX = 1024  # bert-large's width; smaller sizes use a narrower model
HEAD_DIM = 64
FULL_NOISE = 1e-3  # a full fine-tune: every tensor + 1e-3 * N(0, 1)
PARTIAL_NOISE = 1e-2  # head and top layers: + 1e-2 * N(0, 1)
MERGE_BRANCH = "bench-merge"
TARGET_HEAD_SPEEDUP = 20.0
TARGET_HEAD_DISK = 1.05
TARGET_CHECKOUT_VS_CP = 2.0
TARGET_MERGE_EXTRA = 0.5  # merge's memory beyond its start-up, as a fraction of the model: "bounded"


# -- the model and its versions ----------------------------------------------------------------


def scaled_config(size_bytes: int):  # noqa: ANN201 (transformers.BertConfig)
    """The default backbone's BERT config, scaled so the fp32 model has at least ``size_bytes``.

    Hidden size: the widest multiple of 64, up to 1024 (bert-large), at which the embeddings,
    pooler, head and two layers fit in the size (64 if none does); heads of 64; intermediate
    4x hidden; then as many layers (2 at least) as reach the size. A one-output
    sequence-classification head. 1 GiB gives hidden 1024 and 19 layers (272M parameters).
    """
    from transformers import AutoConfig

    from rewardkit.models import default_backbone

    config = AutoConfig.from_pretrained(default_backbone())
    rows = config.vocab_size + config.max_position_embeddings + config.type_vocab_size

    def fixed(h: int) -> int:  # embeddings (+ LayerNorm), pooler, one-output head
        return rows * h + 2 * h + h * h + h + h + 1

    def per_layer(h: int) -> int:  # attention 4 x (h x h + h), FFN h x 4h + 4h + 4h x h + h, 2 LayerNorms
        return 12 * h * h + 13 * h

    target = math.ceil(size_bytes / 4)
    widths = [h for h in range(HEAD_DIM, HIDDEN_MAX + 1, HEAD_DIM) if fixed(h) + 2 * per_layer(h) <= target]
    hidden = max(widths, default=HEAD_DIM)
    layers = max(2, math.ceil((target - fixed(hidden)) / per_layer(hidden)))
    config.update({"hidden_size": hidden, "num_attention_heads": hidden // HEAD_DIM,
                   "intermediate_size": 4 * hidden, "num_hidden_layers": layers, "num_labels": 1,
                   "architectures": ["BertForSequenceClassification"], "_name_or_path": "rewardkit-bench"})
    return config


def build_base(size_bytes: int, seed: int):  # noqa: ANN201 (config, dict[str, torch.Tensor])
    """The base version: a randomly initialised ``BertForSequenceClassification`` of ``scaled_config``.

    Returns:
        The config and the state dict (fp32 CPU tensors, detached).
    """
    import torch
    from transformers import BertForSequenceClassification

    config = scaled_config(size_bytes)
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config)
    state = {name: t.detach() for name, t in model.state_dict().items()}
    return config, state


def version_plan(n: int) -> list[str]:
    """The kind of each version: ``base``, then ``head`` changes, ``layers``, one ``full``, ``head``.

    For 10: base, 5 x head, 2 x layers, full, head. The head-only versions come first, so
    the store's size after them shows what head-only versions cost.
    """
    if n < 3:
        raise SystemExit(f"--versions must be at least 3 (base, a head-only change, a full fine-tune), got {n}")
    changes = n - 1
    layers = 2 if changes >= 6 else 1 if changes >= 3 else 0
    head_after = 1 if changes >= 5 else 0
    return ["base"] + ["head"] * (changes - 1 - layers - head_after) + ["layers"] * layers + ["full"] \
        + ["head"] * head_after


def changed_names(state: dict, kind: str, num_layers: int) -> list[str]:
    """Names of the tensors a version of ``kind`` changes (floating-point tensors only)."""
    floats = [n for n, t in state.items() if t.is_floating_point()]
    if kind == "full":
        return floats
    prefixes = [HEAD]
    if kind == "layers":
        prefixes += [f"bert.encoder.layer.{i}." for i in (num_layers - 2, num_layers - 1)]
    return [n for n in floats if n.startswith(tuple(prefixes))]


def apply_change(state: dict, kind: str, seed: int, num_layers: int) -> list[str]:
    """Perturb ``state`` in place as a version of ``kind`` would; returns the changed names."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    scale = FULL_NOISE if kind == "full" else PARTIAL_NOISE
    names = changed_names(state, kind, num_layers)
    for name in names:
        t = state[name]
        t.add_(torch.randn(t.shape, generator=generator, dtype=t.dtype), alpha=scale)
    return names


def write_version(folder: Path, state: dict) -> None:
    """Write ``model.safetensors`` as ``save_pretrained`` does (replacing the file, never writing into it)."""
    from safetensors.torch import save_file

    path = folder / WEIGHTS
    path.unlink(missing_ok=True)  # a tool may have linked the previous version to its cache
    save_file(state, str(path), metadata={"format": "pt"})


def write_model_files(folder: Path, config) -> None:  # noqa: ANN001 (BertConfig)
    """Write ``config.json`` and the default backbone's tokenizer files into ``folder``."""
    from rewardkit.models import default_backbone
    from rewardkit.models.text import load_tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(folder)
    load_tokenizer(default_backbone()).save_pretrained(folder)


def digest(tensors) -> str:  # noqa: ANN001 (mapping name -> tensor, or a safetensors file handle)
    """BLAKE2b of every tensor's name, dtype, shape and bytes, in name order."""
    import torch

    h = hashlib.blake2b(digest_size=16)
    keys = sorted(tensors.keys())
    for name in keys:
        t = tensors[name] if isinstance(tensors, dict) else tensors.get_tensor(name)
        h.update(f"{name}|{t.dtype}|{list(t.shape)}|".encode())
        h.update(t.contiguous().view(-1).view(dtype=torch.uint8).numpy().tobytes())
    return h.hexdigest()


def file_digest(path: Path) -> str:
    """:func:`digest` of a ``model.safetensors`` file."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return digest(f)


# -- measuring one operation in its own process ------------------------------------------------


@dataclass
class Op:
    """One measured operation (a commit, a checkout, a merge).

    Attributes:
        seconds: The operation alone, the tool already imported (cp: the ``cp`` process).
        process_seconds: The whole process: interpreter start-up, imports, the operation.
        peak_rss: Peak resident memory of the process, or of a child if larger (bytes).
        rss_before: Peak resident memory before the operation started: start-up and imports (bytes).
        other_cpu: Share of our cores other processes took meanwhile (see ``cpu_meter``).
        result: What the worker returned (e.g. MLflow's run id).
    """

    seconds: float
    process_seconds: float
    peak_rss: int
    rss_before: int
    other_cpu: float | None
    result: dict[str, Any] = field(default_factory=dict)


def peak_rss() -> int:
    """Peak resident memory of this process since it started its program (bytes).

    ``VmHWM`` of ``/proc/self/status``: the high-water mark of the process's own memory map,
    which ``exec`` starts afresh. ``ru_maxrss`` would not do: Linux carries it across ``fork`` and
    ``exec``, so a child of a 2 GiB parent would report 2 GiB. Off Linux, ``ru_maxrss``.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def children_peak_rss() -> int:
    """Largest ``ru_maxrss`` of the children this process waited for (bytes): ``git``, ``cp``.

    Each child inherits this process's high-water mark at ``fork``, so this is at least
    :func:`peak_rss` at the time; the maximum of the two is the peak of the operation.
    """
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def measure(argv: list[str], *, cwd: Path, env: dict[str, str], logs: Path) -> Op:
    """Run a worker to completion and measure it; its result is read from its result file.

    Raises:
        RuntimeError: The process failed; the message holds the end of its output.
    """
    logs.mkdir(parents=True, exist_ok=True)
    out, result_file = logs / "output.txt", logs / "result.json"
    result_file.unlink(missing_ok=True)
    env = env | {"BENCH_RESULT": str(result_file)}
    os.sync()  # the previous step's dirty pages are written now, not charged to this operation
    with open(out, "wb") as log, CpuMeter() as meter:
        start = time.perf_counter()
        code = subprocess.run(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
        wall = time.perf_counter() - start
    if code != 0:
        tail = out.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{' '.join(argv[2:])} failed with exit code {code}:\n{tail}")
    return read_result(result_file, wall, meter.usage.other_share)


def read_result(path: Path, process_seconds: float, other_cpu: float | None) -> Op:
    """The :class:`Op` of a worker that wrote its result (see :func:`worker`) to ``path``."""
    result = json.loads(path.read_text())
    return Op(seconds=result.pop("seconds"), process_seconds=process_seconds, peak_rss=result.pop("peak_rss"),
              rss_before=result.pop("rss_before"), other_cpu=other_cpu, result=result)


# -- the worker: one tool operation per process ------------------------------------------------


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)


def _rewardkit(action: str, args: dict) -> Any:
    import transformers  # noqa: F401 (what `commit` loads to read config.json: imported before the clock)

    import rewardkit.api
    import rewardkit.store.repository  # noqa: F401
    from rewardkit.cli.main import main

    def run() -> dict:
        code = main(args["argv"])
        if code != 0:
            raise SystemExit(f"rewardkit {' '.join(args['argv'])} exited with {code}")
        return {"rewardkit": str(Path(rewardkit.api.__file__).parent.parent)}

    return run


def _dvc(action: str, args: dict) -> Any:
    from dvc.cli import main

    def dvc(*argv: str) -> None:
        code = main(list(argv))
        if code != 0:
            raise SystemExit(f"dvc {' '.join(argv)} exited with {code}")

    def init() -> dict:
        _run("git", "init", "-q")
        _run("git", "config", "user.name", "bench")
        _run("git", "config", "user.email", "bench@example.invalid")
        dvc("init", "-q")
        dvc("config", "core.analytics", "false")
        dvc("config", "core.check_update", "false")
        _run("git", "commit", "-q", "-m", "dvc init")
        return {}

    def commit() -> dict:
        dvc("add", "-q", "model")
        _run("git", "add", "model.dvc", ".gitignore")
        _run("git", "commit", "-q", "-m", args["message"])
        return {}

    def checkout() -> dict:
        _run("git", "checkout", "-q", args["rev"], "--", "model.dvc")
        dvc("checkout", "-q", "model")
        return {}

    return {"init": init, "commit": commit, "checkout": checkout}[action]


def _mlflow(action: str, args: dict) -> Any:
    import mlflow
    import mlflow.artifacts

    mlflow.set_tracking_uri(args["uri"])
    if action == "init":
        return lambda: {"experiment_id": mlflow.create_experiment("bench", artifact_location=args["artifacts"])}
    mlflow.MlflowClient().get_experiment(args["experiment_id"])  # opens the database before the clock starts

    def commit() -> dict:
        with mlflow.start_run(experiment_id=args["experiment_id"], run_name=args["message"]) as run:
            mlflow.log_artifacts(args["model"], artifact_path="model")
        return {"run_id": run.info.run_id}

    def checkout() -> dict:
        mlflow.artifacts.download_artifacts(run_id=args["run_id"], artifact_path="model", dst_path=args["to"])
        return {}

    return {"commit": commit, "checkout": checkout}[action]


def _cp(action: str, args: dict) -> Any:
    def cp() -> dict:
        _run("cp", "-r", args["from"], args["to"])
        return {}

    return cp


def worker(argv: list[str]) -> None:
    """``--worker TOOL ACTION JSON``: import the tool, then time one action; result to $BENCH_RESULT."""
    tool, action, args = argv[0], argv[1], json.loads(argv[2])
    run = {"rewardkit": _rewardkit, "dvc": _dvc, "mlflow": _mlflow, "cp": _cp}[tool](action, args)
    rss_before = peak_rss()
    start = time.perf_counter()
    result = run()
    seconds = time.perf_counter() - start
    peak = max(peak_rss(), children_peak_rss())
    Path(os.environ["BENCH_RESULT"]).write_text(json.dumps({"seconds": seconds, "rss_before": rss_before,
                                                            "peak_rss": peak, **result}))


# -- the tools, as the benchmark drives them ---------------------------------------------------


def tree_bytes(path: Path) -> dict[str, int]:
    """Apparent and allocated bytes of every file under ``path`` (``du --apparent-size`` / ``du``)."""
    apparent = allocated = 0
    for root, _, files in os.walk(path):
        for name in files:
            st = os.lstat(os.path.join(root, name))
            apparent += st.st_size
            allocated += st.st_blocks * 512
    return {"apparent": apparent, "allocated": allocated}


class Tool:
    """One tool's store in ``root``; ``model`` is the folder each version is written to."""

    name = ""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root, self.env = root, env
        self.model = root / "model"
        self.logs = root / "logs"
        self.count = 0

    def work(self, action: str, args: dict, cwd: Path | None = None) -> Op:
        self.count += 1
        argv = [sys.executable, str(Path(__file__).resolve()), "--worker", self.name, action, json.dumps(args)]
        return measure(argv, cwd=cwd or self.root, env=self.env, logs=self.logs / f"{self.count:03d}-{action}")

    def init(self) -> None: ...

    def commit(self, index: int, message: str) -> Op:
        raise NotImplementedError

    def checkout(self, index: int, latest: int, to: Path) -> tuple[Op, Path]:
        """Check out version ``index``; returns the measurement and the weights file written."""
        raise NotImplementedError

    def store_bytes(self) -> dict[str, int]:
        raise NotImplementedError


class RewardkitTool(Tool):
    name = "rewardkit"

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        super().__init__(root, env | {"REWARDKIT_REPO": str(root / "repo")})

    def cli(self, *argv: str) -> Op:
        """Run ``rewardkit ARGV`` in a worker, measured.

        Raises:
            RuntimeError: The worker imported another rewardkit than this process.
        """
        import rewardkit

        op = self.work("cli", {"argv": list(argv)})
        ours = str(Path(rewardkit.__file__).parent)
        if op.result.pop("rewardkit") != ours:
            raise RuntimeError(f"the worker ran another rewardkit than {ours}; check PYTHONPATH")
        return op

    def unmeasured(self, *argv: str) -> None:
        """Run ``rewardkit ARGV`` in this process (set-up steps: no start-up to pay)."""
        from rewardkit.cli.main import main

        if main([*argv, "--repo", str(self.root / "repo")]) != 0:
            raise RuntimeError(f"rewardkit {' '.join(argv)} failed")

    @staticmethod
    def commands() -> list[str]:
        """The commands of the installed ``rewardkit`` CLI."""
        import typer

        from rewardkit.cli.main import app

        return sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]

    def init(self) -> None:
        from rewardkit.store import Repository

        Repository.init(self.root / "repo").close()

    def commit(self, index: int, message: str) -> Op:
        return self.cli("commit", str(self.model), "-m", message)

    def checkout(self, index: int, latest: int, to: Path) -> tuple[Op, Path]:
        ref = "main" if index == latest else f"main~{latest - index}"
        return self.cli("checkout", ref, "--to", str(to)), to / WEIGHTS

    def store_bytes(self) -> dict[str, int]:
        return tree_bytes(self.root / "repo")


class DvcTool(Tool):
    name = "dvc"

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        super().__init__(root, env | {"DVC_NO_ANALYTICS": "1"})
        self.repo = root / "repo"
        self.model = self.repo / "model"  # DVC tracks files inside its repository

    def init(self) -> None:
        self.repo.mkdir(parents=True)
        self.work("init", {}, cwd=self.repo)

    def commit(self, index: int, message: str) -> Op:
        return self.work("commit", {"message": message}, cwd=self.repo)

    def checkout(self, index: int, latest: int, to: Path) -> tuple[Op, Path]:
        shutil.rmtree(self.model)  # into an empty place, as the other tools
        op = self.work("checkout", {"rev": f"HEAD~{latest - index}"}, cwd=self.repo)
        return op, self.model / WEIGHTS

    def store_bytes(self) -> dict[str, int]:
        return tree_bytes(self.repo / ".dvc" / "cache")


class MlflowTool(Tool):
    name = "mlflow"

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        super().__init__(root, env | {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"})
        self.store = root / "store"
        self.uri = f"sqlite:///{self.store / 'mlflow.db'}"
        self.runs: list[str] = []

    def init(self) -> None:
        self.store.mkdir(parents=True)
        op = self.work("init", {"uri": self.uri, "artifacts": (self.store / "artifacts").as_uri()})
        self.experiment = op.result["experiment_id"]

    def commit(self, index: int, message: str) -> Op:
        op = self.work("commit", {"uri": self.uri, "experiment_id": self.experiment, "message": message,
                                  "model": str(self.model)})
        self.runs.append(op.result["run_id"])
        return op

    def checkout(self, index: int, latest: int, to: Path) -> tuple[Op, Path]:
        op = self.work("checkout", {"uri": self.uri, "experiment_id": self.experiment,
                                    "run_id": self.runs[index], "to": str(to)})
        return op, to / "model" / WEIGHTS

    def store_bytes(self) -> dict[str, int]:
        return tree_bytes(self.store)


class CpTool(Tool):
    """A folder per version, copied with ``cp -r``: no dedup, and the checkout baseline."""

    name = "cp"

    def commit(self, index: int, message: str) -> Op:
        return self.cp(self.model, self.root / "versions" / f"v{index}")

    def checkout(self, index: int, latest: int, to: Path) -> tuple[Op, Path]:
        return self.cp(self.root / "versions" / f"v{index}", to), to / WEIGHTS

    def cp(self, src: Path, dest: Path) -> Op:
        dest.parent.mkdir(parents=True, exist_ok=True)
        return self.work("cp", {"from": str(src), "to": str(dest)})

    def store_bytes(self) -> dict[str, int]:
        return tree_bytes(self.root / "versions")


TOOL_CLASSES = {t.name: t for t in (RewardkitTool, DvcTool, MlflowTool, CpTool)}


# -- one tool's pass over the chain ------------------------------------------------------------


def bench_tool(name: str, scratch: Path, config, base: dict, plan: list[str], expected: dict[int, str],
               args: argparse.Namespace, env: dict[str, str]) -> dict:
    """Commit every version with one tool, then check out the last and the base; verify both.

    Returns:
        ``{"commits": [...], "bytes_after": [...], "checkouts": {...}, "merge": ...}``.
    """
    root = scratch / name
    root.mkdir()
    tool = TOOL_CLASSES[name](root, env)
    tool.init()
    write_model_files(tool.model, config)
    state = {n: t.clone() for n, t in base.items()}
    commits, bytes_after = [], []
    latest = len(plan) - 1
    for index, kind in enumerate(plan):
        if index:
            apply_change(state, kind, seed=args.seed + index, num_layers=config.num_hidden_layers)
        write_version(tool.model, state)
        if not index:
            folder_bytes = tree_bytes(tool.model)
        op = tool.commit(index, f"v{index}: {kind}")
        commits.append(asdict(op) | {"kind": kind})
        bytes_after.append(tool.store_bytes())
        print(f"  {name:9s} commit v{index} ({kind:6s}) {op.seconds:7.2f} s  process {op.process_seconds:6.2f} s  "
              f"peak {op.peak_rss / 2**20:7.0f} MiB  store {bytes_after[-1]['allocated'] / 2**30:6.2f} GiB", flush=True)
    checkouts = {}
    for label, index in (("last", latest), ("base", 0)):
        to = root / f"checkout-{label}"
        op, weights = tool.checkout(index, latest, to)
        same = file_digest(weights) == expected[index]
        checkouts[label] = asdict(op) | {"identical": same}
        print(f"  {name:9s} checkout {label} {op.seconds:7.2f} s  peak {op.peak_rss / 2**20:7.0f} MiB  "
              f"bit-identical: {same}", flush=True)
        if to.exists():
            shutil.rmtree(to)
    out = {"model_folder_bytes": folder_bytes, "commits": commits, "bytes_after": bytes_after,
           "checkouts": checkouts}
    if name == "rewardkit" and args.merge:
        out["merge"] = bench_merge(tool, config, base, state, latest, args)
    shutil.rmtree(root)
    return out


def bench_merge(tool: RewardkitTool, config, base: dict, last: dict, latest: int, args: argparse.Namespace) -> dict:
    """``rewardkit merge`` of a full fine-tune of the base into the chain's last version, measured.

    Every tensor differs from the merge-base on both sides, so ``average`` computes every
    tensor. The merged weights are checked against the mean of the two parents.
    """
    missing = [c for c in ("merge", "branch", "switch") if c not in tool.commands()]
    if missing:
        reason = f"this rewardkit CLI has no {', '.join(f'`{c}`' for c in missing)} command"
        print(f"  merge     skipped: {reason}")
        return {"skipped": reason}
    import torch

    other = {n: t.clone() for n, t in base.items()}
    apply_change(other, "full", seed=args.seed + 1000, num_layers=config.num_hidden_layers)
    tool.unmeasured("branch", MERGE_BRANCH, f"main~{latest}")
    tool.unmeasured("switch", MERGE_BRANCH)
    write_version(tool.model, other)
    tool.unmeasured("commit", str(tool.model), "-m", "full fine-tune of the base, another seed")
    tool.unmeasured("switch", "main")
    op = tool.cli("merge", MERGE_BRANCH, "--strategy", "average", "-m", "average of two full fine-tunes")
    to = tool.root / "checkout-merge"
    tool.unmeasured("checkout", "main", "--to", str(to))
    from safetensors import safe_open

    error = 0.0
    with safe_open(str(to / WEIGHTS), framework="pt") as f:
        for name in f.keys():  # noqa: SIM118
            if other[name].is_floating_point():
                mean = (last[name] + other[name]) / 2
                error = max(error, (f.get_tensor(name) - mean).abs().max().item())
            else:
                error = max(error, float(not torch.equal(f.get_tensor(name), other[name])))
    print(f"  merge     {op.seconds:7.2f} s  peak {op.peak_rss / 2**20:7.0f} MiB  "
          f"max |merged - mean of parents| = {error:.2e}", flush=True)
    return asdict(op) | {"max_abs_error_vs_mean": error}


# -- report ------------------------------------------------------------------------------------


def summarize(results: dict[str, dict], plan: list[str], model_bytes: int) -> dict:
    """Per tool: seconds by kind of version, checkouts, bytes; and rewardkit's ratios and targets.

    Args:
        results: Tool name -> what :func:`bench_tool` returned.
        plan: The kind of each version (:func:`version_plan`).
        model_bytes: One model on disk: the folder of the base version, weights, config and
            tokenizer (bytes allocated); the unit of every size ratio.
    """
    head_prefix = 1 + next((i for i, k in enumerate(plan[1:]) if k != "head"), len(plan) - 1)
    summary: dict[str, Any] = {"model_bytes": model_bytes, "head_prefix_versions": head_prefix, "tools": {}}
    for name, r in results.items():
        by_kind = {kind: [c["seconds"] for c in r["commits"] if c["kind"] == kind] for kind in dict.fromkeys(plan)}
        heads = [c for c in r["commits"] if c["kind"] == "head"]
        prefix_bytes = r["bytes_after"][head_prefix - 1]["allocated"]
        head_increments = [r["bytes_after"][i]["allocated"] - r["bytes_after"][i - 1]["allocated"]
                           for i in range(1, head_prefix)]
        ops = r["commits"] + list(r["checkouts"].values())
        summary["tools"][name] = {
            "commit_seconds": {k: {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)}
                               for k, v in by_kind.items()},
            "commit_seconds_total": sum(c["seconds"] for c in r["commits"]),
            "head_process_seconds_median": statistics.median(c["process_seconds"] for c in heads),
            "checkout_seconds": {k: v["seconds"] for k, v in r["checkouts"].items()},
            "checkouts_identical": all(v["identical"] for v in r["checkouts"].values()),
            "bytes_after_head_prefix": prefix_bytes,
            "bytes_10_head_only_projected": r["bytes_after"][0]["allocated"]
            + 9 * statistics.mean(head_increments or [0]),
            "bytes_after_all": r["bytes_after"][-1]["allocated"],
            "peak_rss_commit": max(c["peak_rss"] for c in r["commits"]),
            "peak_rss_checkout": max(v["peak_rss"] for v in r["checkouts"].values()),
            "rss_before_commit": max(c["rss_before"] for c in r["commits"]),
            "other_cpu_max": max((o["other_cpu"] or 0.0) for o in ops),
        }
    rk = summary["tools"].get("rewardkit")
    if rk is None:
        return summary
    ratios: dict[str, Any] = {}
    head = rk["commit_seconds"]["head"]["median"]
    for peer in ("dvc", "mlflow"):
        if peer in summary["tools"]:
            ratios[f"head_commit_speedup_vs_{peer}"] = summary["tools"][peer]["commit_seconds"]["head"]["median"] / head
    ratios["head_prefix_bytes_vs_model"] = rk["bytes_after_head_prefix"] / model_bytes
    ratios["head_10_projected_bytes_vs_model"] = rk["bytes_10_head_only_projected"] / model_bytes
    if "cp" in summary["tools"]:
        cp = summary["tools"]["cp"]["checkout_seconds"]
        ratios["checkout_vs_cp"] = {k: rk["checkout_seconds"][k] / cp[k] for k in cp}
    merge = results["rewardkit"].get("merge")
    if merge and "skipped" not in merge:
        ratios["merge_peak_rss_vs_model"] = merge["peak_rss"] / model_bytes
        ratios["merge_extra_rss_vs_model"] = (merge["peak_rss"] - merge["rss_before"]) / model_bytes
    summary["ratios"] = ratios
    speedups = [v for k, v in ratios.items() if k.startswith("head_commit_speedup")]
    summary["targets"] = {  # None: not measured in this run
        "head_commit_20x_faster": all(v >= TARGET_HEAD_SPEEDUP for v in speedups) if speedups else None,
        "head_only_disk_1_05x": ratios["head_10_projected_bytes_vs_model"] <= TARGET_HEAD_DISK,
        "checkout_within_2x_cp": all(v <= TARGET_CHECKOUT_VS_CP for v in ratios["checkout_vs_cp"].values())
        if "checkout_vs_cp" in ratios else None,
    }
    if "merge_extra_rss_vs_model" in ratios:
        summary["targets"]["merge_bounded_memory"] = ratios["merge_extra_rss_vs_model"] <= TARGET_MERGE_EXTRA
    return summary


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def _yes(ok: bool) -> str:
    return "yes" if ok else "NO"


def report(summary: dict, results: dict, plan: list[str], info: dict, threshold: float = DEFAULT_THRESHOLD) -> None:
    """Print the table (a column per tool) and the ratio lines."""
    from rich.table import Table

    from rewardkit.cli.render import console

    def say(line: str) -> None:
        console.print(line, soft_wrap=True)

    model, tools, prefix = summary["model_bytes"], summary["tools"], summary["head_prefix_versions"]
    runs = [(kind, len(list(group))) for kind, group in itertools.groupby(plan)]
    chain = ", ".join(kind if n == 1 else f"{n} {kind}" for kind, n in runs)
    table = Table(title=f"{len(plan)} versions of a {_gib(model)} BERT reward model "
                        f"({info['parameters'] / 1e6:.0f}M parameters, fp32): {chain}")
    table.add_column("", no_wrap=True)
    for name in tools:
        table.add_column(LABELS[name], justify="right")

    def row(label: str, cell) -> None:  # noqa: ANN001 (tool summary -> str)
        table.add_row(label, *(cell(s) for s in tools.values()))

    def commit_seconds(kind: str):  # noqa: ANN202
        def cell(s: dict) -> str:
            c = s["commit_seconds"][kind]
            return f"{c['median']:.2f}" + (f" [{c['min']:.2f}-{c['max']:.2f}]" if c["n"] > 1 else "")
        return cell

    def disk(key: str):  # noqa: ANN202
        return lambda s: f"{_gib(s[key])} ({s[key] / model:.3f}x)"

    row("commit s: base", commit_seconds("base"))
    row("commit s: head, med [min-max]", commit_seconds("head"))
    if "layers" in plan:
        row("commit s: top 2 layers", commit_seconds("layers"))
    row("commit s: full fine-tune", commit_seconds("full"))
    row(f"commit s: all {len(plan)} versions", lambda s: f"{s['commit_seconds_total']:.1f}")
    row("  whole process s (start-up)", lambda s: f"{s['head_process_seconds_median']:.2f}")
    row("checkout s: last version", lambda s: f"{s['checkout_seconds']['last']:.2f}")
    row("checkout s: base", lambda s: f"{s['checkout_seconds']['base']:.2f}")
    row("checkouts bit-identical", lambda s: _yes(s["checkouts_identical"]))
    row(f"disk: base + {prefix - 1} head-only", disk("bytes_after_head_prefix"))
    row(f"disk: all {len(plan)} versions", disk("bytes_after_all"))
    row("peak RSS: commit", lambda s: _mib(s["peak_rss_commit"]))
    row("  of it before the operation", lambda s: _mib(s["rss_before_commit"]))
    row("peak RSS: checkout", lambda s: _mib(s["peak_rss_checkout"]))
    row("other CPU, max", lambda s: f"{s['other_cpu_max']:.0%}")
    console.print(table)
    say(f"one model on disk (weights, config, tokenizer): {_gib(model)}")

    ratios, targets = summary.get("ratios", {}), summary.get("targets", {})
    if ratios:
        speed = ", ".join(f"{LABELS[k.rsplit('_', 1)[1]]} {v:.1f}x"
                          for k, v in ratios.items() if k.startswith("head_commit_speedup"))
        if speed:
            say(f"head-only commit, the peer's seconds / rewardkit's: {speed} "
                f"(target >= {TARGET_HEAD_SPEEDUP:.0f}x: {_yes(targets['head_commit_20x_faster'])})")
        say(f"head-only versions on disk: base + {prefix - 1} = {ratios['head_prefix_bytes_vs_model']:.3f}x "
            f"one model; 10 projected from the measured increments = "
            f"{ratios['head_10_projected_bytes_vs_model']:.3f}x "
            f"(target <= {TARGET_HEAD_DISK}x: {_yes(targets['head_only_disk_1_05x'])})")
        if "checkout_vs_cp" in ratios:
            cp = ", ".join(f"{k} {v:.2f}x" for k, v in ratios["checkout_vs_cp"].items())
            say(f"checkout, rewardkit's seconds / cp's of the same bytes: {cp} "
                f"(target <= {TARGET_CHECKOUT_VS_CP:.0f}x: {_yes(targets['checkout_within_2x_cp'])})")
    merge = results.get("rewardkit", {}).get("merge")
    if merge and "skipped" in merge:
        say(f"merge: skipped ({merge['skipped']})")
    elif merge:
        extra = merge["peak_rss"] - merge["rss_before"]
        say(f"merge of two {_gib(model)} branches (every tensor changed on both sides, average): "
            f"{merge['seconds']:.1f} s, peak RSS {_mib(merge['peak_rss'])} = {ratios['merge_peak_rss_vs_model']:.2f}x "
            f"the model, {_mib(extra)} above start-up = {ratios['merge_extra_rss_vs_model']:.2f}x the model "
            f"(bounded, <= {TARGET_MERGE_EXTRA}x: {_yes(targets['merge_bounded_memory'])}) = "
            f"{extra / info['largest_tensor_bytes']:.1f}x its largest tensor ({_mib(info['largest_tensor_bytes'])}); "
            f"max |merged - mean of parents| "
            f"{merge['max_abs_error_vs_mean']:.1e}")
    flagged = [LABELS[n] for n, s in tools.items() if s["other_cpu_max"] > threshold]
    if flagged:
        say(f"cpu: other processes took more than {threshold:.0%} of our cores during "
            f"operations of {', '.join(flagged)}: timings are noisy, rerun on a quiet machine")
    say(f"machine: {info['machine']}; versions: {info['versions']}")


# -- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size-gib", type=float, default=1.0, help="fp32 size of the model, at least (GiB)")
    p.add_argument("--versions", type=int, default=10, help="versions in the chain, base included (>= 3)")
    p.add_argument("--tools", default=",".join(TOOLS), help=f"comma-separated, of {', '.join(TOOLS)}")
    p.add_argument("--merge", action="store_true", help="also time `rewardkit merge` of two full fine-tunes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scratch", default=None, help="folder for the scratch stores (default: the system's temp)")
    p.add_argument("--contamination-threshold", type=float, default=DEFAULT_THRESHOLD,
                   help="flag an operation during which other processes took more than this share of our cores")
    p.add_argument("--strict", action="store_true", help="exit 1 if any operation is flagged")
    p.add_argument("--json", default=None, help="write every measurement and the summary to this file")
    p.add_argument("--report", default=None, metavar="JSON", help="print the table of an earlier run's --json file")
    return p.parse_args(argv)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def check_tools(tools: list[str]) -> None:
    """Refuse unknown tools, and tools that are not installed, naming the fix."""
    import importlib.util

    for name in tools:
        if name not in TOOLS:
            raise SystemExit(f"unknown tool {name!r} in --tools; choose from {', '.join(TOOLS)}")
        if name in ("dvc", "mlflow") and importlib.util.find_spec(name) is None:
            raise SystemExit(f"{name} is not installed: pip install -e '.[bench]' -c constraints.txt, "
                             f"or leave it out with --tools {','.join(t for t in tools if t != name)}")
    if "dvc" in tools and shutil.which("git") is None:
        raise SystemExit("DVC needs git on PATH")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report:
        earlier = json.loads(Path(args.report).read_text())
        report(earlier["summary"], earlier["runs"], earlier["plan"], earlier["model"], args.contamination_threshold)
        return 0
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    check_tools(tools)
    plan = version_plan(args.versions)
    import rewardkit

    # the workers run in scratch folders: they import the rewardkit this process imported, not one
    # a relative PYTHONPATH (or the venv) would find from there
    code = str(Path(rewardkit.__file__).resolve().parent.parent)
    path = os.pathsep.join([code, *(p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p)])
    env = dict(os.environ) | {"PYTHONPATH": path, "TOKENIZERS_PARALLELISM": "false", "CUDA_VISIBLE_DEVICES": ""}

    started = time.perf_counter()
    config, base = build_base(int(args.size_gib * 2**30), args.seed)
    weights_bytes = sum(t.numel() * t.element_size() for t in base.values())
    info = {
        "parameters": sum(t.numel() for t in base.values()),
        "weights_bytes": weights_bytes,
        "largest_tensor_bytes": max(t.numel() * t.element_size() for t in base.values()),
        "tensors": len(base),
        "config": {k: getattr(config, k) for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                                   "intermediate_size", "vocab_size")},
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
        "versions": {"rewardkit": f"{rewardkit.__version__} from {Path(rewardkit.__file__).parent}",
                     **{d: _version(d) for d in ("dvc", "mlflow", "torch", "safetensors")},
                     "git": subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip()},
    }
    print(f"model: {info['parameters'] / 1e6:.1f}M parameters, {_gib(weights_bytes)}, {info['config']}; "
          f"built in {time.perf_counter() - started:.1f} s")
    expected = {}
    state = {n: t.clone() for n, t in base.items()}
    for index, kind in enumerate(plan):
        if index:
            apply_change(state, kind, seed=args.seed + index, num_layers=config.num_hidden_layers)
        if index in (0, len(plan) - 1):
            expected[index] = digest(state)
    del state

    scratch = Path(tempfile.mkdtemp(prefix="rk-store-bench-", dir=args.scratch))
    try:
        results = {}
        for name in tools:
            print(f"{LABELS[name]}:", flush=True)
            results[name] = bench_tool(name, scratch, config, base, plan, expected, args, env)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    folder_bytes = next(iter(results.values()))["model_folder_bytes"]["allocated"]
    summary = summarize(results, plan, folder_bytes)
    report(summary, results, plan, info, args.contamination_threshold)
    print(f"time: {time.perf_counter() - started:.0f} s")
    if args.json:
        out = {"command": " ".join([sys.executable, *sys.argv]), "settings": vars(args), "plan": plan,
               "model": info, "summary": summary, "runs": results}
        Path(args.json).write_text(json.dumps(out, indent=2))
        print(f"wrote {args.json}")
    flagged = any(s["other_cpu_max"] > args.contamination_threshold for s in summary["tools"].values())
    return 1 if args.strict and flagged else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(sys.argv[2:])
    else:
        sys.exit(main())
