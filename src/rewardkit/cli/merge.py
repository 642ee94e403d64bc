"""``rewardkit merge``: parse the arguments, call :func:`rewardkit.api.merge.merge`, render the result."""

from __future__ import annotations

from typing import Annotated

import typer

from rewardkit.cli.options import (
    DensityOption,
    DropSeedOption,
    JsonOption,
    LambdaOption,
    RepoOption,
    StrategyOption,
    WeightsOption,
    open_repo,
    parse_weights,
)
from rewardkit.cli.render import console, eval_table, merge_summary, print_json


def merge(
    branches: Annotated[list[str], typer.Argument(help="Branches (or any refs) to merge into the current branch.")],
    strategy: StrategyOption = "average",
    weights: WeightsOption = None,
    lam: LambdaOption = 1.0,
    density: DensityOption = None,
    seed: DropSeedOption = 0,
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
        run = merge_api(branches, strategy=strategy, weights=parse_weights(weights), lam=lam, density=density,
                        seed=seed, eval_data=eval_data or [], message=message, repo=r, progress=not as_json)
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
