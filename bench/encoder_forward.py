"""Padded HF forward against rewardkit's packed encoder forward, A/B in one process.

Times forward + backward of a reward batch (chosen and rejected texts of ``--batch-size``
pairs, padded together, Bradley-Terry loss) for MiniLM on real hh-rlhf pairs, in fp32 and
bf16 autocast, and the texts/s of scoring (what ``rewardkit score --data`` and evaluation
run). The variants take turns batch by batch (who goes first rotates), so a slow spell of a
shared machine hits all of them; the table gives the median and min-max over rounds.

    cd /work/main && PYTHONPATH=src .venv/bin/python bench/encoder_forward.py --json bench/encoder_forward.json

Variants: ``hf`` is ``BertForSequenceClassification``'s own forward on the padded batch
(transformers' default attention, SDPA), what ``TextRewardModel.packed = False`` runs;
``packed-sdpa`` and ``packed-baddbmm`` are :mod:`rewardkit.models.packed_bert` with either
attention kernel. ``TextRewardModel`` uses the packed forward with ``attention="auto"``
(SDPA in fp32, ``baddbmm`` in bf16); the ``packed/hf`` column is that choice against ``hf``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch

from rewardkit.data import load_pairs
from rewardkit.evaluation.evaluate import reward_table
from rewardkit.models import TextRewardModel, packed_bert
from rewardkit.training.objectives import bradley_terry_loss

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"
VARIANTS = ("hf", "packed-sdpa", "packed-baddbmm")
AUTO = {"fp32": "packed-sdpa", "bf16": "packed-baddbmm"}  # packed_bert's attention="auto"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA), help="hh-rlhf harmless jsonl(.gz)")
    p.add_argument("--n-pairs", type=int, default=400, help="first N pairs of the train split")
    p.add_argument("--seed", type=int, default=42, help="split and batch order")
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=8, help="pairs per batch (2x texts)")
    p.add_argument("--batches", type=int, default=12,
                   help="timed batches per round, spread evenly over the length-sorted batches")
    p.add_argument("--rounds", type=int, default=5, help="rounds per precision (each variant on every batch)")
    p.add_argument("--score-pairs", type=int, default=128, help="pairs scored (2x texts) per scoring round")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--json", default=None, help="write the numbers to this file")
    return p.parse_args()


def length_grouped_batches(model: TextRewardModel, pairs, batch_size: int, max_length: int, seed: int):
    """Padded ``(input_ids, attention_mask)`` batches, chosen rows then rejected rows.

    Grouped as the trainer groups them (400 pairs are one mega-batch: shuffle, sort by length,
    slice), so padding is as low as in training.
    """
    encoded = [(model.encode(p.prompt, p.chosen, max_length).input_ids,
                model.encode(p.prompt, p.rejected, max_length).input_ids) for p in pairs]
    order = list(range(len(encoded)))
    random.Random(seed).shuffle(order)
    order.sort(key=lambda i: -max(len(encoded[i][0]), len(encoded[i][1])))
    batches = []
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        batches.append(model.pad([encoded[i][0] for i in rows] + [encoded[i][1] for i in rows]))
    return batches


def forward(model: TextRewardModel, variant: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The rewards function of one variant."""
    if variant == "hf":
        return lambda ids, mask: model.backbone(input_ids=ids, attention_mask=mask).logits.squeeze(-1).float()
    kernel = {"packed-sdpa": "sdpa", "packed-baddbmm": "baddbmm"}[variant]
    return lambda ids, mask: packed_bert.sequence_classification_logits(
        model.backbone, ids, mask, attention=kernel).squeeze(-1).float()


def train_seconds(model: TextRewardModel, batches, variant: str, bf16: bool) -> float:
    """Seconds for forward + Bradley-Terry loss + backward over ``batches``."""
    rewards_of = forward(model, variant)
    start = time.perf_counter()
    for ids, mask in batches:
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext():
            chosen, rejected = rewards_of(ids, mask).chunk(2)
        bradley_terry_loss(chosen, rejected).backward()
    return time.perf_counter() - start


