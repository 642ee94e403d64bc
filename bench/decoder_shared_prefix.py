"""Shared-prefix rows vs two rows per pair vs TRL, on one small decoder built from a config.

A Llama-style reward model (random weights, no download) and a GPT-2-style byte-level BPE
tokenizer trained offline on the training texts are saved once to a temporary folder;
three trainers then train on the same hh-rlhf harmless pairs, in one process, rotating
their order every round:

* ``shared``: rewardkit's RewardTrainer, one row ``[prompt; chosen; rejected]`` per pair
  (its default for decoders);
* ``two-row``: rewardkit's RewardTrainer with ``shared_prefix=False``;
* ``trl``: TRL's RewardTrainer (activation checkpointing off, as here), on the same token ids.

Only pairs whose both texts fit ``--max-length`` untruncated are used, so TRL drops none,
rewardkit truncates none, and all three train on identical token ids. Throughput is
training pairs per second of the optimisation loop (tokenization and set-up excluded),
by wall clock and by process CPU time (less disturbed by other work on a shared machine);
the script prints medians and min-max over the rounds, for fp32 and bf16 autocast.

    cd /work/main && PYTHONPATH=src .venv/bin/python bench/decoder_shared_prefix.py --json out.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # CPU only
# On a shared machine, OpenMP threads that spin while their partner is descheduled burn the
# CPU the partner needs; with the default (active) policy all three trainers then crawl at the
# same ~1 pair/s whatever their work. Passive waiting is set before torch loads OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import datasets
import torch
import transformers
import trl
from accelerate.state import AcceleratorState
from accelerate.utils import set_seed
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from rewardkit.data import PreferencePair, load_pairs
from rewardkit.models import TextRewardModel
from rewardkit.models.text import set_pad_token
from rewardkit.training import RewardConfig, RewardTrainer

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"
TRAINERS = ("shared", "two-row", "trl")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA), help="hh-rlhf harmless jsonl(.gz)")
    p.add_argument("--n-train", type=int, default=96, help="pairs per training run")
    p.add_argument("--rounds", type=int, default=3, help="runs of each trainer per precision")
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=8, help="pairs per step")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--vocab", type=int, default=8192, help="byte-level BPE vocabulary size")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--json", default=None, help="write all numbers to this file")
    return p.parse_args()


# --------------------------------------------------------------------------- the decoder
def build_decoder(args, texts: list[str], folder: Path) -> None:
    """Train a byte-level BPE tokenizer on ``texts``, build a random Llama reward model, save both."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=args.vocab, special_tokens=["<|endoftext|>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>")
    torch.manual_seed(args.seed)
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=args.hidden, num_hidden_layers=args.layers,
        num_attention_heads=args.heads, num_key_value_heads=args.heads, intermediate_size=int(2.75 * args.hidden),
        max_position_embeddings=2 * args.max_length, num_labels=1, tie_word_embeddings=False,
    )
    backbone = transformers.LlamaForSequenceClassification(config)
    set_pad_token(tokenizer, backbone)
    TextRewardModel(backbone, tokenizer).save(folder)


def fitting_pairs(pairs: list[PreferencePair], folder: Path, args) -> list[PreferencePair]:
    """The first ``n_train`` pairs whose two texts fit ``max_length`` tokens untruncated."""
    model = TextRewardModel.load(folder)
    out = []
    for pair in pairs:
        encoded = [model.encode(pair.prompt, r, args.max_length) for r in (pair.chosen, pair.rejected)]
        if not any(e.prompt_truncated or e.response_truncated for e in encoded):
            out.append(pair)
        if len(out) == args.n_train:
            break
    return out


