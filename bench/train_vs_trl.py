"""rewardkit's RewardTrainer against TRL's RewardTrainer at its best and as shipped, in one run.

Three trainers on the same backbone, the same seeded split of hh-rlhf harmless, the same
max_length, batch size, epochs, learning rate, warm-up, weight decay, clipping, precision and
thread count:

* ``rewardkit``: ``rewardkit.training.RewardTrainer`` through its public API, defaults;
* ``TRL best``: ``trl.RewardTrainer`` grouped by length (``train_sampling_strategy=
  "group_by_length"``, formerly ``group_by_length=True``) with activation (gradient)
  checkpointing off, as a careful user runs it;
* ``TRL shipped``: ``trl.RewardTrainer`` with its own defaults for both (random batches,
  checkpointing on).

Each table (encoder MiniLM or a small random Llama decoder; fp32 or bf16 autocast) runs every
trainer ``--repeats`` times, rotating which goes first, and reports medians with min-max of
train pairs/s, plus pairs kept, held-out accuracy (both models scored the same way, in fp32)
and how much CPU other processes took during each timed phase (see bench/cpu_meter.py).

    cd /work/main && PYTHONPATH=src .venv/bin/python bench/train_vs_trl.py --all --json bench.json

TRL is a bench-only extra (``pip install -e .[bench] -c constraints.txt``). See bench/README.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, fields
from pathlib import Path

if __name__ == "__main__":  # a benchmark run (not the tests importing it): set before torch loads
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # no hidden tokenizer thread pool
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # everything on the CPU, never on a GPU
    # Idle OpenMP threads sleep instead of spinning: with 2 threads on 2 cores, a spinning thread
    # whose partner was descheduled by any other process wastes its core (measured: runs crawled).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import datasets
import torch
import transformers
import trl
from accelerate.state import AcceleratorState
from accelerate.utils import set_seed
from cpu_meter import DEFAULT_THRESHOLD, CpuMeter
from random_decoder import build_random_decoder
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from transformers.trainer_callback import PrinterCallback, ProgressCallback

import rewardkit
from rewardkit.data import PreferenceDataset, PreferencePair, load_pairs
from rewardkit.evaluation import evaluate_model
from rewardkit.models import TextRewardModel, default_backbone
from rewardkit.training import RewardConfig, RewardTrainer

# TRL's own default (gradient_checkpointing=True) trips transformers 5's rename warning.
warnings.filterwarnings("ignore", message="`gradient_checkpointing` is deprecated", category=FutureWarning)
REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"
TRAINERS = ("rewardkit", "trl-best", "trl-shipped")
LABELS = {"rewardkit": "rewardkit", "trl-best": "TRL best", "trl-shipped": "TRL shipped"}

_TRL_FIELDS = {f.name for f in fields(trl.RewardConfig)}
# transformers 5 renamed gradient_checkpointing (TRL's default: on) to activation_checkpointing,
# and group_by_length=True to train_sampling_strategy="group_by_length".
CHECKPOINTING_OFF = ({"activation_checkpointing": False} if "activation_checkpointing" in _TRL_FIELDS
                     else {"gradient_checkpointing": False})
GROUP_BY_LENGTH = ({"train_sampling_strategy": "group_by_length"} if "train_sampling_strategy" in _TRL_FIELDS
                   else {"group_by_length": True})


@dataclass(frozen=True)
class Table:
    """One table of results: a backbone family at one precision."""

    decoder: bool
    bf16: bool

    @property
    def name(self) -> str:
        return f"{'decoder' if self.decoder else 'encoder'}-{'bf16' if self.bf16 else 'fp32'}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA), help="hh-rlhf harmless jsonl(.gz)")
    p.add_argument("--backbone", default=None, help="encoder model folder; default all-MiniLM-L6-v2")
    p.add_argument("--decoder", action="store_true",
                   help="the decoder table: a small random Llama built from a config (no download)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast for every trainer (default fp32)")
    p.add_argument("--all", action="store_true",
                   help="all four tables in one run: encoder and decoder, fp32 and bf16 (ignores --decoder/--bf16)")
    p.add_argument("--repeats", type=int, default=3, help="runs per trainer; the order rotates every repeat")
    p.add_argument("--eval-every-repeat", action="store_true",
                   help="score every run's model (default: the first repeat's; later repeats are checked to "
                        "train the same weights)")
    p.add_argument("--n-train", type=int, default=400, help="first N pairs of the train split")
    p.add_argument("--n-test", type=int, default=None, help="first N test pairs (default: all)")
    p.add_argument("--seed", type=int, default=42, help="split, head init, batch order")
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=8, help="pairs per step (2x texts)")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--learning-rate", type=float, default=5e-5)
    p.add_argument("--warmup-ratio", type=float, default=0.1)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--max-grad-norm", type=float, default=1.0)
    p.add_argument("--logging-steps", type=int, default=10)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--contamination-threshold", type=float, default=DEFAULT_THRESHOLD,
                   help="flag a timed phase when other processes used more than this share of our cores")
    p.add_argument("--strict", action="store_true", help="exit 1 if any timed phase is flagged as contaminated")
    p.add_argument("--json", default=None, help="write every raw run and the summary to this file")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    return args


# --------------------------------------------------------------------------- helpers
def trl_text(prompt: str, response: str) -> str:
    """The text TRL trains on for an explicit-prompt record: ``prompt + response``, as TRL joins them.

    hh-rlhf responses keep their leading space (the prompt ends in ``"Assistant:"``), so this
    is the original transcript again and exactly the text rewardkit encodes. Adding another
    space would be harmless for WordPiece but gives other tokens with a byte-level BPE.
    """
    return prompt + response


def run_order(repeat: int) -> list[str]:
    """The trainers in the order of repeat ``repeat``: rotated, so each one goes first in turn."""
    shift = repeat % len(TRAINERS)
    return [*TRAINERS[shift:], *TRAINERS[:shift]]


def warm_up(model: torch.nn.Module, pairs: list[PreferencePair], tokenizer, args, bf16: bool) -> None:
    """One forward and backward pass on a training-sized batch, weights untouched.

    Primes the CPU kernels and the allocator, so no trainer's clock pays for them (the one that
    runs first otherwise does). Eval mode: no dropout, so no RNG is consumed.
    """
    texts = [trl_text(p.prompt, r) for p in pairs[: args.batch_size] for r in (p.chosen, p.rejected)]
    batch = tokenizer(texts, padding=True, truncation=True, max_length=args.max_length, return_tensors="pt")
    model.eval()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    logits = out if isinstance(out, torch.Tensor) else out.logits
    logits.float().sum().backward()
    model.zero_grad(set_to_none=True)
    model.train()


def checksum(model: torch.nn.Module) -> float:
    """Sum of all weights: equal for all trainers iff they start from the same initial model."""
    return float(sum(p.detach().double().sum() for p in model.parameters()))


def checkpointing_on(model: torch.nn.Module) -> bool:
    """Whether TRL really trained with activation (gradient) checkpointing."""
    name = next((n for n in ("is_activation_checkpointing", "is_gradient_checkpointing")
                 if hasattr(type(model), n)), None)
    return bool(getattr(model, name)) if name else False


def scoring_model(trainer: trl.RewardTrainer) -> torch.nn.Module:
    """TRL's trained model as rewardkit's trainer returns its own: unwrapped, no autocast, eval mode.

    accelerate wraps a bf16 model's ``forward`` in autocast; ``keep_fp32_wrapper=False`` takes
    that off, so the model is scored in float32 like rewardkit's.
    """
    return trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False).cpu().eval()


def reset_accelerate() -> None:
    """Each trainer builds its own Accelerator; do not let the previous one's state leak."""
    AcceleratorState._reset_state(reset_partial_state=True)
    gc.collect()


