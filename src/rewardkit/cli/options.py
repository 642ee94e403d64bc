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


def open_repo(path: Path | None) -> Repository:
    """The repository at ``path``, ``$REWARDKIT_REPO`` or ``./.rewardkit``."""
    from rewardkit.store import Repository  # imports torch: only when a command needs the store

    return Repository.discover(path)
