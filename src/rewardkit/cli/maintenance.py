"""Repository maintenance commands: fsck, gc."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from rewardkit.cli.options import JsonOption, RepoOption, open_repo
from rewardkit.cli.render import console, fsck_summary, gc_summary, print_json

_DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNIT_S = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str | float) -> float:
    """Seconds in a duration such as ``30s``, ``10m``, ``2h``, ``1d``, ``90`` (seconds) or ``0``.

    Raises:
        typer.BadParameter: If ``text`` is not a number followed by s, m, h or d.
    """
    if isinstance(text, int | float):  # the default, already in seconds
        return float(text)
    match = _DURATION_RE.match(text.strip().lower())
    if match is None:
        raise typer.BadParameter(f"{text!r} is not a duration; use e.g. 30s, 10m, 2h, 1d or 0")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def fsck(
    remote: Annotated[str | None, typer.Option(
        "--remote", help="Check this remote instead (see `rewardkit remote list`): every branch's commits and "
        "objects present and hashing right.", show_default=False)] = None,
    as_json: JsonOption = False,
    repo: RepoOption = None,
) -> int:
    """Check every object, manifest, commit, ref, alias and reflog entry; exit 1 if anything is wrong.

    Dangling commits and objects (reachable from no ref or reflog entry: what gc removes) and
    young temp files are listed as information, not errors.
    """
    from rewardkit.store.fsck import fsck as check  # imports torch
    from rewardkit.store.repository import DEFAULT_DIR

    if remote is not None:
        return _fsck_remote(remote, as_json, repo)
    report = check(repo or Path(DEFAULT_DIR))
    if as_json:
        print_json(report.to_dict())
    else:
        console.print(fsck_summary(report), soft_wrap=True)
    return 0 if report.ok else 1


def _fsck_remote(name: str, as_json: bool, repo: Path | None) -> int:
    from rewardkit.store.remote import fsck_remote
    from rewardkit.store.remote.config import open_remote

    with open_repo(repo) as r:
        report = fsck_remote(open_remote(r, name))
    if as_json:
        print_json(report.to_dict())
    else:
        for line in [*(f"error: {p}" for p in report.problems), *(f"info: {n}" for n in report.notes)]:
            console.print(line, soft_wrap=True)
        verdict = f"{len(report.problems)} problem(s)" if report.problems else "ok: nothing is wrong"
        console.print(f"fsck {name} ({report.url}): {len(report.refs)} branches, {report.commits} commits, "
                      f"{report.objects} objects checked; {verdict}", soft_wrap=True)
    return 0 if report.ok else 1


def gc(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be removed; remove nothing.")] = False,
    grace_s: Annotated[float, typer.Option(
        "--grace", parser=parse_duration, show_default="2h", metavar="DURATION",
        help="Keep anything younger than this (30s, 10m, 2h, 1d; 0 keeps nothing unreachable: use "
        "only when no other process writes to the repository).")] = 7200.0,
    expire_reflog_s: Annotated[float | None, typer.Option(
        "--expire-reflog", parser=parse_duration, metavar="DURATION", show_default=False,
        help="First drop reflog entries older than this (e.g. 90d, git's default), so deleted branches and "
        "reset-away commits only they reach are collected too; default: keep the whole reflog.")] = None,
    as_json: JsonOption = False,
    repo: RepoOption = None,
) -> None:
    """Remove objects and commits that no branch, tag, alias or reflog entry reaches, and stale temp files."""
    from rewardkit.store.gc import gc as collect  # imports torch

    with open_repo(repo) as r:
        report = collect(r, grace_s=grace_s, dry_run=dry_run, expire_reflog_s=expire_reflog_s)
    if as_json:
        print_json(report.to_dict())
    else:
        console.print(gc_summary(report), soft_wrap=True)