# --------------------------------------------------------------------------- one run each
class TokenCounter:
    """Token slots (padding included) through the backbone's embedding during training forwards.

    Also notes the process CPU time at the first training forward, so that :meth:`cpu_seconds`
    gives the CPU time of the training loop: a figure that other processes on a shared
    machine disturb less than wall time.
    """

    def __init__(self, backbone: torch.nn.Module):
        self.slots = 0
        self.cpu_start: float | None = None
        self.handle = backbone.get_input_embeddings().register_forward_hook(self)

    def __call__(self, module, inputs, output) -> None:  # noqa: ANN001
        if module.training:
            self.slots += inputs[0].numel()
            if self.cpu_start is None:
                self.cpu_start = time.process_time()

    def cpu_seconds(self) -> float:
        self.handle.remove()
        return time.process_time() - self.cpu_start


def run_rewardkit(args, pairs: list[PreferencePair], folder: Path, tmp: Path, bf16: bool, shared: bool) -> dict:
    config = RewardConfig(
        base_model=str(folder), max_length=args.max_length, epochs=1.0, batch_size=args.batch_size,
        learning_rate=5e-5, warmup_ratio=0.1, weight_decay=0.01, max_grad_norm=1.0, bf16=bf16,
        disable_dropout=True, seed=args.seed, logging_steps=10, num_threads=args.threads, shared_prefix=shared,
    )
    trainer = RewardTrainer(config)
    counter = TokenCounter(trainer.model.backbone)
    result = trainer.train(pairs, tmp, progress=False)
    cpu = counter.cpu_seconds()
    assert result.shared_prefix == shared and result.n_pairs == len(pairs) and result.prompts_truncated == 0
    return {"seconds": result.seconds, "cpu_seconds": cpu, "pairs": len(pairs), "token_slots": counter.slots,
            "loss": result.final_loss}


def run_trl(args, pairs: list[PreferencePair], folder: Path, tmp: Path, bf16: bool) -> dict:
    model = TextRewardModel.load(folder)  # the same weights, tokenizer and pad token
    ids = {side: [model.encode(p.prompt, getattr(p, side), args.max_length).input_ids for p in pairs]
           for side in ("chosen", "rejected")}
    # TRL tokenizes the full text; these are exactly those ids (one tokenization of prompt + response)
    assert ids["chosen"][0] == model.tokenizer(pairs[0].prompt + pairs[0].chosen)["input_ids"]
    dataset = datasets.Dataset.from_dict({"chosen_ids": ids["chosen"], "rejected_ids": ids["rejected"]})
    config = trl.RewardConfig(
        output_dir=str(tmp), per_device_train_batch_size=args.batch_size, num_train_epochs=1,
        learning_rate=5e-5, lr_scheduler_type="linear", warmup_steps=0.1, weight_decay=0.01,
        max_grad_norm=1.0, max_length=args.max_length, bf16=bf16, seed=args.seed, logging_steps=10,
        use_cpu=True, dataloader_num_workers=0, report_to="none", save_strategy="no", eval_strategy="no",
        disable_tqdm=True, **{_trl_checkpointing(): False},
    )
    trainer = trl.RewardTrainer(model=model.backbone, args=config, train_dataset=dataset,
                                processing_class=model.tokenizer)
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    assert len(trainer.train_dataset) == len(pairs)  # none filtered
    counter = TokenCounter(model.backbone)
    output = trainer.train()
    cpu = counter.cpu_seconds()
    return {"seconds": output.metrics["train_runtime"], "cpu_seconds": cpu, "pairs": len(pairs),
            "token_slots": counter.slots, "loss": output.metrics["train_loss"]}


def _trl_checkpointing() -> str:
    """transformers 5 renamed gradient_checkpointing (TRL's default: on) to activation_checkpointing."""
    from dataclasses import fields

    names = {f.name for f in fields(trl.RewardConfig)}
    return "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"


def run(name: str, args, pairs, folder: Path, tmp: Path, bf16: bool) -> dict:
    set_seed(args.seed)
    torch.set_num_threads(args.threads)
    out = (run_trl(args, pairs, folder, tmp, bf16) if name == "trl"
           else run_rewardkit(args, pairs, folder, tmp, bf16, shared=name == "shared"))
    AcceleratorState._reset_state(reset_partial_state=True)
    gc.collect()
    out["pairs_per_second"] = out["pairs"] / out["seconds"]
    out["pairs_per_cpu_second"] = out["pairs"] / out["cpu_seconds"]
    return out


