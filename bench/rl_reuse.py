"""Reuse of reward models across tasks: how many preferences a held-out task needs, by approach.

On the Pendulum goal family (:class:`rewardkit.rl.tasks.PendulumGoal`: hold the pole at a
goal angle; the dynamics never change, only the reward), for each held-out goal and each
budget K of labelled preference pairs of that goal (the first K of a fixed pool of
``--support-pairs``, so a budget's pairs do not depend on the other budgets), four approaches train a reward model and
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

Every approach sees the same roll-outs, pairs and budgets. Reported per approach, with 95%
bootstrap CIs over seeds (seeds resampled):

- preference accuracy: the mean held-out accuracy at each budget, and the number of labelled
  preferences needed to reach ``--target`` accuracy (smallest budget whose accuracy, averaged
  over held-out goals, reaches it; ``>max`` when none does);
- normalised return, on the first held-out goal only (``--return-target``; PPO is the costly
  part): for each budget of ``--return-budgets``, a fresh PPO (``bench/rl_protocol.py``'s
  :func:`~rl_protocol.ppo_true_return`, i.e. :func:`rewardkit.rl.ppo.make_ppo`, learned reward
  standardised) trains for ``--ppo-steps`` on the approach's learned reward and is scored on
  the goal's TRUE return: (R - R_random) / (R_true - R_random), with R_true the better of PPO
  on the true goal reward raw and under ``VecNormalize`` (as the protocol's ``true`` and
  ``true+norm``), R_random uniformly random actions, their means over seeds as the scale;
  and the preferences needed to reach ``--return-target`` that way. The goal's environment is
  Pendulum-v1 under :func:`rewardkit.rl.tasks.task_reward_wrapper`, registered as a
  Gymnasium id (:func:`task_env_id`) with ``Monitor`` outside the task's reward, so every
  true return is the goal's. The multi-task model is used with its adapted row for the goal
  (:class:`OneTask`). Run::

    python bench/rl_reuse.py --json bench/rl_reuse.json   # 3 seeds, accuracy at 5..80, return at 10..160 (~30 min)
    python bench/rl_reuse.py --return-target 0             # accuracy only (about 2 minutes on 2 cores)
    python bench/rl_reuse.py --smoke                       # end to end in well under a minute; numbers meaningless
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rl_protocol import Settings as ProtocolSettings
from rl_protocol import bootstrap, ppo_true_return, random_return

from rewardkit.models import StateActionConfig, StateActionRewardModel
from rewardkit.models.task_conditioned import TaskConditionedConfig, TaskConditionedRewardModel
from rewardkit.rl.preferences import preference_accuracy
from rewardkit.rl.rollout import collect
from rewardkit.rl.tasks import PendulumGoal, Task, TaskFamily, task_preferences, task_reward_wrapper
from rewardkit.store import Repository
from rewardkit.training import fit_preferences
from rewardkit.training.maml import MAMLConfig, adapt, fit_maml, preference_task_data
from rewardkit.training.multitask import adapt_to_task, fit_multitask, task_inputs
from rewardkit.training.transfer import commit_model, init_from

APPROACHES = ("scratch", "transfer", "multi-task", "maml")
#: The PPO references of the normalised return: random actions, PPO on the true reward raw and VecNormalize'd.
REFERENCES = ("random", "true", "true+norm")

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
    support_pairs: int = 160  # the held-out goals' labelled pairs; a budget K takes the first K
    test_pairs: int = 300
    hidden: tuple[int, ...] = (64, 64)
    pretrain_epochs: int = 10
    adapt_steps: int = 100
    meta_steps: int = 300
    return_target: float | None = 0.9  # None: no PPO, accuracy only
    return_budgets: tuple[int, ...] = (10, 20, 40, 80, 160)
    ppo_steps: int = 51_200  # 50 PPO roll-outs of 4 x 256 steps (see bench/README.md)
    eval_episodes: int = 10


SMOKE = Settings(seeds=2, budgets=(5, 20), n_tasks=6, rollout_steps=1200, source_pairs=40, test_pairs=60,
                 support_pairs=20, hidden=(32, 32), pretrain_epochs=2, adapt_steps=10, meta_steps=10,
                 return_budgets=(20,), ppo_steps=1024, eval_episodes=2)


@dataclass
class SeedResult:
    """What one seed measured.

    Attributes:
        accuracy: Per approach, ``(held-out goals, budgets)`` preference accuracies.
        returns: True returns on the first held-out goal: ``random``, ``true``, ``true+norm`` and
            ``<approach>@<K>`` per return budget K (empty without a return target).
    """

    accuracy: dict[str, np.ndarray]
    returns: dict[str, float]


class OneTask:
    """A task-conditioned reward model with its task fixed: ``score(obs, acts, next_obs)`` as PPO's wrapper calls it.

    :class:`~rewardkit.rl.wrapper.LearnedRewardVecEnvWrapper` calls a reward with the step's
    transitions only; this passes the task's input (its adapted embedding row, or its
    parameters) for every row. ``config`` is the model's, so the spaces are still checked.
    """

    def __init__(self, model: TaskConditionedRewardModel, task: Task) -> None:
        self.model, self.task, self.config = model, task, model.config

    def score(self, obs: np.ndarray, acts: np.ndarray, next_obs: np.ndarray | None = None) -> np.ndarray:
        """``(n,) float32`` rewards of ``n`` transitions under the fixed task."""
        return self.model.score(obs, acts, next_obs, task=task_inputs(self.model, self.task, len(obs)))


def task_env_id(family: TaskFamily, task: Task) -> str:
    """A Gymnasium id for ``family.env_id`` rewarded by ``task`` (registered on first use).

    ``gym.make(id)`` is ``task_reward_wrapper(gym.make(family.env_id), family, task)``, so
    :func:`rewardkit.rl.envs.make_env` puts ``Monitor`` around the task's reward: PPO on
    "the true reward" of this id trains on the task's reward, and every true return
    (``evaluate_true_return``, ``random_return``) is the task's.

    Returns:
        ``"rewardkit/<family>-<task parameters>-v0"``, e.g. ``"rewardkit/pendulum-goal-0.523599-v0"``:
        named by the parameters, not the index, since families of other sizes number their
        goals differently.
    """
    import gymnasium as gym

    env_id = f"rewardkit/{family.name}-{'_'.join(f'{p:g}' for p in task.params)}-v0"
    if env_id not in gym.registry:
        gym.register(env_id, entry_point=lambda **kw: task_reward_wrapper(gym.make(family.env_id, **kw), family, task))
    return env_id


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


def goal_returns(family: TaskFamily, task: Task, rewards: dict[str, Any], s: Settings, seed: int) -> dict[str, float]:
    """Mean true returns on ``task`` of the references and of a fresh PPO on each learned reward.

    Args:
        family: The task's family.
        task: The goal (its reward is the true one).
        rewards: Reward models by cell name (``<approach>@<K>``), each with ``score`` and ``config``.
        s: PPO steps and evaluation episodes.
        seed: PPO, environment and evaluation seed.

    Returns:
        ``random``, ``true``, ``true+norm`` and one entry per ``rewards`` key: mean true return
        over ``s.eval_episodes`` deterministic episodes of the final policy.
    """
    env_id = task_env_id(family, task)
    protocol = ProtocolSettings(envs=(env_id,), steps=s.ppo_steps, eval_episodes=s.eval_episodes)
    cells: dict[str, Callable[[], float]] = {
        "random": lambda: random_return(env_id, protocol, seed),
        "true": lambda: ppo_true_return(env_id, None, protocol, seed),
        "true+norm": lambda: ppo_true_return(env_id, None, protocol, seed, normalize_true=True),
        **{name: (lambda m=model: ppo_true_return(env_id, m, protocol, seed)) for name, model in rewards.items()},
    }
    out = {}
    for name, run in cells.items():
        start = time.perf_counter()
        out[name] = run()
        print(f"seed {seed} {name}: true return {out[name]:.1f} ({time.perf_counter() - start:.0f} s)",
              file=sys.stderr, flush=True)
    return out


def run_seed(s: Settings, seed: int) -> SeedResult:
    """Accuracies of every approach on every held-out goal, and (with a return target) PPO returns on the first."""
    family = PendulumGoal(n_tasks=s.n_tasks)
    train_tasks, held_out = family.tasks("train"), family.tasks("held-out")
    rollouts = collect("Pendulum-v1", s.rollout_steps, n_envs=4, seed=1000 * seed)
    test_rollouts = collect("Pendulum-v1", s.rollout_steps // 2, n_envs=2, seed=1000 * seed + 500)
    frag = {"fragment_length": s.fragment_length}
    source = task_preferences(family, rollouts, train_tasks, num_pairs=s.source_pairs, seed=seed, **frag)
    support = dict(task_preferences(family, rollouts, held_out, num_pairs=s.support_pairs, seed=seed + 77, **frag))
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

    def models(task: Task, k: int) -> dict[str, Any]:
        """Each approach's reward model for ``task`` from its first ``k`` labelled pairs."""
        few = _take(support[task], k)
        schedule = _schedule(k, s.adapt_steps)
        scratch = _state_action(seed + 1, s.hidden)
        _fit(scratch, few, lr=3e-3, seed=seed, update_normalizer=True, **schedule)
        transfer = init_from(repo, "main", kind="state-action").model
        _fit(transfer, few, lr=1e-3, seed=seed, update_normalizer=False, **schedule)
        adapted = adapt_to_task(multi, task, few, train_tasks=train_tasks, lr=3e-2, seed=seed, **schedule)
        fast = adapt(meta, preference_task_data(few), steps=max(1, s.adapt_steps // 10), lr=maml.inner_lr)
        return {"scratch": scratch, "transfer": transfer, "multi-task": adapted, "maml": fast}

    accuracy = {a: np.zeros((len(held_out), len(s.budgets))) for a in APPROACHES}
    rewards: dict[str, Any] = {}  # the first held-out goal's models at the return budgets
    goal = held_out[0]
    with tempfile.TemporaryDirectory() as tmp, Repository.init(f"{tmp}/.rewardkit") as repo:
        commit_model(repo, base, "pooled training goals")
        kept: dict[int, dict[str, Any]] = {}  # the goal's models of the accuracy part, reused for PPO
        for i, task in enumerate(held_out):
            for j, k in enumerate(s.budgets):
                fitted = models(task, k)
                for a, model in fitted.items():
                    accuracy[a][i, j] = preference_accuracy(model, test[task], task if a == "multi-task" else None)
                if task == goal:
                    kept[k] = fitted
        if s.return_target is not None:
            for k in s.return_budgets:
                for a, model in (kept.get(k) or models(goal, k)).items():
                    rewards[f"{a}@{k}"] = OneTask(model, goal) if a == "multi-task" else model
    returns = goal_returns(family, goal, rewards, s, seed) if s.return_target is not None else {}
    return SeedResult(accuracy, returns)


def labels_needed(curve: np.ndarray, budgets: tuple[int, ...], target: float) -> float:
    """The smallest budget whose score reaches ``target``; ``inf`` when none does."""
    reached = np.nonzero(curve >= target)[0]
    return float(budgets[reached[0]]) if reached.size else math.inf


def _to_target(curves: np.ndarray, budgets: tuple[int, ...], target: float) -> dict[str, Any]:
    """Per budget the mean score and CI, and the preferences to ``target`` (per seed, and their CI)."""
    needed = np.array([labels_needed(c, budgets, target) for c in curves])
    return {
        "score": {k: bootstrap(curves[:, j]) for j, k in enumerate(budgets)},
        "labels_needed": needed.tolist(),
        "labels_needed_ci": bootstrap(needed) if np.isfinite(needed).all() else None,
    }


def normalised_returns(results: list[SeedResult]) -> tuple[dict[str, np.ndarray], float, float]:
    """Per cell, the normalised return of each seed, (R - R_random) / (R_true - R_random).

    R_true is the better of the ``true`` and ``true+norm`` means over seeds and R_random the
    ``random`` mean (as ``bench/rl_protocol.py``), so the better reference scores 1 and random
    0 on average by construction.

    Returns:
        ``(scores by cell, R_true, R_random)``; the scores are NaN when R_true <= R_random.
    """
    cells = {name: np.array([r.returns[name] for r in results]) for name in results[0].returns}
    r_true = max(float(cells["true"].mean()), float(cells["true+norm"].mean()))
    r_random = float(cells["random"].mean())
    scale = r_true - r_random if r_true > r_random else math.nan
    return {name: (v - r_random) / scale for name, v in cells.items()}, r_true, r_random


def summarise(results: list[SeedResult], s: Settings) -> dict[str, Any]:
    """JSON-ready: per approach the accuracy (and normalised-return) curves and preferences to target."""
    summary: dict[str, Any] = {"accuracy": {}, "return": None}
    for a in APPROACHES:  # accuracy averaged over the held-out goals, per seed
        curves = np.stack([r.accuracy[a].mean(axis=0) for r in results])
        summary["accuracy"][a] = _to_target(curves, s.budgets, s.target)
    if s.return_target is None:
        return summary
    scores, r_true, r_random = normalised_returns(results)
    summary["return"] = {
        "goal": PendulumGoal(n_tasks=s.n_tasks).tasks("held-out")[0].name, "r_true": r_true, "r_random": r_random,
        "references": {name: {"returns": [r.returns[name] for r in results], "score": bootstrap(scores[name])}
                       for name in REFERENCES},
        "approaches": {a: {**_to_target(np.stack([scores[f"{a}@{k}"] for k in s.return_budgets], axis=1),
                                        s.return_budgets, s.return_target),
                           "returns": {k: [r.returns[f"{a}@{k}"] for r in results] for k in s.return_budgets}}
                       for a in APPROACHES},
    }
    return summary


def _markdown(head: list[str], rows: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
                      *("| " + " | ".join(r) + " |" for r in rows)])


def _ci(m: float, lo: float, hi: float) -> str:
    return f"{m:.3f} [{lo:.3f}, {hi:.3f}]"


def table(rows: dict[str, dict], budgets: tuple[int, ...], target: float, metric: str) -> str:
    """A Markdown table, one row per approach: ``metric`` at each budget and the preferences to ``target``."""
    head = ["approach", *(f"{metric}@{k}" for k in budgets), f"prefs to {target:g} (per seed)", "mean [95% CI]"]
    lines = []
    for a, row in rows.items():
        cells = [a, *(_ci(*v) for v in row["score"].values())]
        per_seed = ", ".join(f"{v:g}" if math.isfinite(v) else f">{max(budgets)}" for v in row["labels_needed"])
        ci = row["labels_needed_ci"]
        cells += [per_seed, f"{ci[0]:.1f} [{ci[1]:.1f}, {ci[2]:.1f}]" if ci else "not reached by every seed"]
        lines.append(cells)
    return _markdown(head, lines)


def reference_table(ret: dict[str, Any]) -> str:
    """A Markdown table of the references: true returns per seed and normalised score."""
    rows = [[name, ", ".join(f"{v:.1f}" for v in ref["returns"]), _ci(*ref["score"])]
            for name, ref in ret["references"].items()]
    return _markdown(["reference", "true return per seed", "normalised [95% CI]"], rows)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse flags, run every seed, print the tables (and write JSON with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: does it run end to end?")
    parser.add_argument("--seeds", type=int, help="number of seeds (default 3)")
    parser.add_argument("--budgets", help="comma-separated preference budgets, e.g. 5,10,20,40,80")
    parser.add_argument("--target", type=float, help="held-out preference accuracy to reach (default 0.9)")
    parser.add_argument("--return-target", type=float,
                        help="normalised return to reach on the first held-out goal (default 0.9; 0: no PPO)")
    parser.add_argument("--return-budgets", help="comma-separated budgets trained with PPO (default 10,20,40,80,160)")
    parser.add_argument("--ppo-steps", type=int, help="environment steps per PPO run (default 51200)")
    parser.add_argument("--support-pairs", type=int, help="labelled pairs drawn per held-out goal, of which a "
                        "budget K takes the first K, whatever the other budgets (default 160)")
    parser.add_argument("--json", type=Path, help="write the summary (with settings and wall time) to this file")
    args = parser.parse_args(argv)
    s = dataclasses.replace(SMOKE if args.smoke else Settings())
    if args.seeds:
        s.seeds = args.seeds
    if args.budgets:
        s.budgets = tuple(int(b) for b in args.budgets.split(","))
    if args.target:
        s.target = args.target
    if args.return_target is not None:
        s.return_target = args.return_target or None
    if args.return_budgets:
        s.return_budgets = tuple(int(b) for b in args.return_budgets.split(","))
    if args.ppo_steps:
        s.ppo_steps = args.ppo_steps
    if args.support_pairs:
        s.support_pairs = args.support_pairs
    largest = max((*s.budgets, *(s.return_budgets if s.return_target is not None else ())))
    if largest > s.support_pairs:
        parser.error(f"budget {largest} is above --support-pairs {s.support_pairs}: raise it or lower the budgets")
    torch.set_num_threads(1)
    start = time.perf_counter()
    results = [run_seed(s, seed) for seed in range(s.seeds)]
    summary = summarise(results, s)
    n_goals = len(PendulumGoal(n_tasks=s.n_tasks).tasks("held-out"))
    print(f"preference accuracy on held-out pairs, mean over {n_goals} held-out goals\n")
    print(table(summary["accuracy"], s.budgets, s.target, "acc"))
    ret = summary["return"]
    if ret is not None:
        print(f"\nnormalised return on goal {ret['goal']}: PPO {s.ppo_steps} steps on the learned reward, "
              f"R_true {ret['r_true']:.1f}, R_random {ret['r_random']:.1f}\n")
        print(table(ret["approaches"], s.return_budgets, s.return_target, "norm"))
        print()
        print(reference_table(ret))
    summary["settings"] = dataclasses.asdict(s)
    summary["wall_seconds"] = time.perf_counter() - start
    print(f"\n{s.seeds} seeds, {n_goals} held-out goals, wall time {summary['wall_seconds']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main()
