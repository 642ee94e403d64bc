"""rewardkit's RewardTrainer against TRL's RewardTrainer, in one run, on the same everything.

Same backbone, same seeded split of hh-rlhf harmless, same max_length, batch size, epochs,
learning rate, warm-up, weight decay, clipping and precision, same thread count. Measures
train pairs/s, pairs kept and held-out accuracy for both and prints rewardkit/TRL ratios.

    cd /work/main && PYTHONPATH=src .venv/bin/python bench/train_vs_trl.py --json bench.json

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
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # no hidden tokenizer thread pool
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # both trainers on the CPU, never one on a GPU

import datasets
import torch
import transformers
import trl
from accelerate.state import AcceleratorState
from accelerate.utils import set_seed
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from transformers.trainer_callback import PrinterCallback, ProgressCallback

import rewardkit
from rewardkit.data import PreferenceDataset, PreferencePair, load_pairs
from rewardkit.evaluation import EvalReport, evaluate_model
from rewardkit.models import TextRewardModel, default_backbone
from rewardkit.training import RewardConfig, RewardTrainer

REPO = Path(__file__).resolve().parent.parent
# transformers 5 renamed gradient_checkpointing (TRL's default: on) to activation_checkpointing.
CHECKPOINTING = ("activation_checkpointing"
                 if "activation_checkpointing" in {f.name for f in fields(trl.RewardConfig)}
                 else "gradient_checkpointing")
DEFAULT_DATA = REPO.parent / "shared" / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA), help="hh-rlhf harmless jsonl(.gz)")
    p.add_argument("--backbone", default=None, help="model folder; default all-MiniLM-L6-v2")
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
    p.add_argument("--bf16", action="store_true", help="bf16 autocast for both trainers")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--order", choices=["trl-first", "rewardkit-first"], default="trl-first")
    p.add_argument("--trl-gradient-checkpointing", action="store_true",
                   help="TRL's own default (on); off by default here so both do the same compute")
    p.add_argument("--json", default=None, help="write the numbers to this file")
    return p.parse_args()


# --------------------------------------------------------------------------- helpers
def join(prompt: str, response: str) -> str:
    """The full text TRL sees: hh-rlhf prompts end in 'Assistant:', responses start bare."""
    return f"{prompt} {response}" if prompt else response


def warm_up(model: torch.nn.Module, pairs: list[PreferencePair], tokenizer, args) -> None:
    """One forward and backward pass on a training-sized batch, weights untouched.

    Primes the CPU kernels and the allocator, so neither trainer's clock pays for them (the
    one that runs first otherwise does). Eval mode: no dropout, so no RNG is consumed.
    """
    texts = [join(p.prompt, r) for p in pairs[: args.batch_size] for r in (p.chosen, p.rejected)]
    batch = tokenizer(texts, padding=True, truncation=True, max_length=args.max_length,
                      return_tensors="pt")
    model.eval()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    logits = out if isinstance(out, torch.Tensor) else out.logits
    logits.float().sum().backward()
    model.zero_grad(set_to_none=True)
    model.train()


def checksum(model: torch.nn.Module) -> float:
    """Sum of all weights: equal for both trainers iff they start from the same initial model."""
    return float(sum(p.detach().double().sum() for p in model.parameters()))


def checkpointing_on(model: torch.nn.Module) -> bool:
    """Whether TRL really trained with activation (gradient) checkpointing."""
    name = next((n for n in ("is_activation_checkpointing", "is_gradient_checkpointing")
                 if hasattr(type(model), n)), None)
    return bool(getattr(model, name)) if name else False


def reset_accelerate() -> None:
    """Each trainer builds its own Accelerator; do not let the first one's state leak."""
    AcceleratorState._reset_state(reset_partial_state=True)
    gc.collect()


class BatchCounter:
    """Counts pairs, real tokens and padded slots of every training forward pass of a model.

    A forward pre-hook on the Hugging Face backbone, identical for both trainers, so the
    counts come from the batches each trainer really built (whatever its batching).
    """

    def __init__(self, backbone: torch.nn.Module):
        self.pairs = self.real_tokens = self.padded_tokens = 0
        self.handle = backbone.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs):
        if module.training:  # not the warm-up, not evaluation
            mask = kwargs["attention_mask"]
            self.pairs += mask.shape[0] // 2  # chosen rows, then rejected rows
            self.real_tokens += int(mask.sum())
            self.padded_tokens += mask.numel()