def score_seconds(model: TextRewardModel, pairs, packed: bool, max_length: int) -> float:
    """Seconds of :func:`reward_table` (tokenization included, as in ``score --data``)."""
    model.packed = packed
    start = time.perf_counter()
    reward_table(model, pairs, max_length=max_length)
    seconds = time.perf_counter() - start
    model.packed = True
    return seconds


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = TextRewardModel.load()
    for module in model.modules():  # the trainer's default (disable_dropout)
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    train_split = load_pairs(args.data).split((0.8, 0.1, 0.1), args.seed)["train"]
    pairs = list(train_split.pairs[: args.n_pairs])
    all_batches = length_grouped_batches(model, pairs, args.batch_size, args.max_length, args.seed)
    step = max(1, len(all_batches) // args.batches)
    batches = all_batches[::step][: args.batches]
    texts = sum(int(ids.shape[0]) for ids, _ in batches)
    real = sum(int(mask.sum()) for _, mask in batches)
    slots = sum(mask.numel() for _, mask in batches)
    n_pairs = texts // 2
    print(f"{len(batches)} batches of {args.batch_size} pairs, {real / texts:.0f} real tokens/text, "
          f"padding {1 - real / slots:.1%}, {args.threads} threads", flush=True)

    results: dict = {"train_pairs_per_s": {}, "score_texts_per_s": {}}
    model.train()
    for bf16 in (False, True):
        precision = "bf16" if bf16 else "fp32"
        for variant in VARIANTS:  # warm-up, untimed
            train_seconds(model, batches[:2], variant, bf16)
        rates: dict[str, list[float]] = {v: [] for v in VARIANTS}
        for r in range(args.rounds):
            seconds = dict.fromkeys(VARIANTS, 0.0)
            for j, batch in enumerate(batches):  # interleave per batch, rotating who goes first
                shift = (r + j) % len(VARIANTS)
                for variant in VARIANTS[shift:] + VARIANTS[:shift]:
                    seconds[variant] += train_seconds(model, [batch], variant, bf16)
            for variant in VARIANTS:
                rates[variant].append(n_pairs / seconds[variant])
            print(f"{precision} round {r + 1}: " + ", ".join(f"{v} {rates[v][-1]:.2f}" for v in VARIANTS),
                  flush=True)
        results["train_pairs_per_s"][precision] = {v: summary(rates[v]) for v in VARIANTS}

    model.eval()
    score_pairs = pairs[: args.score_pairs]
    n_texts = len({(p.prompt, r) for p in score_pairs for r in (p.chosen, p.rejected)})
    score_seconds(model, score_pairs[:8], True, args.max_length)  # warm-up
    score_rates: dict[str, list[float]] = {"hf": [], "packed": []}
    for r in range(args.rounds):
        for packed in ((False, True) if r % 2 == 0 else (True, False)):
            score_rates["packed" if packed else "hf"].append(
                n_texts / score_seconds(model, score_pairs, packed, args.max_length))
        print(f"score round {r + 1}: hf {score_rates['hf'][-1]:.1f}, packed {score_rates['packed'][-1]:.1f} texts/s",
              flush=True)
    results["score_texts_per_s"]["fp32"] = {v: summary(x) for v, x in score_rates.items()}

    print(f"\nforward+backward pairs/s, median (min-max) of {args.rounds} interleaved rounds")
    print(f"{'precision':<10}" + "".join(f"{v:>24}" for v in VARIANTS) + f"{'packed/hf':>12}")
    for precision, by_variant in results["train_pairs_per_s"].items():
        cells = "".join(f"{s['median']:>10.2f} ({s['min']:.2f}-{s['max']:.2f})".rjust(24)
                        for s in by_variant.values())
        auto = by_variant[AUTO[precision]]["median"]  # what TextRewardModel runs
        ratio = auto / by_variant["hf"]["median"]
        print(f"{precision:<10}{cells}{ratio:>11.2f}x")
    s = results["score_texts_per_s"]["fp32"]
    print(f"\nscoring texts/s (fp32, eval, {n_texts} texts, max_length {args.max_length}): "
          f"hf {s['hf']['median']:.1f} ({s['hf']['min']:.1f}-{s['hf']['max']:.1f}), "
          f"packed {s['packed']['median']:.1f} ({s['packed']['min']:.1f}-{s['packed']['max']:.1f}), "
          f"{s['packed']['median'] / s['hf']['median']:.2f}x")
    if args.json:
        results["setup"] = {**vars(args), "batches_timed": len(batches), "pairs_per_round": n_pairs,
                            "padding": 1 - real / slots, "torch": torch.__version__,
                            "python": sys.version.split()[0], "machine": platform.processor() or platform.machine()}
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
