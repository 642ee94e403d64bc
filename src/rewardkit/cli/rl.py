"""``rewardkit rl``: reward models for Gymnasium environments (collect, fit, train, learn)."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from rewardkit.cli.options import JsonOption, RepoOption, open_repo
from rewardkit.cli.render import bold, console, print_json

if TYPE_CHECKING:
    from rewardkit.api import rl
    from rewardkit.store import Commit, Repository

app = typer.Typer(help="Reward models for Gymnasium environments: collect roll-outs, fit R(s,a), train PPO on it, "
                  "learn it from preferences.", no_args_is_help=True)

EnvOption = Annotated[str, typer.Option("--env", help="Gymnasium environment id, e.g. CartPole-v1 or Pendulum-v1.")]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed of the environments, models and sampling.")]
NEnvsOption = Annotated[int, typer.Option("--n-envs", min=1, help="Environments stepped together.")]
ThreadsOption = Annotated[
    int | None,
    typer.Option("--threads", min=1, help="Torch CPU threads (1 is fastest for these small networks on a busy "
                 "machine); default: torch's.", show_default=False),
]
MessageOption = Annotated[
    str | None, typer.Option("--message", "-m", help="Commit message (implies --commit).", show_default=False)
]
CommitOption = Annotated[bool, typer.Option("--commit", help="Commit the reward model with its params and metrics.")]
EnsembleOption = Annotated[int, typer.Option("--ensemble", min=1, help="Reward-model ensemble members (1: one "
                                            "model).")]


FamilyOption = Annotated[str, typer.Option("--family", help="Task family: pendulum-goal, halfcheetah-velocity or "
                                          "halfcheetah-direction (tasks differ only in reward).")]
TasksOption = Annotated[str | None, typer.Option("--tasks", help="Task indices to train on, comma-separated; "
                                                 "default the family's training tasks.", show_default=False)]
LabelsOption = Annotated[int, typer.Option("--labels", min=1, help="Labelled transitions of the new task to adapt "
                                           "on.")]


def _tasks(text: str | None) -> list[int] | None:
    from rewardkit.errors import ConfigError

    if text is None:
        return None
    try:
        indices = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        indices = []
    if not indices:
        raise ConfigError(f"--tasks '{text}': expected task indices separated by commas, e.g. 0,1,2")
    return indices


def _print_metrics(metrics: dict[str, float]) -> None:
    for key, value in metrics.items():
        console.print(f"  {key}: {_num(value)}")


def _out_option(what: str, verb: str) -> typer.models.OptionInfo:
    """``--out``: ``what`` to write, by default in ``runs/rl-<verb>-<time>`` (see :func:`_run_dir`)."""
    return typer.Option("--out", help=f"{what}; default: runs/rl-{verb}-<time>.", show_default=False)


def _threads(n: int | None) -> None:
    if n is not None:
        import torch

        torch.set_num_threads(n)


def _run_dir(out: Path | None, verb: str) -> Path:
    return out or Path("runs") / f"rl-{verb}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def _commit_request(commit: bool, message: str | None, default: str, repo: Path | None
                    ) -> tuple[str | None, Repository | None]:
    """The commit message and repository when ``--commit`` or ``-m`` asks for a commit, else ``(None, None)``."""
    if not (commit or message):
        return None, None
    return message or default, open_repo(repo)


def _print_commit(commit: Commit | None) -> None:
    if commit:
        console.print(bold("committed"), f"{commit.id[:10]}: {commit.message}")


def _num(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4g}"


@app.command()
def collect(
    env: EnvOption,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Transitions to record, over all environments.")],
    out: Annotated[Path, typer.Option("--out", help="Transitions file to write: .npz or .parquet.")],
    policy: Annotated[str, typer.Option("--policy", help="'random', or the .zip of a PPO policy (as `rl train` "
                                        "saves them).")] = "random",
    n_envs: NEnvsOption = 4,
    seed: SeedOption = 0,
    as_json: JsonOption = False,
) -> None:
    """Roll out a random or saved policy and save the transitions (s, a, r, s', terminated, truncated)."""
    from rewardkit.api import rl

    result = rl.collect(env, steps, out, policy=policy, n_envs=n_envs, seed=seed)
    if as_json:
        print_json({"path": str(result.path), "env_id": result.env_id, "steps": result.n_steps,
                    "episodes": result.n_episodes, "mean_return": result.mean_return,
                    "fingerprint": result.fingerprint})
        return
    console.print(f"{result.n_steps} steps, {result.n_episodes} episodes in {result.env_id}, mean true return "
                  f"{_num(result.mean_return)}")
    console.print(f"wrote {result.path}  fingerprint {result.fingerprint[:16]}")


@app.command()
def fit(
    data: Annotated[Path, typer.Option("--data", help="Transitions file (.npz/.parquet: MSE on the true reward) or "
                                       "preference file (.npz from `rl learn`: Bradley-Terry on segment pairs).")],
    env: Annotated[str | None, typer.Option("--env", help="Environment id, when the file does not name one.",
                                            show_default=False)] = None,
    ensemble: EnsembleOption = 1,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Passes over the training part.")] = 20,
    lr: Annotated[float, typer.Option("--lr", help="Adam learning rate.")] = 1e-3,
    batch_size: Annotated[int | None, typer.Option("--batch-size", min=1, help="Transitions or pairs per step; "
                                                   "default 256 transitions or 32 pairs.", show_default=False)] = None,
    hidden: Annotated[str, typer.Option("--hidden", help="Hidden layer widths, comma-separated.")] = "256,256",
    init_from: Annotated[str | None, typer.Option("--init-from", help="Transfer: start from this stored "
                                                  "state-action model (ref); its normaliser is kept and the commit "
                                                  "records it as the base.", show_default=False)] = None,
    freeze: Annotated[list[str] | None, typer.Option("--freeze", help="With --init-from: parameters to keep as "
                                                     "stored, fnmatch on names (mlp.0.*); repeatable.",
                                                     show_default=False)] = None,
    family: Annotated[str | None, typer.Option("--family", help="Multi-task: fit one task-conditioned model to the "
                                               "transitions relabelled for each task of this family.",
                                               show_default=False)] = None,
    tasks: TasksOption = None,
    adapt_task: Annotated[int | None, typer.Option("--adapt-task", help="With --family: then adapt to this "
                                                   "task (not trained on) from --labels of its transitions.",
                                                   show_default=False)] = None,
    labels: LabelsOption = 100,
    pairs: Annotated[int | None, typer.Option("--pairs", min=1, help="With --family: learn from this many "
                                              "synthetic preference pairs per task (then --labels counts pairs).",
                                              show_default=False)] = None,
    segment_length: Annotated[int, typer.Option("--segment-length", min=1, help="Steps per segment, with "
                                                "--pairs.")] = 25,
    seed: SeedOption = 0,
    out: Annotated[Path | None, _out_option("Model folder", "fit")] = None,
    commit: CommitOption = False,
    message: MessageOption = None,
    threads: ThreadsOption = None,
    as_json: JsonOption = False,
    repo: RepoOption = None,
) -> None:
    """Fit a state-action reward model R(s,a) to a transitions or preference file; held-out metrics vs the true reward.

    A fifth of the episodes (or pairs) is held out: the metrics are the MSE (or preference
    accuracy) there and the Pearson correlation of learned and true reward per held-out step.
    --init-from fine-tunes a stored model (transfer, lineage shown by `show` and `log --graph`);
    --family fits one R(s, a, task) over a task family (multi-task).
    """
    from rewardkit.api import rl
    from rewardkit.errors import ConfigError

    _threads(threads)
    hidden_sizes = _hidden(hidden)
    if family is None and (tasks is not None or adapt_task is not None or pairs is not None):
        raise ConfigError("--tasks, --adapt-task and --pairs need --family NAME")
    if family is not None and (init_from or freeze or ensemble > 1):
        raise ConfigError("--family fits a new task-conditioned model: drop --init-from, --freeze and --ensemble")
    default = f"rl fit on {data.name}" + (f" from {init_from}" if init_from else "") + (
        f" over {family}" if family else "")
    message, target = _commit_request(commit, message, default, repo)
    if family is not None:
        result = rl.fit_tasks(data, _run_dir(out, "fit"), family=family, tasks=_tasks(tasks), adapt_task=adapt_task,
                              labels=labels, pairs=pairs, segment_length=segment_length, epochs=epochs, lr=lr,
                              batch_size=batch_size, seed=seed, hidden_sizes=hidden_sizes, commit_message=message,
                              repo=target)
        _print_tasks(result, f"multi-task fit over {result.family} tasks {result.tasks} ({result.params['objective']})",
                     as_json)
        return
    result = rl.fit(data, _run_dir(out, "fit"), env_id=env, ensemble=ensemble, epochs=epochs, lr=lr,
                    batch_size=batch_size, seed=seed, hidden_sizes=hidden_sizes, commit_message=message, repo=target,
                    init_from=init_from, freeze=freeze or ())
    if as_json:
        print_json({"model_dir": str(result.model_dir), "env_id": result.env_id, "objective": result.objective,
                    "train": result.n_train, "heldout": result.n_heldout, "metrics": result.metrics,
                    "params": result.params, "commit": result.commit.id if result.commit else None})
        return
    unit = "pairs" if result.objective == "preferences" else "transitions"
    console.print(f"fitted on {result.n_train} {unit} of {result.env_id} ({result.objective}), "
                  f"{result.n_heldout} held out" + (f", from {init_from}" if init_from else ""))
    _print_metrics(result.metrics)
    console.print(f"model: {result.model_dir}")
    _print_commit(result.commit)


def _print_tasks(result: rl.TasksResult, title: str, as_json: bool) -> None:
    if as_json:
        print_json({"model_dir": str(result.model_dir), "family": result.family, "tasks": result.tasks,
                    "metrics": result.metrics, "params": result.params,
                    "commit": result.commit.id if result.commit else None})
        return
    console.print(title + " (held-out episodes, mean over tasks)")
    _print_metrics(result.metrics)
    console.print(f"model: {result.model_dir}")
    _print_commit(result.commit)


@app.command()
def maml(
    data: Annotated[Path, typer.Option("--data", help="Transitions of the family's environment (.npz/.parquet).")],
    family: FamilyOption,
    tasks: TasksOption = None,
    inner_steps: Annotated[int, typer.Option("--inner-steps", min=0, help="K: inner gradient steps.")] = 1,
    inner_lr: Annotated[float, typer.Option("--inner-lr", help="α: inner step size.")] = 0.01,
    outer_lr: Annotated[float, typer.Option("--outer-lr", help="Adam learning rate of the outer loop.")] = 1e-3,
    meta_steps: Annotated[int, typer.Option("--meta-steps", min=1, help="Outer updates (4 tasks each).")] = 200,
    support: Annotated[int, typer.Option("--support", min=1, help="Support transitions per task and step.")] = 10,
    query: Annotated[int, typer.Option("--query", min=1, help="Query transitions per task and step.")] = 20,
    first_order: Annotated[bool, typer.Option("--first-order", help="FOMAML: do not differentiate through the "
                                              "inner steps.")] = False,
    hidden: Annotated[str, typer.Option("--hidden", help="Hidden layer widths, comma-separated.")] = "256,256",
    seed: SeedOption = 0,
    out: Annotated[Path | None, _out_option("Model folder", "maml")] = None,
    commit: CommitOption = False,
    message: MessageOption = None,
    threads: ThreadsOption = None,
    as_json: JsonOption = False,
    repo: RepoOption = None,
) -> None:
    """Meta-train R(s,a) with MAML over a task family's training tasks (MSE on relabelled transitions).

    The metrics are held-out MSE and correlation per task after the inner loop on --support
    of its transitions. Adapt the result to a held-out task with `rewardkit rl adapt`.
    """
    from rewardkit.api import rl

    _threads(threads)
    hidden_sizes = _hidden(hidden)
    message, target = _commit_request(commit, message, f"rl maml over {family} on {data.name}", repo)
    result = rl.maml(data, _run_dir(out, "maml"), family=family, tasks=_tasks(tasks), inner_steps=inner_steps,
                     inner_lr=inner_lr, outer_lr=outer_lr, meta_steps=meta_steps, support_size=support,
                     query_size=query, first_order=first_order, seed=seed, hidden_sizes=hidden_sizes,
                     commit_message=message, repo=target)
    order = "first-order" if first_order else "second-order"
    _print_tasks(result, f"MAML ({order}, {meta_steps} meta-steps) over {result.family} tasks {result.tasks}, "
                 f"after {inner_steps} inner step(s) on {support} labels", as_json)


@app.command()
def adapt(
    reward: Annotated[str, typer.Option("--reward", help="Stored state-action model to adapt: a folder or a ref "
                                        "(e.g. what `rl maml --commit` made).")],
    data: Annotated[Path, typer.Option("--data", help="Transitions of the family's environment (.npz/.parquet).")],
    family: FamilyOption,
    task: Annotated[int, typer.Option("--task", help="Index of the task to adapt to (usually a held-out one).")],
    labels: LabelsOption = 10,
    steps: Annotated[int, typer.Option("--steps", min=0, help="Gradient steps (MAML's inner loop).")] = 1,
    lr: Annotated[float, typer.Option("--lr", help="Step size.")] = 0.01,
    seed: SeedOption = 0,
    out: Annotated[Path | None, _out_option("Model folder", "adapt")] = None,
    commit: CommitOption = False,
    message: MessageOption = None,
    as_json: JsonOption = False,
    repo: RepoOption = None,
) -> None:
    """Few-shot adaptation of a stored reward model to one task; held-out MSE and correlation before and after."""
    from rewardkit.api import rl

    message, target = _commit_request(commit, message, f"rl adapt {reward} to {family} task {task}", repo)
    result = rl.adapt(reward, data, _run_dir(out, "adapt"), family=family, task=task, labels=labels, steps=steps,
                      lr=lr, seed=seed, commit_message=message, repo=target)
    if as_json:
        print_json({"model_dir": str(result.model_dir), "task": result.task, "labels": result.labels,
                    "before": result.before, "after": result.after, "params": result.params,
                    "commit": result.commit.id if result.commit else None})
        return
    console.print(f"adapted to {family} task {task} from {labels} labels, {steps} step(s) (held-out episodes)")
    for key in result.after:
        console.print(f"  {key}: {_num(result.before[key])} -> {_num(result.after[key])}")
    console.print(f"model: {result.model_dir}")
    _print_commit(result.commit)


def _hidden(text: str) -> tuple[int, ...]:
    from rewardkit.errors import ConfigError

    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise ConfigError(f"--hidden '{text}': expected positive widths separated by commas, e.g. 256,256")
    return sizes


@app.command()
def train(
    env: EnvOption,
    reward: Annotated[str, typer.Option("--reward", help="State-action reward model: a folder or a ref "
                                        "(branch, tag, commit id); 'none' trains on the true reward.")],
    steps: Annotated[int, typer.Option("--steps", min=1, help="PPO environment steps per seed.")] = 20_000,
    seeds: Annotated[int, typer.Option("--seeds", min=1, help="Seeds 0..N-1, one PPO run each.")] = 3,
    n_envs: NEnvsOption = 4,
    eval_episodes: Annotated[int, typer.Option("--eval-episodes", min=1, help="True-reward episodes per seed "
                                               "to evaluate the trained policy on.")] = 10,
    out: Annotated[Path | None, _out_option("Run folder", "train")] = None,
    threads: ThreadsOption = None,
    as_json: JsonOption = False,
    repo: RepoOption = None,
) -> None:
    """Train PPO on the frozen learned reward; report the TRUE return (mean over seeds, bootstrap CI).

    Writes curves.csv and curves.png (true and learned return over steps) and each seed's
    policy-seed<S>.zip into the run folder.
    """
    from rewardkit.api import rl

    _threads(threads)
    target = None if reward == "none" or Path(reward).is_dir() else open_repo(repo)
    run = rl.train(env, None if reward == "none" else reward, _run_dir(out, "train"), steps=steps, seeds=seeds,
                   n_envs=n_envs, eval_episodes=eval_episodes, repo=target, progress=not as_json)
    if as_json:
        print_json(run.to_dict())
        return
    level = int(rl.LEVEL * 100)
    console.print(f"PPO on {run.reward} in {run.env_id}, {steps} steps x {len(run.seeds)} seeds")
    console.print(f"true return {_num(run.mean_return)} ({level}% CI over seeds {_num(run.ci_low)} .. "
                  f"{_num(run.ci_high)}); per seed: {', '.join(_num(r) for r in run.returns)}")
    console.print(f"curves: {run.curves[0]}, {run.curves[1]}   policies: {run.out_dir}/policy-seed*.zip")


@app.command()
def learn(
    env: EnvOption,
    queries: Annotated[int, typer.Option("--queries", min=1, help="Preference queries to ask in all.")],
    segment_length: Annotated[int, typer.Option("--segment-length", min=1, help="Steps per segment.")] = 25,
    steps: Annotated[int, typer.Option("--steps", min=1, help="PPO environment steps in all.")] = 20_000,
    iterations: Annotated[int, typer.Option("--iterations", min=1, help="Rounds of agent training; the queries "
                                            "follow a hyperbolic schedule over them.")] = 5,
    query_selection: Annotated[str, typer.Option("--query-selection", help="random, or disagreement (of an "
                                                 "ensemble: needs --ensemble 2 or more).")] = "random",
    ensemble: EnsembleOption = 1,
    beta: Annotated[float, typer.Option("--beta", help="Teacher rationality (inf: always prefers the higher "
                                        "return).")] = math.inf,
    gamma: Annotated[float, typer.Option("--gamma", help="Teacher myopia: step t of L weighted gamma^(L-1-t).")]
    = 1.0,
    mistake_rate: Annotated[float, typer.Option("--mistake-rate", help="Chance a label is flipped.")] = 0.0,
    skip_threshold: Annotated[float | None, typer.Option("--skip-threshold", help="Skip pairs whose returns are "
                                                         "both below this.", show_default=False)] = None,
    equal_threshold: Annotated[float, typer.Option("--equal-threshold", help="Label 0.5 when the returns differ "
                                                   "by less than this.")] = 0.0,
    n_envs: NEnvsOption = 4,
    eval_episodes: Annotated[int, typer.Option("--eval-episodes", min=1, help="True-reward episodes to evaluate "
                                               "the final policy on.")] = 10,
    seed: SeedOption = 0,
    out: Annotated[Path | None, _out_option("Run folder", "learn")] = None,
    commit: CommitOption = False,
    message: MessageOption = None,
    threads: ThreadsOption = None,
    as_json: JsonOption = False,
    repo: RepoOption = None,
) -> None:
    """Learn a reward model from synthetic preferences while PPO trains on it (Christiano et al. 2017).

    The teacher labels segment pairs from the environment's true reward with B-Pref's knobs.
    Writes reward_model/, preferences.npz, policy.zip, curves.csv and curves.png into the
    run folder; with --commit the reward model is committed with its query count and the
    final policy's true return.
    """
    from rewardkit.api import rl

    _threads(threads)
    settings = rl.LearnSettings(
        queries=queries, steps=steps, segment_length=segment_length, query_selection=query_selection,
        ensemble=ensemble, iterations=iterations, n_envs=n_envs, eval_episodes=eval_episodes, seed=seed,
        teacher=rl.TeacherKnobs(beta=beta, gamma=gamma, mistake_rate=mistake_rate, skip_threshold=skip_threshold,
                                equal_threshold=equal_threshold))
    message, target = _commit_request(commit, message, f"rl learn on {env} from {queries} queries", repo)
    run = rl.learn(env, _run_dir(out, "learn"), settings, commit_message=message, repo=target,
                   progress=not as_json)
    if as_json:
        print_json({"out_dir": str(run.out_dir), "model_dir": str(run.model_dir), "env_id": run.env_id,
                    "queries": run.n_queries, "metrics": run.metrics, "params": run.params,
                    "commit": run.commit.id if run.commit else None})
        return
    level = int(rl.LEVEL * 100)
    console.print(f"learned from {run.n_queries} labelled pairs in {run.env_id}, {steps} PPO steps")
    console.print(f"true return of the final policy {_num(run.true_return)} ({level}% CI over episodes "
                  f"{_num(run.ci_low)} .. {_num(run.ci_high)}); held-out preference accuracy "
                  f"{_num(run.metrics['validation/preference_accuracy'])}")
    console.print(f"reward model: {run.model_dir}   curves: {run.curves[0]}, {run.curves[1]}")
    _print_commit(run.commit)