class BatchCounter:
    """Counts real and padded token slots of every training forward pass of a Hugging Face backbone.

    A forward pre-hook, identical for every trainer, so the counts come from the batches each
    trainer really built. Calls without a 2-D ``attention_mask`` keyword (a packed or
    shared-prefix forward that bypasses the backbone's own ``forward``) are not counted.
    """

    def __init__(self, backbone: torch.nn.Module):
        self.pairs = self.real_tokens = self.padded_tokens = 0
        self.handle = backbone.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs):
        mask = kwargs.get("attention_mask")
        if module.training and isinstance(mask, torch.Tensor) and mask.dim() == 2:
            self.pairs += mask.shape[0] // 2  # chosen rows, then rejected rows
            self.real_tokens += int(mask.sum())
            self.padded_tokens += mask.numel()


# --------------------------------------------------------------------------- TRL
def run_trl(args, pairs: list[PreferencePair], backbone: str, tmp: Path, bf16: bool, best: bool) -> dict:
    """TRL's RewardTrainer, at its best (grouped by length, no checkpointing) or as shipped.

    TRL gets token ids, exactly what its own tokenize step makes of ``prompt + response``
    (special tokens, no truncation); its ``max_length`` filter still runs. Its raw-text path
    would append an EOS token, which BERT lacks; for the decoder the ids are left without one so
    that every trainer sees identical sequences.
    """
    tokenizer = AutoTokenizer.from_pretrained(backbone)
    tokenizer.deprecation_warnings["sequence-length-is-longer-than-the-specified-maximum"] = True

    start = time.perf_counter()
    columns = {
        "chosen_ids": [tokenizer(trl_text(p.prompt, p.chosen))["input_ids"] for p in pairs],
        "rejected_ids": [tokenizer(trl_text(p.prompt, p.rejected))["input_ids"] for p in pairs],
    }
    if any(p.margin is not None for p in pairs):  # rewardkit trains with margins when present
        columns["margin"] = [float(p.margin or 0.0) for p in pairs]
    options = {}
    if best:
        # What a careful user adds: lengths for the length-grouped sampler (TRL's records have no
        # input_ids column to infer them from) and keeping that column for the sampler to read.
        columns["length"] = [max(len(c), len(r)) for c, r in zip(columns["chosen_ids"], columns["rejected_ids"],
                                                                  strict=True)]
        options = {**GROUP_BY_LENGTH, **CHECKPOINTING_OFF, "length_column_name": "length",
                   "remove_unused_columns": False}
    train_dataset = datasets.Dataset.from_dict(columns)
    tokenize_seconds = time.perf_counter() - start

    set_seed(args.seed)  # as rewardkit does right before loading: the same fresh head
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # "newly initialized head" is expected
    model = AutoModelForSequenceClassification.from_pretrained(backbone, num_labels=1, dtype=torch.float32)
    transformers.logging.set_verbosity(verbosity)
    initial = checksum(model)

    config = trl.RewardConfig(
        output_dir=str(tmp / "trl"),
        per_device_train_batch_size=args.batch_size,
        num_train_epochs=args.epochs,
        learning_rate=args.learning_rate,
        lr_scheduler_type="linear",
        warmup_steps=args.warmup_ratio,  # transformers 5: a float < 1 is a ratio
        weight_decay=args.weight_decay,
        max_grad_norm=args.max_grad_norm,
        max_length=args.max_length,
        bf16=bf16,
        seed=args.seed,
        logging_steps=args.logging_steps,
        use_cpu=True,
        dataloader_num_workers=0,
        report_to="none",
        save_strategy="no",
        eval_strategy="no",
        disable_tqdm=True,
        **options,
    )
    counter = BatchCounter(model)
    start = time.perf_counter()
    trainer = trl.RewardTrainer(model=model, args=config, train_dataset=train_dataset, processing_class=tokenizer)
    setup_seconds = time.perf_counter() - start  # includes TRL's max_length filter
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)

    warm_up(trainer.model, pairs, tokenizer, args, bf16)
    with CpuMeter() as meter:
        start = time.perf_counter()
        output = trainer.train()
        call_seconds = time.perf_counter() - start
    counter.handle.remove()

    kept = trainer.train_dataset
    kept_tokens = [len(c) + len(r) for c, r in zip(kept["chosen_ids"], kept["rejected_ids"], strict=True)]
    full_lengths = [max(len(c), len(r)) for c, r in zip(columns["chosen_ids"], columns["rejected_ids"], strict=True)]
    trained = scoring_model(trainer)
    return {
        "model": TextRewardModel(trained, tokenizer),
        "initial_checksum": initial,
        "checkpointing": checkpointing_on(trained),
        "grouped_by_length": best,
        "pairs_in": len(pairs),
        "pairs_kept": len(kept),
        "pairs_trained": counter.pairs,
        "lengths": full_lengths,
        "mean_tokens_per_pair": sum(kept_tokens) / max(1, len(kept_tokens)),
        "padded_tokens": counter.padded_tokens,
        "hook_real_tokens": counter.real_tokens,
        "loop_seconds": output.metrics["train_runtime"],  # from after prepare(), like rewardkit's
        "train_call_seconds": call_seconds,
        "end_to_end_seconds": tokenize_seconds + setup_seconds + call_seconds,
        "cpu": meter.usage,
    }


