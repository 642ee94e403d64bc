"""Entry point of the ``rewardkit`` command."""

from __future__ import annotations

import sys

import typer
from typer.exceptions import TyperException

from rewardkit.cli import evaluate, repo, train
from rewardkit.errors import RewardkitError
from rewardkit.store.lock import sigterm_raises

app = typer.Typer(
    name="rewardkit",
    help="Reward models as versioned software: train, evaluate, commit, check out and score them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(repo.init)
app.command()(train.train)
app.command("eval")(evaluate.evaluate)
app.command()(evaluate.score)
app.command()(repo.commit)
app.command()(repo.log)
app.command()(repo.show)
app.command()(repo.checkout)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors print one line on stderr and exit with code 2."""
    try:
        with sigterm_raises():  # SIGTERM cleans up (temp folders, half-written objects) like Ctrl-C
            result = app(args=argv, prog_name="rewardkit", standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except TyperException as exc:  # usage errors (typer's own ClickException): exit code 2
        ctx = getattr(exc, "ctx", None)
        command = ctx.command_path if ctx is not None else "rewardkit"
        print(f"error: {exc.format_message()} (see `{command} --help`)", file=sys.stderr)
        return exc.exit_code
    except typer.Abort:
        print("aborted", file=sys.stderr)
        return 1
    except RewardkitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return result if isinstance(result, int) else 0


def run() -> None:
    """Console-script entry point: exit with :func:`main`'s code."""
    sys.exit(main())


if __name__ == "__main__":
    run()
