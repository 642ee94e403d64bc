"""Entry point of the ``rewardkit`` command."""

from __future__ import annotations

import os
import sys

import typer
from typer.exceptions import TyperException

from rewardkit.cli import diff, evaluate, maintenance, merge, refs, remote, repo, rl, train
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
app.command()(refs.branch)
app.command()(refs.switch)
app.command()(refs.tag)
app.add_typer(refs.alias_app, name="alias")
app.command()(refs.reset)
app.command()(refs.revert)
app.command()(refs.reflog)
app.command()(merge.merge)
app.command()(maintenance.fsck)
app.command()(maintenance.gc)
app.command()(diff.diff)
app.add_typer(rl.app, name="rl")
app.add_typer(remote.remote_app, name="remote")
app.command()(remote.push)
app.command()(remote.fetch)
app.command()(remote.pull)
app.command()(remote.clone)


DEBUG_ENV = "REWARDKIT_DEBUG"  # set to 1 to see the traceback of an unexpected error


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors print one line on stderr and exit with code 2.

    An exception that is not a :class:`RewardkitError` is a bug: it prints one line asking
    for a report and exits with code 1, or raises with its traceback when ``$REWARDKIT_DEBUG``
    is set. Ctrl-C exits with code 130.
    """
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
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        detail = str(exc).strip().partition("\n")[0]
        print(f"error: unexpected {type(exc).__name__}{': ' + detail if detail else ''}; this is a bug in "
              f"rewardkit, please report it (run again with {DEBUG_ENV}=1 for the traceback)", file=sys.stderr)
        return 1
    return result if isinstance(result, int) else 0


def run() -> None:
    """Console-script entry point: exit with :func:`main`'s code."""
    sys.exit(main())


if __name__ == "__main__":
    run()