# --------------------------------------------------------------------------- rewardkit
def run_rewardkit(args, pairs: list[PreferencePair], backbone: str, tmp: Path, bf16: bool) -> dict:
    """rewardkit's own trainer, public API and defaults, same hyperparameters; it keeps every pair."""
    config = RewardConfig(
        base_model=backbone,
        max_length=args.max_length,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        warmup_ratio=args.warmup_ratio,
        weight_decay=args.weight_decay,
        max_grad_norm=args.max_grad_norm,
        bf16=bf16,
        seed=args.seed,
        logging_steps=args.logging_steps,
        num_threads=args.threads,
    )
    trainer = RewardTrainer(config)
    initial = checksum(trainer.model)
    counter = BatchCounter(trainer.model.backbone)
    warm_up(trainer.model, pairs, trainer.model.tokenizer, args, bf16)

    with CpuMeter() as meter:
        start = time.perf_counter()
        result = trainer.train(pairs, tmp / "rewardkit", progress=False)
        call_seconds = time.perf_counter() - start  # tokenization + setup + loop + writing curves
    counter.handle.remove()

    # Re-encode with rewardkit's encoder for per-pair lengths (after its truncation).
    chosen = [result.model.encode(p.prompt, p.chosen, args.max_length).input_ids for p in pairs]
    rejected = [result.model.encode(p.prompt, p.rejected, args.max_length).input_ids for p in pairs]
    pair_tokens = [len(c) + len(r) for c, r in zip(chosen, rejected, strict=True)]
    return {
        "model": result.model,
        "initial_checksum": initial,
        "pairs_in": len(pairs),
        "pairs_kept": result.n_pairs,
        "pairs_trained": round(result.pairs_per_second * result.seconds),  # the trainer's own count
        "prompts_truncated": result.prompts_truncated,
        "responses_truncated": result.responses_truncated,
        "lengths": [max(len(c), len(r)) for c, r in zip(chosen, rejected, strict=True)],
        "mean_tokens_per_pair": sum(pair_tokens) / len(pair_tokens),
        "padded_tokens": counter.padded_tokens,
        "hook_real_tokens": counter.real_tokens,
        "train_metrics": result.metrics(),  # rewardkit's own record, e.g. train/shared_prefix
        "loop_seconds": result.seconds,
        "train_call_seconds": call_seconds,
        "end_to_end_seconds": call_seconds,
        "cpu": meter.usage,
    }


