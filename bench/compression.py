"""What a full fine-tune costs on disk in the store, raw vs zstd vs zstd + delta, fp32 and bf16.

Version 1 is the real backbone (all-MiniLM-L6-v2, ``rewardkit.models.default_backbone()``)
as a reward model with a fresh head; version 2 is a genuinely fine-tuned copy of it (default:
the model the main job trained, ``/work/main/runs/main-job/model``: 492 steps of Bradley-Terry
on the shared data; any folder of the same architecture works). Every tensor of version 2
differs from version 1, so per-tensor dedup saves nothing and only compression can.

For each dtype (fp32, and both versions cast to bf16) and each storage mode it commits v1
then v2 into a fresh repository and reports the bytes v2 added as a fraction of v2's raw
tensor bytes, the commit and checkout seconds of v2, and checks that the checkout is
bit-identical. Modes:

- ``raw``: objects stored uncompressed (``ObjectStore.compress = False``), as before;
- ``zstd``: byte-grouped zstd, no delta (v2 committed on a new branch: no parent to delta against);
- ``zstd+delta``: byte-grouped zstd, or XOR delta against v1's tensor when smaller (the default).

Usage::

    PYTHONPATH=src .venv/bin/python bench/compression.py [--v2 FOLDER] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from rewardkit.models import default_backbone
from rewardkit.models.text import TextRewardModel
from rewardkit.store import Repository

MAIN_JOB_MODEL = Path("/work/main/runs/main-job/model")
MODES = ("raw", "zstd", "zstd+delta")


def save_as(model: TextRewardModel, dtype: torch.dtype, folder: Path) -> Path:
    """Save ``model`` with its weights cast to ``dtype``."""
    model.backbone.to(dtype)
    return model.save(folder)


def measure(v1: Path, v2: Path, mode: str, scratch: Path) -> dict[str, float]:
    """Commit v1 then v2 in a fresh repository; return sizes (bytes) and times (s)."""
    path = scratch / f"repo-{mode}"
    shutil.rmtree(path, ignore_errors=True)
    with Repository.init(path) as repo:
        repo.objects.compress = mode != "raw"
        repo.commit_dir(v1, "v1")
        before = repo.stats().bytes
        start = time.perf_counter()
        repo.commit_dir(v2, "v2", branch="solo" if mode == "zstd" else "main")
        commit_s = time.perf_counter() - start
        added = repo.stats().bytes - before
        out = scratch / f"out-{mode}"
        shutil.rmtree(out, ignore_errors=True)
        start = time.perf_counter()
        repo.checkout("solo" if mode == "zstd" else "main", out)
        checkout_s = time.perf_counter() - start
    want, got = load_file(v2 / "model.safetensors"), load_file(out / "model.safetensors")
    assert want.keys() == got.keys() and all(
        want[n].dtype == got[n].dtype and torch.equal(want[n].view(torch.uint8), got[n].view(torch.uint8))
        for n in want
    ), "checkout is not bit-identical"
    raw = sum(t.numel() * t.element_size() for t in want.values())
    changed = sum(not torch.equal(want[n], load_file(v1 / "model.safetensors")[n]) for n in want)
    shutil.rmtree(path)
    shutil.rmtree(out)
    return {"raw_bytes": raw, "added_bytes": added, "fraction": added / raw, "commit_s": commit_s,
            "checkout_s": checkout_s, "tensors": len(want), "changed": changed}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--v2", type=Path, default=MAIN_JOB_MODEL, help="fine-tuned model folder (version 2)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if not (args.v2 / "model.safetensors").is_file():
        raise SystemExit(f"{args.v2} has no model.safetensors; train one (rewardkit train) and pass --v2")
    torch.manual_seed(0)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        for label, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            v1 = save_as(TextRewardModel.load(default_backbone()), dtype, scratch / f"v1-{label}")
            v2 = save_as(TextRewardModel.load(args.v2), dtype, scratch / f"v2-{label}")
            for mode in MODES:
                row = {"dtype": label, "mode": mode, **measure(v1, v2, mode, scratch)}
                results.append(row)
                print(json.dumps(row), flush=True)
    print()
    print(f"v1: {default_backbone()} (fresh head); v2: {args.v2}")
    print(f"{'dtype':5} {'mode':11} {'changed':>9} {'raw MB':>7} {'added MB':>8} {'fraction':>8} "
          f"{'commit s':>8} {'checkout s':>10}")  # fmt: skip
    for r in results:
        print(f"{r['dtype']:5} {r['mode']:11} {r['changed']:>4}/{r['tensors']:<4} {r['raw_bytes'] / 1e6:7.1f} "
              f"{r['added_bytes'] / 1e6:8.1f} {r['fraction']:8.3f} {r['commit_s']:8.2f} {r['checkout_s']:10.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
