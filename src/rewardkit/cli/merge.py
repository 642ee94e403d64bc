"""``rewardkit merge``: parse the arguments, call :func:`rewardkit.api.merge.merge`, render the result."""

from __future__ import annotations

from typing import Annotated

import typer

from rewardkit.cli.options import JsonOption, RepoOption, open_repo
from rewardkit.cli.render import console, eval_table, merge_summary, print_json


def _weights(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(w) for w in text.split(",")]
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a comma-separated list of numbers, e.g. 0.5,0.5",
                                 param_hint="--weights") from None


def merge(
    branches: Annotated[list[str], typer.Argument(help="Branches (or any refs) to merge into the current branch.")],
    strategy: Annotated[str, typer.Option(
        help="How a tensor changed on several sides combines: average (WARM), task-arithmetic, ties, dare, "
             "ours, theirs. A tensor changed on one side is taken from it.")] = "average",
    weights: Annotated[str | None, typer.Option(
        help="One weight per model, HEAD first, comma-separated, e.g. 0.5,0.25,0.25; default equal.",
        show_default=False)] = None,
    lam: Annotated[float, typer.Option("--lambda", help="Scale of the merged task vector (task-arithmetic, "
                                       "ties, dare).")] = 1.0,
    density: Annotated[float | None, typer.Option(
        help="Fraction of each task vector kept: ties default 0.2, dare default 0.5 (drop rate 1-density).",
        show_default=False)] = None,
    seed: Annotated[int, typer.Option(help="Seed of dare's drop masks.", min=0)] = 0,
    eval_data: Annotated[list[str] | None, typer.Option(
        "--eval", help="Preference data to evaluate the merged model on before committing; the metrics go into "
        "the commit. Repeat for several.", show_default=False)] = None,
    message: Annotated[str | None, typer.Option("--message", "-m", help="Commit message.", show_default=False)] = None,
    as_json: JsonOption = False,
    repo: RepoOption = None,
) -> None:
    """Three-way merge in weight space: the common ancestor is the base; fast-forwards like git."""
    from rewardkit.api.merge import merge as merge_api  # imports torch: only once the command runs
    with open_repo(repo) as r:
        run = merge_api(branches, strategy=strategy, weights=_weights(weights), lam=lam, density=density, seed=seed,
                        eval_data=eval_data or [], message=message, repo=r, progress=not as_json)
    plan = run.plan
    if as_json:
        print_json({"kind": plan.kind, "branch": plan.branch, "head": plan.head, "target": plan.target,
                    "commit": run.commit.id if run.commit else None,
                    "recipe": plan.recipe() if plan.kind == "merge" else None,
                    "evaluations": {name: report.to_dict() for name, report in run.evaluations.items()}})
        return
    console.print(merge_summary(plan, run.commit))
    for name, report in run.evaluations.items():
        console.print(eval_table(report, f"merged model on {name}"))
