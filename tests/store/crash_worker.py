"""The crash harness's worker: store operations in a loop, in forked children the test SIGKILLs.

Run as ``python crash_worker.py REPO DONE_LOG`` (a "zygote": it imports torch and the store
once, then forks a child per ``run SEED [OPERATION]`` line on stdin, so a kill costs no
import). A child opens the repository and runs that operation of :data:`OPS` (or ones chosen
by ``random.Random(SEED)``) until it is killed, appending one JSON line to DONE_LOG after each operation returns: what
the operation reported done. The zygote answers ``pid N`` when a child starts and
``exit N STATUS`` when it has reaped it.

The test imports :data:`OPS` and :func:`model` too, to run "the next operation" itself and to
rebuild the tensors a commit reported done must check out as, bit for bit.
"""

from __future__ import annotations

import json
import os
import random
import sys
import traceback
from collections.abc import Callable
from typing import Any

import torch

from rewardkit.store import Repository
from rewardkit.store.gc import gc
from rewardkit.store.merge import commit_merge, fast_forward, plan_merge

BRANCHES = ("main", "side")
ALIAS = "production"


def model(seed: int) -> dict[str, torch.Tensor]:
    """The tensors of commit ``seed``: a shared embedding (dedup), a 64 KiB layer, a bf16 head."""
    g = torch.Generator().manual_seed(seed)
    return {
        "embed.weight": torch.randn(256, 64, generator=torch.Generator().manual_seed(seed % 3)),
        "layer.weight": torch.randn(128, 128, generator=g),
        "head.weight": torch.randn(1, 128, generator=g).to(torch.bfloat16),
        "head.bias": torch.tensor([float(seed)]),
    }


CONFIG = {"model_type": "tiny"}  # one config for every commit, so merges meet no file conflict


def commit(repo: Repository, rng: random.Random) -> dict[str, Any]:
    seed = rng.randrange(1 << 30)
    branch = rng.choice(BRANCHES)
    branches = repo.branches()
    if branches and branch not in branches:  # both branches share a history, so they can merge
        repo.create_branch(branch, next(iter(branches)))
    c = repo.commit_tensors(model(seed), {"config.json": json.dumps(CONFIG).encode()}, f"seed {seed}",
                            metrics={"accuracy": rng.random()}, branch=branch)
    return {"op": "commit", "commit": c.id, "seed": seed, "branch": branch}


def merge(repo: Repository, rng: random.Random) -> dict[str, Any]:
    """Merge ``side`` into ``main`` (the current branch) with a weight strategy, or fast-forward."""
    if set(repo.branches()) != set(BRANCHES):
        return {"op": "merge", "kind": "nothing to merge"}
    plan = plan_merge(repo, ["side"], strategy=rng.choice(["average", "ties"]))
    if plan.kind == "fast-forward":
        fast_forward(repo, plan)
    if plan.kind != "merge":
        return {"op": "merge", "kind": plan.kind}
    return {"op": "merge", "kind": "merge", "commit": commit_merge(repo, plan).id}


def collect(repo: Repository, rng: random.Random) -> dict[str, Any]:
    report = gc(repo, grace_s=0)
    return {"op": "gc", "removed": len(report.removed_objects)}


def set_alias(repo: Repository, rng: random.Random) -> dict[str, Any]:
    branches = repo.branches()
    target = branches[rng.choice(sorted(branches))]
    gated = "accuracy" in repo.commits.get(target).metrics  # a merge commit stores no metrics here
    repo.set_alias(ALIAS, target, require=["accuracy>=0"] if gated else [])
    return {"op": "alias set", "commit": target}


#: Operation name -> function(repo, rng) that runs it and returns what it reports done.
OPS: dict[str, Callable[[Repository, random.Random], dict[str, Any]]] = {
    "commit": commit,
    "gc": collect,
    "alias set": set_alias,
    "merge": merge,
}


def _child(repo_path: str, done_log: str, seed: int, only: str | None = None) -> None:
    """Run operations for ever (``only`` that one, else random ones).

    Before each, log ``{"begin": name}``; after it, what it reported done.
    """
    rng = random.Random(seed)
    with Repository.open(repo_path) as repo, open(done_log, "a") as log:
        names = [only] if only else sorted(OPS)
        while True:
            name = rng.choice(names) if repo.branches() else "commit"
            log.write(json.dumps({"begin": name}) + "\n")
            log.flush()
            log.write(json.dumps(OPS[name](repo, rng)) + "\n")
            log.flush()


def main(repo_path: str, done_log: str) -> None:
    torch.set_num_threads(1)
    print("ready", flush=True)
    for line in sys.stdin:  # "run SEED [OPERATION]"
        _, seed, *only = line.strip().split(maxsplit=2)
        pid = os.fork()
        if pid == 0:
            try:
                _child(repo_path, done_log, int(seed), only[0] if only else None)
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(1)
        print(f"pid {pid}", flush=True)
        _, status = os.waitpid(pid, 0)
        print(f"exit {pid} {status}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