# --------------------------------------------------------------------------- one run, one table
def run_one(name: str, args, table: Table, train_pairs, test: PreferenceDataset, backbone: str, tmp: Path,
            score: bool) -> dict:
    """Train one trainer once; with ``score``, evaluate its model on the test pairs in fp32."""
    start = time.perf_counter()
    set_seed(args.seed)
    if name == "rewardkit":
        r = run_rewardkit(args, train_pairs, backbone, tmp, table.bf16)
    else:
        r = run_trl(args, train_pairs, backbone, tmp, table.bf16, best=name == "trl-best")
    reset_accelerate()
    model = r.pop("model")
    r["final_checksum"] = checksum(model)  # equal across repeats iff the runs trained the same weights
    eval_start = time.perf_counter()
    report = None
    if score:  # the same scorer for every model: rewardkit's evaluate_model, fp32, same truncation policy
        report = evaluate_model(model, test, max_length=args.max_length, seed=args.seed, progress=False)
    cpu = r.pop("cpu")
    tokens = r["mean_tokens_per_pair"] * r["pairs_trained"]
    return r | {
        "trainer": name,
        "pairs_kept_fraction": r["pairs_kept"] / r["pairs_in"],
        "padding_fraction": 1 - r["hook_real_tokens"] / r["padded_tokens"] if r["padded_tokens"] else None,
        "pairs_per_second": r["pairs_trained"] / r["loop_seconds"],
        "pairs_per_second_end_to_end": r["pairs_trained"] / r["end_to_end_seconds"],
        "tokens_per_second": tokens / r["loop_seconds"],
        "accuracy": report.accuracy if report else None,
        "accuracy_ci": list(report.accuracy_ci) if report else None,
        "test_pairs": report.n_pairs if report else None,
        "eval_seconds": time.perf_counter() - eval_start,
        "run_seconds": time.perf_counter() - start,  # load, tokenize, warm up, train, evaluate
        "cpu": cpu.to_dict(),
        "contaminated": cpu.contaminated(args.contamination_threshold),
    }


