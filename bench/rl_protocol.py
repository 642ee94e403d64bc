"""The RL protocol: PPO on a frozen reward learned from preferences against PPO on the true reward.

Per task and seed, every agent is scored on the TRUE return (deterministic episodes of the
final policy, :func:`rewardkit.api.rl.evaluate_true_return_mean`, ``Monitor`` innermost):

- ``true``:      PPO on the environment's reward, as ``rewardkit rl train`` runs it (raw reward);
- ``true+norm``: the same with SB3's ``VecNormalize`` scaling the true reward (returns'
                 running std): the learned reward is standardised, so the reference gets a
                 reward scale PPO likes too. R_true is the better of the two means over seeds
                 (the harder reference for the learned reward);
- ``random``:    uniformly random actions (R_random);
- ``prefs@Q``:   the preference loop (:func:`rewardkit.api.rl.learn`, i.e.
                 :class:`~rewardkit.rl.comparisons.PreferenceComparisons` with a perfect
                 synthetic teacher) run with Q queries at the same step budget, then a FRESH
                 PPO trained on its frozen reward model, for each Q of ``--queries``
                 (and ``--extra-queries`` where the largest budget falls short of the target);
- ``zero``:      control, PPO on a reward that is 0 everywhere;
- ``shuffled``:  control, PPO on a reward model fitted to the largest budget's pairs with
                 their labels permuted (same fragments, no information).

Normalised score of a cell: (R - R_random) / (R_true - R_random), per seed with the means
over seeds of R_true and R_random as the scale (one seed's R_true near R_random would make a
paired ratio explode), mean over seeds with a 95% percentile bootstrap CI (seeds resampled).
Both controls must score near 0 (|score| <= 0.25). A control above that means the score does
not isolate what the learned reward adds on that task, and is printed as such: either the task
leaks the answer through termination (CartPole ends when the pole falls, so any reward positive
everywhere is a survival bonus), or uniform random actions are an easy reference to beat
(Reacher-v5 charges for large actions, so any calm policy scores well above R_random). One below
it (a policy worse than random, e.g. a constant torque on Pendulum) is printed too, but is no leak. The issue's target
(a score of at least 0.9 with 700 queries on at least three of CartPole-v1, Pendulum-v1,
Reacher-v5, HalfCheetah-v5) is printed as met or NOT met.

Every PPO run is rewardkit's own (:func:`rewardkit.rl.ppo.make_ppo`, SB3 ``PPO`` on
``n_envs`` vectorised environments, learned reward standardised by running statistics);
nothing here is a second training loop. Default step budgets per task (``--steps`` overrides
all): CartPole-v1 50k (PPO reaches the maximum return, 500, by 30k here; the zoo allows 100k),
Pendulum-v1 100k (the zoo's budget; the ``true+norm`` reference swings the pendulum up by 50k,
but a fresh PPO on a learned reward mostly did not: see bench/README.md), Reacher-v5 and HalfCheetah-v5 300k
(the issue's minimum for MuJoCo). Fragments are the loop's 25 steps everywhere; on a task that
terminates (CartPole) they may run past the termination into zero-reward absorbing steps
(:class:`~rewardkit.rl.preferences.Fragmenter`), without which every CartPole pair would tie.
A full run is 4 tasks x 3 seeds x (2 + 2 x 3 + 2) PPO runs, hours on 2 cores; ``--records``
with ``--first-seed``/``--envs`` splits it into processes that run side by side, and
``--report`` joins their records into the tables. Run::

    python bench/rl_protocol.py --json bench/rl_protocol.json          # the protocol (hours)
    python bench/rl_protocol.py --envs Pendulum-v1 --seeds 1 --steps 50000 --queries 100
    python bench/rl_protocol.py --smoke                                 # < 60 s; numbers meaningless
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rewardkit.api.rl import LearnSettings

#: The loop's own defaults (``rewardkit rl learn``): environments, roll-out length, rounds, epochs, segments.
LOOP = LearnSettings()

TASKS = ("CartPole-v1", "Pendulum-v1", "Reacher-v5", "HalfCheetah-v5")
DEFAULT_STEPS = {"CartPole-v1": 50_000, "Pendulum-v1": 100_000, "Reacher-v5": 300_000, "HalfCheetah-v5": 300_000}
TARGET_SCORE, TARGET_QUERIES, TARGET_TASKS = 0.9, 700, 3
#: A control whose mean normalised score is further from 0 than this is reported (a leak, or a weak reference).
NEAR_ZERO = 0.25


@dataclass
class Settings:
    """Sizes of one run (see ``--help``)."""

    envs: tuple[str, ...] = TASKS
    steps: int | None = None  # None: DEFAULT_STEPS per task
    seeds: int = 3
    first_seed: int = 0
    queries: tuple[int, ...] = (100, 300, 700)
    extra_queries: tuple[int, ...] = (1400,)
    n_envs: int = LOOP.n_envs
    n_steps: int = LOOP.n_steps
    eval_episodes: int = LOOP.eval_episodes
    iterations: int = LOOP.iterations
    reward_epochs: int = LOOP.reward_epochs
    segment_length: int | None = None  # None: the loop's default

    def steps_for(self, env_id: str) -> int:
        """The PPO step budget of ``env_id``."""
        return self.steps if self.steps is not None else DEFAULT_STEPS.get(env_id, 300_000)

    def segment_for(self, env_id: str) -> int:
        """The preference fragments' length on ``env_id``."""
        if self.segment_length is not None:
            return self.segment_length
        return LOOP.segment_length