# --------------------------------------------------------------------------- main
def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(args.threads)
    datasets.disable_progress_bars()
    transformers.utils.logging.set_verbosity_error()
    command = "PYTHONPATH=src python " + " ".join(sys.argv)

    train = load_pairs(args.data).split((0.8, 0.1, 0.1), args.seed)["train"].pairs
    with tempfile.TemporaryDirectory(prefix="bench-decoder-") as tmp_name:
        tmp = Path(tmp_name)
        folder = tmp / "decoder"
        build_decoder(args, [p.prompt + p.chosen for p in train] + [p.rejected for p in train], folder)
        pairs = fitting_pairs(train, folder, args)
        n_params = sum(p.numel() for p in TextRewardModel.load(folder).parameters())
        print(f"decoder: Llama {args.layers} layers, hidden {args.hidden}, {n_params / 1e6:.1f}M parameters, "
              f"byte-level BPE {args.vocab}; {len(pairs)} hh-rlhf pairs that fit {args.max_length} tokens; "
              f"batch {args.batch_size}; {args.threads} threads", flush=True)

        for name in TRAINERS:  # warm-up: kernels and allocator, not timed
            run(name, args, pairs[: 2 * args.batch_size], folder, tmp / f"warm-{name}", bf16=False)

        runs: dict[str, dict[str, list[dict]]] = {}
        for precision in args.precisions.split(","):
            runs[precision] = {name: [] for name in TRAINERS}
            for round_ in range(args.rounds):
                order = TRAINERS[round_ % 3 :] + TRAINERS[: round_ % 3]  # rotate who goes first
                for name in order:
                    start = time.perf_counter()
                    r = run(name, args, pairs, folder, tmp / f"{precision}-{name}-{round_}", precision == "bf16")
                    runs[precision][name].append(r)
                    print(f"  {precision} round {round_} {name:8s} {r['pairs_per_second']:6.2f} pairs/s "
                          f"{r['pairs_per_cpu_second']:6.2f} pairs/CPU-s "
                          f"({r['token_slots']} token slots, loss {r['loss']:.4f}, "
                          f"{time.perf_counter() - start:.0f} s wall)", flush=True)

    print(f"\n### shared-prefix vs two rows vs TRL: Llama {args.layers}x{args.hidden}, {len(pairs)} hh-rlhf pairs, "
          f"max_length {args.max_length}, batch {args.batch_size}, {args.threads} threads, "
          f"{args.rounds} rounds (median, min-max)\n")
    print("| precision | trainer | train pairs/s | shared / this | pairs per CPU-s | shared / this | token slots |")
    print("|---|---|---:|---:|---:|---:|---:|")
    summary: dict[str, dict] = {}
    for precision, by_name in runs.items():
        for name, rs in by_name.items():
            row = {"token_slots": rs[0]["token_slots"]}
            cells = []
            for key in ("pairs_per_second", "pairs_per_cpu_second"):
                values = [r[key] for r in rs]
                shared = statistics.median(r[key] for r in by_name["shared"])
                median = statistics.median(values)
                row[key] = {"median": median, "min": min(values), "max": max(values),
                            "shared_over_this": shared / median}
                cells += [f"{median:.2f} ({min(values):.2f}-{max(values):.2f})", f"{shared / median:.2f}x"]
            summary.setdefault(precision, {})[name] = row
            print(f"| {precision} | {name} | {' | '.join(cells)} | {row['token_slots']} |")
    print(f"\nmachine: torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}")
    print(f"command: {command}")
    if args.json:
        Path(args.json).write_text(json.dumps({"command": command, "settings": vars(args), "summary": summary,
                                               "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
