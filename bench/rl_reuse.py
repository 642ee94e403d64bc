"""Reuse of reward models across tasks: how many preferences a held-out task needs, by approach.

On the Pendulum goal family (:class:`rewardkit.rl.tasks.PendulumGoal`: hold the pole at a
goal angle; the dynamics never change, only the reward), for each held-out goal and each
budget K of labelled preference pairs of that goal, four approaches train a reward model and
are scored by their preference accuracy on held-out pairs of the same goal (segments of
other roll-outs, labelled by the perfect teacher):

- scratch:    a fresh StateActionRewardModel trained on the K pairs;
- transfer:   a StateActionRewardModel trained on the training goals' pairs pooled (task
              ignored), committed to a scratch repository, then ``init_from`` it and
              fine-tuned on the K pairs (stored normaliser kept);
- multi-task: a TaskConditionedRewardModel with a learned task embedding trained on the
              training goals; the held-out goal's embedding row is learned from the K pairs
              (``adapt_to_task``, shared network frozen, starting from the mean embedding);
- maml:       a StateActionRewardModel meta-trained with second-order MAML on the training
              goals' pairs (Bradley-Terry loss), then ``adapt``-ed with a few gradient steps
              on the K pairs.

Every approach sees the same roll-outs, pairs and budgets. Reported per approach: the mean
held-out accuracy at each budget with a 95% bootstrap CI over seeds (seeds resampled), and
the number of labelled preferences needed to reach ``--target`` accuracy (smallest budget
whose accuracy, averaged over held-out goals, reaches it; ``>max`` when none does), with its
bootstrap CI. Run::

    python bench/rl_reuse.py                 # 3 seeds, budgets 5,10,20,40,80 (about 2 minutes on 2 cores)
    python bench/rl_reuse.py --smoke         # end to end in well under a minute; numbers meaningless
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import tempfile
import time
from dataclasses import dataclass

import numpy as np
import torch

from rewardkit.models import StateActionConfig, StateActionRewardModel
from rewardkit.models.task_conditioned import TaskConditionedConfig, TaskConditionedRewardModel
from rewardkit.rl.preferences import preference_accuracy
from rewardkit.rl.rollout import collect
from rewardkit.rl.tasks import PendulumGoal, task_preferences
from rewardkit.store import Repository
from rewardkit.training import fit_preferences
from rewardkit.training.maml import MAMLConfig, adapt, fit_maml, preference_task_data
from rewardkit.training.multitask import adapt_to_task, fit_multitask
from rewardkit.training.transfer import commit_model, init_from

APPROACHES = ("scratch", "transfer", "multi-task", "maml")


@dataclass
class Settings:
    """Sizes of one run (see ``--help``)."""

    seeds: int = 3
    budgets: tuple[int, ...] = (5, 10, 20, 40, 80)
    target: float = 0.9
    n_tasks: int = 12
    rollout_steps: int = 4000
    fragment_length: int = 10
    source_pairs: int = 200
    test_pairs: int = 300
    hidden: tuple[int, ...] = (64, 64)
    pretrain_epochs: int = 10
    adapt_steps: int = 100
    meta_steps: int = 300


SMOKE = Settings(seeds=2, budgets=(5, 20), n_tasks=6, rollout_steps=1200, source_pairs=40, test_pairs=60,
                 hidden=(32, 32), pretrain_epochs=2, adapt_steps=10, meta_steps=10)


def _state_action(seed: int, hidden: tuple[int, ...]) -> StateActionRewardModel:
    torch.manual_seed(seed)
    return StateActionRewardModel(StateActionConfig(obs_dim=3, action_kind="continuous", action_dim=1,
                                                    hidden_sizes=hidden))


def _schedule(k: int, steps: int) -> dict[str, int]:
    """About ``steps`` Adam steps on ``k`` pairs, in minibatches of at most 32."""
    batch = min(k, 32)
    return {"batch_size": batch, "epochs": max(1, round(steps * batch / k))}


def _fit(model, dataset, *, lr: float, seed: int, update_normalizer: bool, **schedule) -> None:
    fit_preferences(model, dataset.fragments1, dataset.fragments2, dataset.preferences, lr=lr, seed=seed,
                    update_normalizer=update_normalizer, **schedule)


def _take(dataset, k: int):
    """The first ``k`` pairs of a dataset."""
    rows = np.arange(k)
    return type(dataset)(dataset.fragments1.take(rows), dataset.fragments2.take(rows), dataset.preferences[rows])


def run_seed(s: Settings, seed: int) -> dict[str, np.ndarray]:
    """Accuracies ``(held-out tasks, budgets)`` per approach for one seed."""
    family = PendulumGoal(n_tasks=s.n_tasks)
    train_tasks, held_out = family.tasks("train"), family.tasks("held-out")
    rollouts = collect("Pendulum-v1", s.rollout_steps, n_envs=4, seed=1000 * seed)
    test_rollouts = collect("Pendulum-v1", s.rollout_steps // 2, n_envs=2, seed=1000 * seed + 500)
    frag = {"fragment_length": s.fragment_length}
    source = task_preferences(family, rollouts, train_tasks, num_pairs=s.source_pairs, seed=seed, **frag)
    support = dict(task_preferences(family, rollouts, held_out, num_pairs=max(s.budgets), seed=seed + 77, **frag))
    test = dict(task_preferences(family, test_rollouts, held_out, num_pairs=s.test_pairs, seed=seed + 99, **frag))

    # pretraining, once per seed
    pooled = source[0][1]
    for _, d in source[1:]:
        pooled = pooled + d
    base = _state_action(seed, s.hidden)
    _fit(base, pooled, lr=3e-3, seed=seed, update_normalizer=True, epochs=s.pretrain_epochs, batch_size=64)
    multi = TaskConditionedRewardModel(TaskConditionedConfig(
        obs_dim=3, action_kind="continuous", action_dim=1, hidden_sizes=s.hidden, n_tasks=s.n_tasks,
        task_embedding_dim=4))
    fit_multitask(multi, source, epochs=s.pretrain_epochs, batch_size=64, lr=3e-3, seed=seed)
    meta = _state_action(seed, s.hidden)
    maml = MAMLConfig(loss="preferences", inner_steps=1, inner_lr=0.1, outer_lr=1e-3, meta_steps=s.meta_steps,
                      tasks_per_step=4, support_size=10, query_size=20, seed=seed)
    fit_maml(meta, [preference_task_data(d) for _, d in source], maml)

    out = {a: np.zeros((len(held_out), len(s.budgets))) for a in APPROACHES}
    with tempfile.TemporaryDirectory() as scratch, Repository.init(f"{scratch}/.rewardkit") as repo:
        commit_model(repo, base, "pooled training goals")
        for i, task in enumerate(held_out):
            for j, k in enumerate(s.budgets):
                few = _take(support[task], k)
                schedule = _schedule(k, s.adapt_steps)
                model = _state_action(seed + 1, s.hidden)
                _fit(model, few, lr=3e-3, seed=seed, update_normalizer=True, **schedule)
                out["scratch"][i, j] = preference_accuracy(model, test[task])
                transfer = init_from(repo, "main", kind="state-action")
                _fit(transfer.model, few, lr=1e-3, seed=seed, update_normalizer=False, **schedule)
                out["transfer"][i, j] = preference_accuracy(transfer.model, test[task])
                adapted = adapt_to_task(multi, task, few, train_tasks=train_tasks, lr=3e-2, seed=seed, **schedule)
                out["multi-task"][i, j] = preference_accuracy(adapted, test[task], task)
                fast = adapt(meta, preference_task_data(few), steps=max(1, s.adapt_steps // 10), lr=maml.inner_lr)
                out["maml"][i, j] = preference_accuracy(fast, test[task])
    return out


def labels_needed(curve: np.ndarray, budgets: tuple[int, ...], target: float) -> float:
    """The smallest budget whose accuracy reaches ``target``; ``inf`` when none does."""
    reached = np.nonzero(curve >= target)[0]
    return float(budgets[reached[0]]) if reached.size else math.inf


def bootstrap(values: np.ndarray, reps: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean and 95% percentile bootstrap CI of ``values`` (one per seed), seeds resampled."""
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(reps, len(values)))].mean(axis=1)
    return float(values.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def summarise(results: list[dict[str, np.ndarray]], s: Settings) -> dict[str, dict]:
    """Per approach: accuracy per budget and labels to target, each with its bootstrap CI over seeds."""
    summary = {}
    for a in APPROACHES:
        curves = np.stack([r[a].mean(axis=0) for r in results])  # (seeds, budgets): mean over held-out goals
        needed = np.array([labels_needed(c, s.budgets, s.target) for c in curves])
        summary[a] = {
            "accuracy": {k: bootstrap(curves[:, j]) for j, k in enumerate(s.budgets)},
            "labels_needed": needed.tolist(),
            "labels_needed_ci": bootstrap(needed) if np.isfinite(needed).all() else None,
        }
    return summary


def table(summary: dict[str, dict], s: Settings) -> str:
    """A Markdown table: one row per approach."""
    head = ["approach", *(f"acc@{k}" for k in s.budgets), f"prefs to {s.target:.0%} (per seed)", "mean [95% CI]"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for a, row in summary.items():
        cells = [a, *(f"{m:.3f} [{lo:.3f}, {hi:.3f}]" for m, lo, hi in row["accuracy"].values())]
        per_seed = ", ".join(f"{v:g}" if math.isfinite(v) else f">{max(s.budgets)}" for v in row["labels_needed"])
        ci = row["labels_needed_ci"]
        cells += [per_seed, f"{ci[0]:.1f} [{ci[1]:.1f}, {ci[2]:.1f}]" if ci else "not reached by every seed"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, dict]:
    """Parse flags, run every seed, print the table (and JSON with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: does it run end to end?")
    parser.add_argument("--seeds", type=int, help="number of seeds (default 3)")
    parser.add_argument("--budgets", help="comma-separated preference budgets, e.g. 5,10,20,40,80")
    parser.add_argument("--target", type=float, help="held-out preference accuracy to reach (default 0.9)")
    parser.add_argument("--json", action="store_true", help="also print the summary as JSON")
    args = parser.parse_args(argv)
    s = dataclasses.replace(SMOKE if args.smoke else Settings())
    if args.seeds:
        s.seeds = args.seeds
    if args.budgets:
        s.budgets = tuple(int(b) for b in args.budgets.split(","))
    if args.target:
        s.target = args.target
    torch.set_num_threads(1)
    start = time.perf_counter()
    results = [run_seed(s, seed) for seed in range(s.seeds)]
    summary = summarise(results, s)
    print(table(summary, s))
    print(f"\n{s.seeds} seeds, {len(PendulumGoal(n_tasks=s.n_tasks).tasks('held-out'))} held-out goals, "
          f"wall time {time.perf_counter() - start:.0f} s")
    if args.json:
        print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