SMOKE = Settings(envs=("CartPole-v1",), steps=1024, seeds=2, queries=(10, 20), extra_queries=(), n_steps=128,
                 eval_episodes=3, iterations=2, reward_epochs=2, segment_length=10)


@dataclass
class Cell:
    """One agent on one task: true returns per seed and wall seconds per seed."""

    returns: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


class RandomPolicy:
    """Uniformly random actions, with SB3's ``predict`` signature so ``evaluate_policy`` runs it."""

    def __init__(self, action_space: Any, seed: int) -> None:
        self.action_space = action_space
        self.action_space.seed(seed)

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: Any = None,
                deterministic: bool = False) -> tuple[np.ndarray, None]:
        """One random action per environment in the batch."""
        return np.stack([self.action_space.sample() for _ in range(len(observation))]), None


class ZeroReward:
    """R(s, a) = 0 everywhere, with the spaces' config so the wrapper checks it like a learned model."""

    def __init__(self, config: Any) -> None:
        self.config = config

    def score(self, obs: np.ndarray, acts: np.ndarray, next_obs: np.ndarray | None = None) -> np.ndarray:
        """``(n,) float32`` zeros."""
        return np.zeros(len(obs), dtype=np.float32)


def ppo_true_return(env_id: str, model: Any, s: Settings, seed: int, *, normalize_true: bool = False) -> float:
    """A fresh PPO on ``model`` (None: the true reward) for the task's budget; its mean true return.

    ``normalize_true`` (with ``model=None``): SB3's ``VecNormalize`` scales the true reward
    by the running std of the discounted return (observations untouched, so the policy is
    evaluated on the raw environment as is).
    """
    from stable_baselines3.common.vec_env import VecNormalize

    from rewardkit.api.rl import evaluate_true_return_mean
    from rewardkit.rl.ppo import RecordingReward, make_ppo

    reward = RecordingReward(model) if model is not None else None
    agent = make_ppo(env_id, reward, seed=seed, n_envs=s.n_envs, n_steps=s.n_steps)
    if normalize_true:
        agent.set_env(VecNormalize(agent.get_env(), norm_obs=False, norm_reward=True, gamma=agent.gamma))
    agent.learn(s.steps_for(env_id))
    return evaluate_true_return_mean(agent, env_id, s.eval_episodes, seed)


def random_return(env_id: str, s: Settings, seed: int) -> float:
    """Mean true return of uniformly random actions over the evaluation episodes."""
    from rewardkit.api.rl import environment_spaces
    from rewardkit.rl.ppo import evaluate_true_return

    _, action_space = environment_spaces(env_id)
    policy = RandomPolicy(action_space, seed)
    return float(evaluate_true_return(policy, env_id, n_episodes=s.eval_episodes, seed=10_000 + seed).mean())


def shuffled_reward(env_id: str, pairs_file: Path, s: Settings, seed: int) -> Any:
    """A fresh reward model fitted (as the loop fits) to the pairs of ``pairs_file`` with labels permuted."""
    from rewardkit.api.rl import environment_spaces, new_reward_model
    from rewardkit.rl.preferences import PreferenceDataset
    from rewardkit.training.segments import fit_preferences

    pairs = PreferenceDataset.load(pairs_file)
    labels = np.random.default_rng(seed).permutation(pairs.preferences)
    model = new_reward_model(*environment_spaces(env_id), ensemble=1, seed=seed + 1)
    obs = np.concatenate([pairs.fragments1.obs, pairs.fragments2.obs])
    model.update_obs_normalizer(obs.reshape(-1, *obs.shape[2:]))
    fit_preferences(model, pairs.fragments1, pairs.fragments2, labels, epochs=s.reward_epochs, batch_size=32,
                    lr=1e-3, seed=seed, update_normalizer=False)
    return model


