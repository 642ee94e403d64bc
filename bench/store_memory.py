"""Peak memory of streaming commit and checkout on a model of at least 1 GiB (Linux only).

Builds a synthetic fp32 model folder (``--tensors`` tensors of ``--rows`` x 4096 weight-like
values, made one at a time and streamed to disk), then, each step in a fresh process:
commit it (version 1), commit a full fine-tune of it (version 2: every tensor changed a
little, stored as deltas), check out version 2 as one ``model.safetensors``, and check it
out sharded (``--shard`` bytes per shard). For each step it reports the seconds and the peak
resident memory above the process's resident memory at the start (``/proc/self/clear_refs``
resets the peak), next to the largest tensor and the model size, and checks the checkout is
bit-identical to version 2.

Usage::

    PYTHONPATH=src .venv/bin/python bench/store_memory.py [--tensors 20] [--rows 4096]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STEPS = ("commit v1", "commit v2 (full fine-tune)", "checkout v2", "checkout v2 sharded")


def _rss(field: str) -> int:
    """Return a memory field of /proc/self/status in bytes."""
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field))
    return int(line.split()[1]) * 1024


def _tensor(name: str, rows: int, version: int):  # noqa: ANN202 (torch imported late)
    import torch

    g = torch.Generator().manual_seed(int(name.split(".")[1]))
    weights = torch.randn(rows, 4096, generator=g) * 0.02
    if version == 2:
        weights += torch.randn(rows, 4096, generator=g) * 2e-5  # a small fine-tuning step
    return weights


def step(folder: Path, which: str, n: int, rows: int, shard: int) -> dict[str, float]:
    """Run one step in this process; return its seconds and peak memory above the start (bytes)."""
    from rewardkit.store import Repository
    from rewardkit.store.modeldir import write_weights
    from rewardkit.store.objects import tensor_bytes

    class Spec:
        dtype, shape = "F32", (rows, 4096)

    names = [f"layer.{i}.weight" for i in range(n)]
    if which.startswith("commit"):
        version = 1 if which == "commit v1" else 2
        model = folder / f"v{version}"
        model.mkdir()
        (model / "config.json").write_text("{}")
        write_weights(model, dict.fromkeys(names, Spec), lambda name: tensor_bytes(_tensor(name, rows, version)))
    repo = Repository.init(folder / "repo") if which == "commit v1" else Repository.open(folder / "repo")
    Path("/proc/self/clear_refs").write_text("5")  # peak RSS := RSS now
    base, start = _rss("VmRSS"), time.perf_counter()
    if which.startswith("commit"):
        repo.commit_dir(model, which)
    elif which == "checkout v2":
        repo.checkout("main", folder / "out")
    else:
        repo.checkout("main", folder / "out-sharded", max_shard_size=shard)
    seconds, peak = time.perf_counter() - start, _rss("VmHWM") - base
    result = {"seconds": seconds, "peak_bytes": peak, "store_bytes": repo.stats().bytes}
    repo.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tensors", type=int, default=20)
    parser.add_argument("--rows", type=int, default=4096, help="rows of 4096 fp32 values per tensor")
    parser.add_argument("--shard", type=int, default=300_000_000, help="max_shard_size of the sharded checkout")
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:  # one step, in its own process
        print(json.dumps(step(args.folder, args.step, args.tensors, args.rows, args.shard)))
        return
    largest = args.rows * 4096 * 4
    model = largest * args.tensors
    print(f"model: {args.tensors} fp32 tensors of {largest / 2**20:.0f} MiB = {model / 2**30:.2f} GiB")
    print(f"{'step':28} {'seconds':>8} {'peak MiB':>9} {'x largest':>9} {'x model':>8} {'store GiB':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for which in STEPS:
            run = subprocess.run(
                [sys.executable, __file__, "--step", which, "--folder", tmp, "--tensors", str(args.tensors),
                 "--rows", str(args.rows), "--shard", str(args.shard)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            r = json.loads(run.stdout)
            print(f"{which:28} {r['seconds']:8.1f} {r['peak_bytes'] / 2**20:9.0f} {r['peak_bytes'] / largest:9.2f} "
                  f"{r['peak_bytes'] / model:8.3f} {r['store_bytes'] / 2**30:9.2f}", flush=True)  # fmt: skip
        from safetensors import safe_open

        out, shards = Path(tmp) / "out" / "model.safetensors", sorted((Path(tmp) / "out-sharded").glob("model-*"))
        with safe_open(str(out), "pt") as f:
            for name in f.keys():  # noqa: SIM118
                want = _tensor(name, args.rows, 2)
                assert f.get_tensor(name).equal(want), name
        print(f"checkout bit-identical to version 2; sharded checkout: {len(shards)} shards")


if __name__ == "__main__":
    main()