def run_table(args, table: Table, train_pairs, test: PreferenceDataset, backbone: str) -> list[dict]:
    """Every trainer ``args.repeats`` times, order rotating; returns the raw runs."""
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        for repeat in range(args.repeats):
            for position, name in enumerate(run_order(repeat)):
                print(f"[{table.name}] repeat {repeat + 1}/{args.repeats}: {LABELS[name]} "
                      f"on {len(train_pairs)} pairs ...", flush=True)
                run = run_one(name, args, table, train_pairs, test, backbone, Path(tmp) / f"{repeat}-{name}",
                              score=repeat == 0 or args.eval_every_repeat)
                runs.append({"table": table.name, "repeat": repeat, "position": position, **run})
                share = run["cpu"]["other_share"]
                accuracy = "" if run["accuracy"] is None else f", held-out acc {run['accuracy']:.3f}"
                print(f"    {run['pairs_per_second']:.2f} pairs/s ({run['loop_seconds']:.1f} s loop, "
                      f"{run['run_seconds']:.0f} s all){accuracy}, other CPU "
                      f"{'?' if share is None else f'{share:.0%}'}{'  CONTAMINATED' if run['contaminated'] else ''}",
                      flush=True)
    return runs


# --------------------------------------------------------------------------- summary
def spread(values: list[float]) -> dict[str, float]:
    """Median, min and max."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize(runs: list[dict]) -> dict:
    """Per trainer: medians with min-max; per repeat ratios rewardkit / TRL best and / TRL shipped."""
    by = {name: [r for r in runs if r["trainer"] == name] for name in TRAINERS}
    out: dict = {}
    for name, rs in by.items():
        first = rs[0]
        paddings = [r["padding_fraction"] for r in rs if r["padding_fraction"] is not None]
        shares = [r["cpu"]["other_share"] for r in rs if r["cpu"]["other_share"] is not None]
        out[name] = {
            "runs": len(rs),
            "pairs_in": first["pairs_in"],
            "pairs_kept": first["pairs_kept"],
            "pairs_kept_fraction": first["pairs_kept_fraction"],
            "mean_tokens_per_pair": first["mean_tokens_per_pair"],
            "padding_fraction": statistics.median(paddings) if paddings else None,
            "checkpointing": first.get("checkpointing", False),
            "pairs_per_second": spread([r["pairs_per_second"] for r in rs]),
            "pairs_per_second_end_to_end": spread([r["pairs_per_second_end_to_end"] for r in rs]),
            "tokens_per_second": spread([r["tokens_per_second"] for r in rs]),
            "loop_seconds": spread([r["loop_seconds"] for r in rs]),
            "accuracy": spread([r["accuracy"] for r in rs if r["accuracy"] is not None]),
            "accuracy_ci": first["accuracy_ci"],
            "same_weights_every_repeat": len({round(r["final_checksum"], 6) for r in rs}) == 1,
            "train_metrics": first.get("train_metrics"),
            "test_pairs": first["test_pairs"],
            "other_cpu_share_max": max(shares) if shares else None,
            "contaminated_runs": sum(r["contaminated"] for r in rs),
        }
    rk = {r["repeat"]: r for r in by["rewardkit"]}
    for name in ("trl-best", "trl-shipped"):
        ratios = {}
        for key in ("pairs_per_second", "tokens_per_second", "pairs_per_second_end_to_end"):
            per_repeat = [rk[r["repeat"]][key] / r[key] for r in by[name]]
            of_medians = out["rewardkit"][key]["median"] / out[name][key]["median"]
            ratios[key] = {**spread(per_repeat), "of_medians": of_medians}
        ratios["accuracy_difference"] = out["rewardkit"]["accuracy"]["median"] - out[name]["accuracy"]["median"]
        out[f"rewardkit_vs_{name}"] = ratios
    return out


def checks(runs: list[dict], max_length: int) -> dict[str, bool]:
    """Same initial weights everywhere; TRL dropped exactly the pairs rewardkit truncated."""
    first = {name: next(r for r in runs if r["trainer"] == name) for name in TRAINERS}
    same_init = all(math.isclose(first[n]["initial_checksum"], first["rewardkit"]["initial_checksum"], rel_tol=1e-12)
                    for n in TRAINERS)
    same_lengths = all(min(f, max_length) == t for f, t in zip(first["trl-best"]["lengths"],
                                                               first["rewardkit"]["lengths"], strict=True))
    return {"same_initial_weights": same_init, "same_token_lengths": same_lengths}


def print_table(table: Table, summary: dict, check: dict, args, n_train: int, n_test: int) -> None:
    family = ("random Llama decoder (config below)" if table.decoder
              else args.backbone or "all-MiniLM-L6-v2 encoder")
    precision = "bf16 autocast" if table.bf16 else "fp32"
    print(f"\n### {table.name}: {family}, {precision}; {n_train} train pairs, {n_test} test pairs, max_length "
          f"{args.max_length}, batch {args.batch_size}, {args.repeats} repeats (median [min-max])\n")
    rows = [["", "pairs kept", "tokens/pair", "padding", "train pairs/s", "tokens/s", "pairs/s e2e",
             f"held-out acc [95% CI]{' (*)' if table.decoder else ''}", "other CPU (max)"]]

    def med(s: dict, fmt: str) -> str:
        return f"{s['median']:{fmt}} [{s['min']:{fmt}}-{s['max']:{fmt}}]"

    for name in TRAINERS:
        n = summary[name]
        share = n["other_cpu_share_max"]
        flag = "?" if share is None else f"{share:.0%}"
        if n["contaminated_runs"]:
            flag += f" FLAGGED ({n['contaminated_runs']}/{n['runs']})"
        rows.append([
            LABELS[name], f"{n['pairs_kept']}/{n['pairs_in']} ({n['pairs_kept_fraction']:.0%})",
            f"{n['mean_tokens_per_pair']:.0f}",
            "-" if n["padding_fraction"] is None else f"{n['padding_fraction']:.0%}",
            med(n["pairs_per_second"], ".2f"), med(n["tokens_per_second"], ".0f"),
            med(n["pairs_per_second_end_to_end"], ".2f"),
            f"{n['accuracy']['median']:.3f} [{n['accuracy_ci'][0]:.3f}, {n['accuracy_ci'][1]:.3f}]", flag,
        ])
    for name in ("trl-best", "trl-shipped"):
        r = summary[f"rewardkit_vs_{name}"]

        def ratio(key: str, r=r) -> str:
            return f"{r[key]['of_medians']:.2f}x [{r[key]['min']:.2f}-{r[key]['max']:.2f}]"

        rows.append([f"rewardkit / {LABELS[name]}", "", "", "", f"**{ratio('pairs_per_second')}**",
                     ratio("tokens_per_second"), ratio("pairs_per_second_end_to_end"),
                     f"{r['accuracy_difference']:+.3f}", ""])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for index, row in enumerate(rows):
        print("| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                for i, (c, w) in enumerate(zip(row, widths, strict=True))) + " |")
        if index == 0:
            print("|" + "|".join("-" * (w + 1) + ("-" if i == 0 else ":") for i, w in enumerate(widths)) + "|")
    if table.decoder:
        print("\n(*) held-out accuracy of a randomly initialised decoder trained on a few hundred pairs: "
              "not meaningful")
    rk, best, shipped = summary["rewardkit"], summary["trl-best"], summary["trl-shipped"]
    speed = summary["rewardkit_vs_trl-best"]["pairs_per_second"]["of_medians"]
    print(f"\nchecks:  same initial weights: {check['same_initial_weights']}; same token lengths: "
          f"{check['same_token_lengths']}; TRL checkpointing: best {'on' if best['checkpointing'] else 'off'}, "
          f"shipped {'on' if shipped['checkpointing'] else 'off'}; same weights every repeat: "
          f"{all(summary[n]['same_weights_every_repeat'] for n in TRAINERS)}; TRL dropped "
          f"{best['pairs_in'] - best['pairs_kept']} of {best['pairs_in']} pairs, rewardkit kept "
          f"{rk['pairs_kept']}" + _shared_prefix(rk["train_metrics"]))
    accuracy_target = ("n/a (random-init decoder)" if table.decoder else
                       f"{_yes(rk['accuracy']['median'] >= best['accuracy']['median'])} "
                       f"({rk['accuracy']['median']:.3f} vs {best['accuracy']['median']:.3f})")
    print(f"targets: train pairs/s >= 2x TRL best: {_yes(speed >= 2)} ({speed:.2f}x); keeps 100% of pairs: "
          f"{_yes(rk['pairs_kept_fraction'] == 1)}; held-out accuracy >= TRL best: {accuracy_target}")


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(args.threads)
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    in_repo = sys.executable.startswith(str(REPO))
    python = os.path.relpath(sys.executable, REPO) if in_repo else "python"
    command = f"cd {REPO} && PYTHONPATH={os.environ.get('PYTHONPATH', '')} " + shlex.join([python, *sys.argv])

    # 1. Data: one seeded split, the same pairs for every trainer.
    parts = load_pairs(args.data).split((0.8, 0.1, 0.1), args.seed)
    train_pairs = parts["train"].pairs[: args.n_train]
    test = PreferenceDataset(pairs=parts["test"].pairs[: args.n_test])
    tables = ([Table(d, b) for d in (False, True) for b in (False, True)] if args.all
              else [Table(args.decoder, args.bf16)])

    started = time.perf_counter()
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-decoder-") as decoder_dir:
        decoder_config = None
        if any(t.decoder for t in tables):  # tokenizer trained on the training texts only
            texts = (trl_text(p.prompt, r) for p in train_pairs for r in (p.chosen, p.rejected))
            build_random_decoder(decoder_dir, texts, seed=args.seed)
            decoder_config = transformers.AutoConfig.from_pretrained(decoder_dir).to_diff_dict()
        for table in tables:
            backbone = decoder_dir if table.decoder else (args.backbone or default_backbone())
            table_start = time.perf_counter()
            runs = run_table(args, table, train_pairs, test, backbone)
            summary = summarize(runs)
            check = checks(runs, args.max_length)
            results[table.name] = {"seconds": time.perf_counter() - table_start, "backbone":
                                   "random-llama" if table.decoder else backbone, "summary": summary,
                                   "checks": check, "runs": [{k: v for k, v in r.items() if k != "lengths"}
                                                             for r in runs]}
            print_table(table, summary, check, args, len(train_pairs), len(test.pairs))

    machine = (f"{cpu_name()}, {args.threads} threads, torch {torch.__version__}, transformers "
               f"{transformers.__version__}, trl {trl.__version__}, rewardkit {rewardkit.__version__} from "
               f"{Path(rewardkit.__file__).parent}")
    flagged = sum(r["contaminated"] for t in results.values() for r in t["runs"])
    print(f"\nmachine: {machine}")
    if decoder_config:
        shape = {k: decoder_config.get(k) for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                                     "num_key_value_heads", "intermediate_size", "vocab_size")}
        print(f"decoder: LlamaForSequenceClassification, random init, byte-level BPE trained on the train texts, "
              f"{shape}")
    timing = ", ".join(f"{name} {table['seconds']:.0f} s" for name, table in results.items())
    print(f"timing:  {timing}; total {time.perf_counter() - started:.0f} s")
    print(f"cpu:     {flagged} timed phase(s) where other processes took more than "
          f"{args.contamination_threshold:.0%} of our cores" + (": rerun on a quiet machine" if flagged else ""))
    print(f"command: {command}")

    if args.json:
        out = {"command": command, "machine": machine, "decoder_config": decoder_config,
               "settings": {k: v for k, v in vars(args).items() if k != "json"}
               | {"n_train": len(train_pairs), "n_test": len(test.pairs)},
               "tables": results}
        Path(args.json).write_text(json.dumps(out, indent=2))
        print(f"wrote {args.json}")
    return 1 if args.strict and flagged else 0


def cpu_name() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        model = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    return f"{model} ({os.cpu_count()} cores visible)"


def _shared_prefix(metrics: dict | None) -> str:
    """Whether rewardkit trained decoder pairs as one shared-prefix row, where its metrics say."""
    value = (metrics or {}).get("train/shared_prefix")
    return "" if value is None else f"; rewardkit shared-prefix rows: {'yes' if value else 'no'}"


def _yes(ok: bool) -> str:
    return "yes" if ok else "NO"


if __name__ == "__main__":
    sys.exit(main())