def run_task(env_id: str, s: Settings, queries: tuple[int, ...], scratch: Path,
             log: Callable[[str], None], *, baselines: bool = True,
             records: Path | None = None) -> dict[str, Cell]:
    """The cells of one task over all seeds: ``random``, ``true``, ``prefs@Q`` per Q, ``zero``, ``shuffled``.

    With ``baselines=False`` only the ``prefs@Q`` cells (the extra budgets). With ``records``, every
    cell is appended to that JSON-lines file as soon as it is measured (``--report`` reads them back),
    so a long run that is stopped keeps what it measured.
    """
    from rewardkit.api.rl import environment_spaces, learn, new_reward_model, open_reward_model

    cells: dict[str, Cell] = {}

    def timed(name: str, seed: int, fn: Callable[[], float]) -> None:
        start = time.perf_counter()
        value = float(fn())
        cell = cells.setdefault(name, Cell())
        cell.returns.append(value)
        cell.seconds.append(time.perf_counter() - start)
        log(f"{env_id} seed {seed} {name}: true return {value:.1f} ({cell.seconds[-1]:.0f} s)")
        if records is not None:
            line = {"env": env_id, "seed": seed, "cell": name, "return": value, "seconds": cell.seconds[-1],
                    "steps": s.steps_for(env_id), "segment_length": s.segment_for(env_id)}
            with records.open("a") as f:
                f.write(json.dumps(line) + "\n")

    def one_seed(seed: int) -> None:
        if baselines:
            timed("random", seed, lambda: random_return(env_id, s, seed))
            timed("true", seed, lambda: ppo_true_return(env_id, None, s, seed))
            timed("true+norm", seed, lambda: ppo_true_return(env_id, None, s, seed, normalize_true=True))
        pairs_file: list[Path] = []  # the pairs of the latest budget, for the shuffled control

        def prefs(q: int) -> float:
            settings = LearnSettings(queries=q, steps=s.steps_for(env_id), segment_length=s.segment_for(env_id),
                                     iterations=s.iterations, n_envs=s.n_envs, n_steps=s.n_steps,
                                     reward_epochs=s.reward_epochs, eval_episodes=s.eval_episodes, seed=seed)
            run = learn(env_id, scratch / f"{env_id}-s{seed}-q{q}", settings)
            pairs_file[:] = [run.out_dir / "preferences.npz"]
            with open_reward_model(run.model_dir) as (model, _, _):
                return ppo_true_return(env_id, model, s, seed)

        for q in queries:
            timed(f"prefs@{q}", seed, lambda q=q: prefs(q))
        if baselines:
            zero = ZeroReward(new_reward_model(*environment_spaces(env_id), ensemble=1, seed=seed).config)
            timed("zero", seed, lambda: ppo_true_return(env_id, zero, s, seed))
            timed("shuffled", seed,
                  lambda: ppo_true_return(env_id, shuffled_reward(env_id, pairs_file[0], s, seed), s, seed))

    for seed in range(s.first_seed, s.first_seed + s.seeds):
        one_seed(seed)
    return cells


def read_records(paths: list[Path]) -> dict[str, dict[str, Cell]]:
    """The cells written by ``--records`` runs, per task, in seed order (a later record of a cell wins)."""
    latest: dict[tuple[str, str, int], dict[str, Any]] = {}
    for path in paths:
        if not path.is_file():
            raise SystemExit(f"{path}: no such records file (write one with --records)")
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
                latest[(r["env"], r["cell"], int(r["seed"]))] = r
            except (ValueError, KeyError, TypeError) as e:
                raise SystemExit(f"{path}:{number}: not a protocol record ({e})") from None
    results: dict[str, dict[str, Cell]] = {}
    for (env_id, name, _), r in sorted(latest.items(), key=lambda kv: kv[0][2]):
        cell = results.setdefault(env_id, {}).setdefault(name, Cell())
        cell.returns.append(float(r["return"]))
        cell.seconds.append(float(r["seconds"]))
    order = ["random", "true", "true+norm"]
    for env_id, cells in results.items():
        budgets = sorted((n for n in cells if n.startswith("prefs@")), key=lambda n: int(n.split("@")[1]))
        keys = [n for n in [*order, *budgets, "zero", "shuffled"] if n in cells]
        results[env_id] = {n: cells[n] for n in keys}
    return results


