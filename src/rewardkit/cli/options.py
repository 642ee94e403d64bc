"""Options shared by several commands."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from rewardkit.data import FORMATS

if TYPE_CHECKING:
    from rewardkit.store import Repository

RepoOption = Annotated[
    Path | None,
    typer.Option("--repo", envvar="REWARDKIT_REPO", help="Repository folder; default: ./.rewardkit.",
                 show_default=False),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]
FormatOption = Annotated[
    str | None,
    typer.Option("--format", help=f"Data format ({', '.join(FORMATS)}); detected from the first record when "
                 "omitted."),
]


# How a tensor changed on several sides combines: `rewardkit merge` and `rewardkit pull`.
StrategyOption = Annotated[str, typer.Option(
    help="How a tensor changed on several sides combines: average (WARM), task-arithmetic, ties, dare, ours, "
         "theirs. A tensor changed on one side is taken from it.")]
WeightsOption = Annotated[str | None, typer.Option(
    help="One weight per model, the current branch first, comma-separated, e.g. 0.5,0.25,0.25; default equal.",
    show_default=False)]
LambdaOption = Annotated[float, typer.Option(
    "--lambda", help="Scale of the merged task vector (task-arithmetic, ties, dare).")]
DensityOption = Annotated[float | None, typer.Option(
    help="Fraction of each task vector kept: ties default 0.2, dare default 0.5 (drop rate 1-density).",
    show_default=False)]
DropSeedOption = Annotated[int, typer.Option("--seed", help="Seed of dare's drop masks.", min=0)]


def parse_weights(text: str | None) -> list[float] | None:
    """The ``--weights`` option as numbers (None: equal weights).

    Raises:
        typer.BadParameter: If ``text`` is not a comma-separated list of numbers.
    """
    if text is None:
        return None
    try:
        return [float(w) for w in text.split(",")]
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a comma-separated list of numbers, e.g. 0.5,0.5",
                                 param_hint="--weights") from None


def open_repo(path: Path | None) -> Repository:
    """The repository at ``path``, ``$REWARDKIT_REPO`` or ``./.rewardkit``."""
    from rewardkit.store import Repository  # imports torch: only when a command needs the store

    return Repository.discover(path)
