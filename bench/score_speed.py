"""Texts per second of ``rewardkit score --data``: ``rewardkit.api.score_data``, median of N repeats.

Scoring and evaluation share one path (``reward_table`` → ``TextRewardModel.score``), so this
measures both. Run it before and after a change, on the same quiet machine, with the same
arguments; ``PYTHONPATH`` picks the code that is measured:

    cd /work/wt-bench
    # before: the main checkout's package
    PYTHONPATH=/work/main/src /work/main/.venv/bin/python bench/score_speed.py --json before.json
    # after: this checkout's package
    PYTHONPATH=src /work/main/.venv/bin/python bench/score_speed.py --json after.json

The first ``--pairs`` records of ``--data`` are copied to a temporary file, which
``score_data`` then reads, tokenizes and scores as the CLI does (model loading excluded: the
model is loaded once, its ``max_length`` set to ``--max-length``, and handed over as an object).
A text is one ``prompt + response``; every pair gives two.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __name__ == "__main__":  # a benchmark run (not the tests importing it): set before torch loads
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # no hidden tokenizer thread pool
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # everything on the CPU, never on a GPU

import torch
from cpu_meter import DEFAULT_THRESHOLD, CpuMeter

import rewardkit
from rewardkit.api import score_data
from rewardkit.models import TextRewardModel, default_backbone

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="model folder; default all-MiniLM-L6-v2 with a fresh head")
    p.add_argument("--decoder", action="store_true",
                   help="score with the small random Llama decoder of train_vs_trl.py --decoder instead")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="a jsonl(.gz) file of pairs")
    p.add_argument("--pairs", type=int, default=400, help="score the first N records of --data")
    p.add_argument("--max-length", type=int, default=256, help="token budget per text (training's default)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--contamination-threshold", type=float, default=DEFAULT_THRESHOLD)
    p.add_argument("--strict", action="store_true", help="exit 1 if any repeat is flagged as contaminated")
    p.add_argument("--json", default=None, help="write every repeat and the summary to this file")
    return p.parse_args(argv)


def first_records(data: str, n: int, folder: Path) -> Path:
    """Copy the first ``n`` lines of a jsonl(.gz) file to ``folder/data.jsonl``."""
    opener = gzip.open if data.endswith(".gz") else open
    with opener(data, "rt", encoding="utf-8") as src:
        lines = [line for _, line in zip(range(n), src, strict=False)]
    out = folder / "data.jsonl"
    out.write_text("".join(lines), encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="score-speed-") as tmp:
        data = first_records(args.data, args.pairs, Path(tmp))
        if args.decoder:
            from random_decoder import build_random_decoder

            texts = [json.loads(line)[key] for line in data.read_text().splitlines() for key in ("chosen", "rejected")]
            model_dir = str(build_random_decoder(Path(tmp) / "decoder", texts))
        else:
            model_dir = args.model or default_backbone()
        model = TextRewardModel.load(model_dir)
        model.tokenizer.model_max_length = args.max_length  # what model.max_length, and so score_data, uses
        model.score(["warm-up"] * 8, ["a short text to prime the kernels"] * 8, max_length=args.max_length)

        repeats = []
        for repeat in range(args.repeats):
            with CpuMeter() as meter:
                start = time.perf_counter()
                dataset, rewards = score_data(model, data)
                seconds = time.perf_counter() - start
            texts = 2 * len(rewards)
            usage = meter.usage
            repeats.append({"seconds": seconds, "texts": texts, "texts_per_second": texts / seconds,
                            "cpu": usage.to_dict(), "contaminated": usage.contaminated(args.contamination_threshold)})
            share = "?" if usage.other_share is None else f"{usage.other_share:.0%}"
            print(f"repeat {repeat + 1}/{args.repeats}: {texts} texts in {seconds:.2f} s = "
                  f"{texts / seconds:.1f} texts/s, other CPU {share}"
                  f"{'  CONTAMINATED' if repeats[-1]['contaminated'] else ''}", flush=True)

    speeds = [r["texts_per_second"] for r in repeats]
    flagged = sum(r["contaminated"] for r in repeats)
    summary = {"median": statistics.median(speeds), "min": min(speeds), "max": max(speeds)}
    print(f"\nscore --data: {summary['median']:.1f} texts/s (median of {args.repeats}, "
          f"{summary['min']:.1f}-{summary['max']:.1f}); {'random decoder' if args.decoder else model_dir}, "
          f"{args.pairs} records of {Path(args.data).name}, max_length {args.max_length}, {args.threads} threads")
    print(f"code:  rewardkit {rewardkit.__version__} from {Path(rewardkit.__file__).parent}")
    print(f"cpu:   {flagged} repeat(s) where other processes took more than {args.contamination_threshold:.0%} "
          "of our cores" + (": rerun on a quiet machine" if flagged else ""))
    if args.json:
        out = {"command": " ".join([sys.executable, *sys.argv]), "rewardkit": str(Path(rewardkit.__file__).parent),
               "settings": vars(args), "texts_per_second": summary, "repeats": repeats}
        Path(args.json).write_text(json.dumps(out, indent=2))
        print(f"wrote {args.json}")
    return 1 if args.strict and flagged else 0


if __name__ == "__main__":
    sys.exit(main())