def bootstrap(values: np.ndarray, reps: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean and 95% percentile bootstrap CI of ``values`` (one per seed), seeds resampled."""
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(reps, len(values)))].mean(axis=1)
    return float(values.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def normalised(cells: dict[str, Cell]) -> dict[str, tuple[float, float, float]]:
    """Per cell: mean normalised score over seeds and its bootstrap CI (NaN when R_true <= R_random).

    R_true is the better of the ``true`` and ``true+norm`` means (whichever cells exist).
    """
    references = [np.mean(cells[name].returns) for name in ("true", "true+norm") if name in cells]
    if not references or "random" not in cells:  # a partial run: no scale yet
        return {name: (math.nan, math.nan, math.nan) for name in cells}
    r_true = max(references)
    r_random = np.mean(cells["random"].returns)
    scale = r_true - r_random
    if scale <= 0:
        return {name: (math.nan, math.nan, math.nan) for name in cells}
    return {name: bootstrap((np.asarray(c.returns) - r_random) / scale) for name, c in cells.items()}


def summarise(results: dict[str, dict[str, Cell]]) -> dict[str, Any]:
    """Scores, leaks and the target check, JSON-ready."""
    tasks, reached, leaks, below = {}, [], [], []
    for env_id, cells in results.items():
        scores = normalised(cells)
        tasks[env_id] = {name: {"returns": c.returns, "seconds": c.seconds, "score": scores[name]}
                         for name, c in cells.items()}
        at_target = scores.get(f"prefs@{TARGET_QUERIES}", (math.nan,))[0]
        if at_target >= TARGET_SCORE:
            reached.append(env_id)
        controls = [name for name in ("zero", "shuffled") if name in scores]
        leaks += [f"{env_id} {name}" for name in controls if scores[name][0] > NEAR_ZERO]
        below += [f"{env_id} {name}" for name in controls if scores[name][0] < -NEAR_ZERO]
    return {"tasks": tasks, "target_reached_on": reached, "target_met": len(reached) >= TARGET_TASKS,
            "leaks": leaks, "controls_below_random": below}


def _fmt(score: tuple[float, float, float]) -> str:
    m, lo, hi = score
    return "n/a" if math.isnan(m) else f"{m:.2f} [{lo:.2f}, {hi:.2f}]"


def print_tables(summary: dict[str, Any], *, markdown: bool = False) -> None:
    """A table per task and a summary table: rich (rewardkit's console), or Markdown (``markdown``, or no rich)."""
    try:
        from rich.table import Table

        from rewardkit.cli.render import console
    except ImportError:  # plain Markdown
        Table = None
    if markdown:
        Table = None

    def show(title: str, head: list[str], rows: list[list[str]]) -> None:
        if Table is None:
            print(f"\n{title}\n| " + " | ".join(head) + " |\n|" + "---|" * len(head))
            for row in rows:
                print("| " + " | ".join(row) + " |")
            return
        table = Table(title=title)
        for h in head:
            table.add_column(h)
        for row in rows:
            table.add_row(*row)
        console.print(table)

    budgets: list[str] = []
    for env_id, cells in summary["tasks"].items():
        rows = [[name, ", ".join(f"{r:.1f}" for r in c["returns"]), _fmt(c["score"]), f"{sum(c['seconds']):.0f}"]
                for name, c in cells.items()]
        show(env_id, ["agent", "true return per seed", "normalised [95% CI]", "wall s"], rows)
        budgets += [n for n in cells if n.startswith("prefs@") and n not in budgets]
    columns = [*budgets, "zero", "shuffled"]
    rows = [[env_id, *(f"{_fmt(cells[n]['score'])} n={len(cells[n]['returns'])}" if n in cells else "-"
                       for n in columns),
             f"{sum(sum(c['seconds']) for c in cells.values()):.0f}"]
            for env_id, cells in summary["tasks"].items()]
    show("normalised score (R - R_random) / (R_true - R_random), true return", ["task", *columns, "wall s"], rows)
    reached = summary["target_reached_on"]
    print(f"target (>= {TARGET_SCORE} with {TARGET_QUERIES} queries on >= {TARGET_TASKS} of {len(TASKS)} tasks): "
          f"{'met' if summary['target_met'] else 'NOT met'} ({len(reached)} task(s): {', '.join(reached) or 'none'})")
    for leak in summary["leaks"]:
        print(f"control not near 0: {leak} (score > {NEAR_ZERO}): the score does not isolate the learned "
              "reward here (a leak through termination, or a random reference that is easy to beat)")
    for name in summary["controls_below_random"]:
        print(f"control below random: {name} (score < -{NEAR_ZERO}): a policy worse than random, not a leak")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse flags, run every task, print the tables (and write JSON with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="CartPole-v1, tiny budgets: does it run end to end?")
    parser.add_argument("--envs", help=f"comma-separated Gymnasium ids (default {','.join(TASKS)})")
    parser.add_argument("--steps", type=int, help="PPO steps per run, every task (default: per task, see top)")
    parser.add_argument("--seeds", type=int, help="seeds per task (default 3)")
    parser.add_argument("--first-seed", type=int, default=0, help="the first seed (default 0): runs of other "
                                                                   "seeds can go in parallel")
    parser.add_argument("--queries", help="comma-separated query budgets (default 100,300,700)")
    parser.add_argument("--extra-queries", help="budgets run only where the largest falls short of the target "
                                                "(default 1400; '' for none)")
    parser.add_argument("--n-envs", type=int, help=f"vectorised environments per PPO run (default {LOOP.n_envs}, "
                                                      "as `rl learn`)")
    parser.add_argument("--segment-length", type=int, help=f"steps per preference fragment (default "
                                                              f"{LOOP.segment_length})")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--no-baselines", action="store_true",
                        help="only the prefs@Q cells (e.g. a later 1400-query budget; --report joins them)")
    parser.add_argument("--records", type=Path, help="append each cell to this JSON-lines file as it is measured")
    parser.add_argument("--report", type=Path, nargs="+", metavar="RECORDS",
                        help="run nothing: the tables from these --records files")
    parser.add_argument("--markdown", action="store_true", help="print the tables as Markdown (for a README)")
    parser.add_argument("--json", type=Path, help="write the summary to this file")
    parser.add_argument("--quiet", action="store_true", help="no per-cell progress lines")
    args = parser.parse_args(argv)
    if args.report:
        summary = summarise(read_records(args.report))
        print_tables(summary, markdown=args.markdown)
        if args.json:
            args.json.write_text(json.dumps(summary, indent=1))
        return summary
    s = replace(SMOKE if args.smoke else Settings())
    if args.envs:
        s.envs = tuple(args.envs.split(","))
    if args.steps:
        s.steps = args.steps
    if args.seeds:
        s.seeds = args.seeds
    s.first_seed = args.first_seed
    if args.queries:
        s.queries = tuple(sorted(int(q) for q in args.queries.split(",")))
    if args.extra_queries is not None:
        s.extra_queries = tuple(int(q) for q in args.extra_queries.split(",") if q)
    if args.n_envs:
        s.n_envs = args.n_envs
    if args.segment_length:
        s.segment_length = args.segment_length
    torch.set_num_threads(args.threads)
    from rewardkit.rl.envs import check_env_id

    for env_id in s.envs:
        check_env_id(env_id)
    log = (lambda line: None) if args.quiet else (lambda line: print(line, flush=True))
    start = time.perf_counter()
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for env_id in s.envs:
            cells = run_task(env_id, s, s.queries, Path(scratch), log, baselines=not args.no_baselines,
                             records=args.records)
            if args.no_baselines:  # no scale to judge by: --report joins these cells to a baseline run
                results[env_id] = cells
                continue
            best = normalised(cells)[f"prefs@{max(s.queries)}"][0]
            if s.extra_queries and not best >= TARGET_SCORE:
                cells.update(run_task(env_id, s, s.extra_queries, Path(scratch), log, baselines=False,
                                      records=args.records))
            results[env_id] = cells
    if args.no_baselines:
        print(f"{sum(len(c.returns) for cells in results.values() for c in cells.values())} cell(s) measured; "
              "--report joins them to a run with the baselines")
        return {"tasks": {e: {n: asdict(c) for n, c in cells.items()} for e, cells in results.items()}}
    summary = summarise(results)
    summary["settings"] = {**asdict(s), "steps": {e: s.steps_for(e) for e in s.envs},
                           "segment_length": {e: s.segment_for(e) for e in s.envs}}
    summary["wall_seconds"] = time.perf_counter() - start
    print_tables(summary, markdown=args.markdown)
    print(f"wall time {summary['wall_seconds']:.0f} s, {s.seeds} seed(s), torch threads {args.threads}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main()