# --------------------------------------------------------------------------- TRL
def run_trl(args, pairs: list[PreferencePair], backbone: str, tmp: Path) -> dict:
    """Tokenize as TRL would (full text, special tokens, no truncation), let TRL filter, train."""
    tokenizer = AutoTokenizer.from_pretrained(backbone)
    tokenizer.deprecation_warnings["sequence-length-is-longer-than-the-specified-maximum"] = True

    # BERT has no EOS token, so TRL's raw-text path (add_eos) fails: hand it token ids
    # instead, exactly what its tokenize step would produce. Its max_length filter still runs.
    start = time.perf_counter()
    columns = {
        "chosen_ids": [tokenizer(join(p.prompt, p.chosen))["input_ids"] for p in pairs],
        "rejected_ids": [tokenizer(join(p.prompt, p.rejected))["input_ids"] for p in pairs],
    }
    if any(p.margin is not None for p in pairs):  # rewardkit trains with margins when present
        columns["margin"] = [float(p.margin or 0.0) for p in pairs]
    train_dataset = datasets.Dataset.from_dict(columns)
    tokenize_seconds = time.perf_counter() - start

    set_seed(args.seed)  # as rewardkit does right before loading: same fresh head
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # "newly initialized head" is expected
    model = AutoModelForSequenceClassification.from_pretrained(
        backbone, num_labels=1, dtype=torch.float32)
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
        bf16=args.bf16,
        **{CHECKPOINTING: args.trl_gradient_checkpointing},
        seed=args.seed,
        logging_steps=args.logging_steps,
        use_cpu=True,
        dataloader_num_workers=0,
        report_to="none",
        save_strategy="no",
        eval_strategy="no",
        disable_tqdm=True,
    )
    counter = BatchCounter(model)
    start = time.perf_counter()
    trainer = trl.RewardTrainer(model=model, args=config, train_dataset=train_dataset,
                                processing_class=tokenizer)
    setup_seconds = time.perf_counter() - start  # includes TRL's max_length filter
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)

    warm_up(trainer.model, pairs, tokenizer, args)
    start = time.perf_counter()
    output = trainer.train()
    call_seconds = time.perf_counter() - start
    loop_seconds = output.metrics["train_runtime"]  # from after prepare(), like rewardkit's
    counter.handle.remove()

    kept = trainer.train_dataset
    kept_tokens = [len(c) + len(r) for c, r in zip(kept["chosen_ids"], kept["rejected_ids"],
                                                  strict=True)]
    all_lengths = [max(len(c), len(r)) for c, r in zip(columns["chosen_ids"],
                                                      columns["rejected_ids"], strict=True)]
    trained = trainer.accelerator.unwrap_model(trainer.model).cpu().eval()
    return {
        "model": TextRewardModel(trained, tokenizer),
        "initial_checksum": initial,
        "checkpointing": checkpointing_on(trained),
        "pairs_in": len(pairs),
        "pairs_kept": len(kept),
        "pairs_trained": counter.pairs,
        "pairs_truncated": 0,
        "full_lengths": all_lengths,
        "mean_tokens_per_pair": sum(kept_tokens) / max(1, len(kept_tokens)),
        "real_tokens": counter.real_tokens,
        "padded_tokens": counter.padded_tokens,
        "loop_seconds": loop_seconds,
        "train_call_seconds": call_seconds,
        "end_to_end_seconds": tokenize_seconds + setup_seconds + call_seconds,
    }


# --------------------------------------------------------------------------- rewardkit
def run_rewardkit(args, pairs: list[PreferencePair], backbone: str, tmp: Path) -> dict:
    """rewardkit's own trainer with the same hyperparameters; it keeps every pair."""
    config = RewardConfig(
        base_model=backbone,
        max_length=args.max_length,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        warmup_ratio=args.warmup_ratio,
        weight_decay=args.weight_decay,
        max_grad_norm=args.max_grad_norm,
        bf16=args.bf16,
        disable_dropout=True,  # as TRL's default
        seed=args.seed,
        logging_steps=args.logging_steps,
        num_threads=args.threads,
    )
    trainer = RewardTrainer(config)
    initial = checksum(trainer.model)
    counter = BatchCounter(trainer.model.backbone)
    warm_up(trainer.model, pairs, trainer.model.tokenizer, args)

    start = time.perf_counter()
    result = trainer.train(pairs, tmp / "rewardkit", progress=False)
    call_seconds = time.perf_counter() - start  # tokenization + setup + loop + writing curves
    counter.handle.remove()

    # Re-encode with rewardkit's encoder for per-pair lengths and truncation flags.
    chosen, rejected, truncated = [], [], 0
    for pair in pairs:
        c = result.model.encode(pair.prompt, pair.chosen, args.max_length)
        r = result.model.encode(pair.prompt, pair.rejected, args.max_length)
        chosen.append(c.input_ids)
        rejected.append(r.input_ids)
        truncated += any((c.prompt_truncated, c.response_truncated,
                          r.prompt_truncated, r.response_truncated))
    lengths = [max(len(c), len(r)) for c, r in zip(chosen, rejected, strict=True)]
    pair_tokens = [len(c) + len(r) for c, r in zip(chosen, rejected, strict=True)]
    return {
        "model": result.model,
        "initial_checksum": initial,
        "pairs_in": len(pairs),
        "pairs_kept": result.n_pairs,
        "pairs_trained": counter.pairs,
        "pairs_truncated": truncated,
        "prompts_truncated": result.prompts_truncated,
        "responses_truncated": result.responses_truncated,
        "trained_lengths": lengths,
        "mean_tokens_per_pair": sum(pair_tokens) / len(pair_tokens),
        "real_tokens": counter.real_tokens,
        "padded_tokens": counter.padded_tokens,
        "loop_seconds": result.seconds,
        "train_call_seconds": call_seconds,
        "end_to_end_seconds": call_seconds,
    }


# --------------------------------------------------------------------------- main
def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(args.threads)
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    in_repo = sys.executable.startswith(str(REPO))
    python = os.path.relpath(sys.executable, REPO) if in_repo else "python"
    command = f"cd {REPO} && PYTHONPATH=src " + shlex.join([python, *sys.argv])

    # 1. Data: one seeded split, the same pairs for both trainers.
    parts = load_pairs(args.data).split((0.8, 0.1, 0.1), args.seed)
    train_pairs = parts["train"].pairs[: args.n_train]
    test = PreferenceDataset(pairs=parts["test"].pairs[: args.n_test])
    backbone = args.backbone or default_backbone()
    precision = "bf16 autocast" if args.bf16 else "fp32"

    # 2. Train both, one after the other, in this process.
    results: dict[str, dict] = {}
    order = ["trl", "rewardkit"] if args.order == "trl-first" else ["rewardkit", "trl"]
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        for name in order:
            set_seed(args.seed)
            run = run_trl if name == "trl" else run_rewardkit
            print(f"training {name} on {len(train_pairs)} pairs ...", flush=True)
            results[name] = run(args, train_pairs, backbone, Path(tmp))
            reset_accelerate()

    # 3. Held-out accuracy: same test pairs, same scorer, same truncation policy at eval.
    reports: dict[str, EvalReport] = {}
    for name in ("rewardkit", "trl"):
        reports[name] = evaluate_model(results[name]["model"], test, max_length=args.max_length,
                                       seed=args.seed, progress=False)

    # 4. Numbers and ratios.
    numbers = {}
    for name, r in results.items():
        rep = reports[name]
        numbers[name] = {
            "pairs_in": r["pairs_in"],
            "pairs_kept": r["pairs_kept"],
            "pairs_kept_fraction": r["pairs_kept"] / r["pairs_in"],
            "pairs_trained": r["pairs_trained"],
            "pairs_truncated": r["pairs_truncated"],
            "mean_tokens_per_kept_pair": r["mean_tokens_per_pair"],
            "real_tokens_trained": r["real_tokens"],
            "padded_tokens_trained": r["padded_tokens"],
            "padding_fraction": 1 - r["real_tokens"] / r["padded_tokens"],
            "loop_seconds": r["loop_seconds"],
            "train_call_seconds": r["train_call_seconds"],
            "end_to_end_seconds": r["end_to_end_seconds"],
            "pairs_per_second": r["pairs_trained"] / r["loop_seconds"],
            "pairs_per_second_end_to_end": r["pairs_trained"] / r["end_to_end_seconds"],
            "tokens_per_second": r["real_tokens"] / r["loop_seconds"],
            "accuracy": rep.accuracy,
            "accuracy_ci": list(rep.accuracy_ci),
            "test_pairs": rep.n_pairs,
        }
    rk, tr = numbers["rewardkit"], numbers["trl"]
    ratio_keys = ["pairs_kept", "pairs_kept_fraction", "mean_tokens_per_kept_pair",
                  "loop_seconds", "pairs_per_second", "pairs_per_second_end_to_end",
                  "tokens_per_second", "accuracy"]
    ratios = {k: rk[k] / tr[k] if tr[k] else float("nan") for k in ratio_keys}

    # Sanity: both saw the same lengths, so TRL dropped exactly the pairs rewardkit truncated.
    full = results["trl"]["full_lengths"]
    same_lengths = all(min(f, args.max_length) == t
                       for f, t in zip(full, results["rewardkit"]["trained_lengths"], strict=True))
    same_init = math.isclose(results["trl"]["initial_checksum"],
                             results["rewardkit"]["initial_checksum"], rel_tol=1e-12)

    # 5. Report: a markdown table, ratios are rewardkit / TRL.
    machine = (f"{cpu_name()}, {args.threads} threads, torch {torch.__version__}, "
               f"transformers {transformers.__version__}, trl {trl.__version__}, "
               f"rewardkit {rewardkit.__version__}, precision {precision}")
    print(f"\n### rewardkit vs TRL RewardTrainer: {Path(args.data).name}, {len(train_pairs)} train "
          f"pairs, {len(test.pairs)} test pairs, max_length {args.max_length}, batch "
          f"{args.batch_size}, epochs {args.epochs:g}, lr {args.learning_rate:g}, {precision}\n")
    rows = [["", "pairs in", "pairs kept", "tokens/pair", "padding", "train s", "train pairs/s",
             "pairs/s e2e", "tokens/s", "held-out acc [95% CI]"]]
    for name, label in (("rewardkit", "rewardkit"), ("trl", "TRL")):
        n = numbers[name]
        rows.append([
            label, str(n["pairs_in"]), f"{n['pairs_kept']} ({n['pairs_kept_fraction']:.0%})",
            f"{n['mean_tokens_per_kept_pair']:.0f}", f"{n['padding_fraction']:.0%}",
            f"{n['loop_seconds']:.1f}", f"{n['pairs_per_second']:.2f}",
            f"{n['pairs_per_second_end_to_end']:.2f}", f"{n['tokens_per_second']:.0f}",
            f"{n['accuracy']:.3f} [{n['accuracy_ci'][0]:.3f}, {n['accuracy_ci'][1]:.3f}]",
        ])
    rows.append([
        "ratio", "1.00", f"{ratios['pairs_kept']:.2f}x",
        f"{ratios['mean_tokens_per_kept_pair']:.2f}x",
        "", f"{ratios['loop_seconds']:.2f}x", f"**{ratios['pairs_per_second']:.2f}x**",
        f"{ratios['pairs_per_second_end_to_end']:.2f}x", f"{ratios['tokens_per_second']:.2f}x",
        f"{ratios['accuracy']:.2f}x ({rk['accuracy'] - tr['accuracy']:+.3f})",
    ])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for index, row in enumerate(rows):
        print("| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                for i, (c, w) in enumerate(zip(row, widths, strict=True))) + " |")
        if index == 0:
            print("|" + "|".join("-" * (w + 1) + ("-" if i == 0 else ":")
                                 for i, w in enumerate(widths)) + "|")
    print()
    print(f"machine:  {machine}")
    print(f"settings: seed {args.seed}, warmup_ratio {args.warmup_ratio}, weight_decay "
          f"{args.weight_decay}, max_grad_norm {args.max_grad_norm}, order {args.order}; TRL "
          f"gradient checkpointing {'on' if results['trl']['checkpointing'] else 'off'}, TRL "
          f"dropout off and rewardkit dropout off (both defaults)")
    print(f"checks:   same initial weights: {same_init}; same token lengths: {same_lengths}; "
          f"TRL dropped {tr['pairs_in'] - tr['pairs_kept']} of {tr['pairs_in']} pairs "
          f"({1 - tr['pairs_kept_fraction']:.1%}), rewardkit truncated {rk['pairs_truncated']}")
    print(f"targets:  train pairs/s >= 2x TRL: {_yes(ratios['pairs_per_second'] >= 2)} "
          f"({ratios['pairs_per_second']:.2f}x); keeps 100% of pairs: "
          f"{_yes(rk['pairs_kept_fraction'] == 1)}; held-out accuracy >= TRL: "
          f"{_yes(rk['accuracy'] >= tr['accuracy'])} "
          f"({rk['accuracy']:.3f} vs {tr['accuracy']:.3f})")
    print(f"command:  {command}")

    if args.json:
        out = {
            "command": command,
            "machine": machine,
            "settings": {k: v for k, v in vars(args).items() if k != "json"}
            | {"backbone": backbone, "precision": precision, "n_train": len(train_pairs),
               "n_test": len(test.pairs)},
            "checks": {"same_initial_weights": same_init, "same_token_lengths": same_lengths},
            "rewardkit": rk,
            "trl": tr,
            "ratios": ratios,
        }
        Path(args.json).write_text(json.dumps(out, indent=2))
        print(f"wrote {args.json}")


def cpu_name() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        model = next(line.split(":", 1)[1].strip() for line in lines
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    return f"{model} ({os.cpu_count()} cores visible)"


def _yes(ok: bool) -> str:
    return "yes" if ok else "NO"


if __name__ == "__main__":
    main()
