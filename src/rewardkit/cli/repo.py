"""Version-control commands: init, commit, log, show, checkout."""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from rewardkit import api
from rewardkit.cli.options import JsonOption, RepoOption, open_repo
from rewardkit.cli.render import commit_table, console, log_table, metrics_table, print_json


def init(
    path: Annotated[Path | None, typer.Argument(help="Folder to create; default: $REWARDKIT_REPO or ./.rewardkit.",
                                                show_default=False)] = None,
    db: Annotated[str | None, typer.Option(
        "--db", envvar="REWARDKIT_DB_URL", show_default=False,
        help="Metadata database URL: postgresql://USER@HOST:PORT/DBNAME for a shared PostgreSQL database "
             "(password in PGPASSWORD or ~/.pgpass, never in the URL); default: SQLite meta.db in the "
             "repository.")] = None,
    repo: RepoOption = None,
) -> None:
    """Create an empty repository: an objects folder, and metadata in SQLite (WAL mode) or PostgreSQL."""
    from rewardkit.store.repository import DEFAULT_DIR, Repository  # imports torch

    target = path or repo or Path(DEFAULT_DIR)
    Repository.init(target, db_url=db).close()
    where = f" (metadata in {db})" if db else ""
    console.print(f"Initialised empty rewardkit repository in {target}{where}")


def commit(
    model_dir: Annotated[Path, typer.Argument(
        help="Model folder: model.safetensors and config.json, plus the tokenizer files for a text model.")],
    message: Annotated[str, typer.Option("--message", "-m", help="What this version changes.")],
    branch: Annotated[str | None, typer.Option(help="Branch to commit on; default: the current branch.",
                                               show_default=False)] = None,
    verify_existing: Annotated[bool, typer.Option(
        help="Compare every tensor already in the store with the committed bytes before reusing it "
             "(objects up to 1 MiB always are; larger ones only by size otherwise).")] = False,
    retry: Annotated[bool, typer.Option(
        help="If another process moved the branch meanwhile, commit on top of its new head instead of "
             "refusing.")] = False,
    repo: RepoOption = None,
) -> None:
    """Commit a model folder: one object per tensor, so unchanged tensors cost nothing."""
    with open_repo(repo) as r:
        before = r.stats().objects
        branch = branch or r.current_branch()
        c = api.commit(model_dir, message, repo=r, branch=branch, verify_existing=verify_existing, retry=retry)
        console.print(f"[{branch} {c.id[:10]}] {message}  ({r.stats().objects - before} new objects)")


def log(
    ref: Annotated[str, typer.Argument(help="Where to start: branch, tag, alias, HEAD~N or commit id.")] = "HEAD",
    limit: Annotated[int | None, typer.Option("--limit", "-n", help="Show at most N commits.", min=0)] = None,
    graph: Annotated[bool, typer.Option("--graph", help="Draw branches and merges, as git log --graph.")] = False,
    all_refs: Annotated[bool, typer.Option(
        "--all", help="Start from every branch, tag, alias and remote-tracking branch (origin/main), not REF.")]
    = False,
    as_json: JsonOption = False,
    repo: RepoOption = None,
) -> None:
    """Commits reachable from REF (every parent of a merge), newest first, with their validation accuracy."""
    with open_repo(repo) as r:
        commits = r.log(ref, limit, all=all_refs)
        if as_json:
            print_json([asdict(c) for c in commits])
        else:
            console.print(log_table(commits, r.all_refs(), r.current_branch(), graph=graph))


def show(
    ref: Annotated[str, typer.Argument(help="Branch, tag, alias, HEAD~N or commit-id prefix.")] = "HEAD",
    as_json: JsonOption = False,
    repo: RepoOption = None,
) -> None:
    """One commit: message, lineage, data fingerprint, params and metrics."""
    from rewardkit.store.diff import metric_rows

    with open_repo(repo) as r:
        c = r.resolve(ref)
        manifest = r.manifest(c)
        if as_json:
            print_json(asdict(c) | {"tensors": len(manifest.tensors), "files": sorted(manifest.files)})
            return
        n_params = sum(math.prod(t.shape) for t in manifest.tensors.values())
        console.print(commit_table(c, len(manifest.tensors), len(manifest.files), n_params))
        if c.metrics:
            console.print(metrics_table(metric_rows(c.metrics), labels=("value",)))


def checkout(
    ref: Annotated[str, typer.Argument(help="Branch, tag, alias (e.g. production), HEAD~N or commit-id prefix.")],
    to: Annotated[Path, typer.Option("--to", help="Folder to write (must be empty or new).")],
    force: Annotated[bool, typer.Option(help="Write into a non-empty folder, overwriting same-named files.")] = False,
    merged: Annotated[bool, typer.Option(
        "--merged", help="For a LoRA adapter: write full weights (base + merged LoRA delta) instead of the "
                         "adapter folder with its base in base/.")] = False,
    from_remote: Annotated[str | None, typer.Option(
        "--from", help="Fetch only what REF needs from this remote first (REF: a remote branch, main~2 or a commit "
        "id there); other versions' objects stay on the remote.", show_default=False)] = None,
    repo: RepoOption = None,
) -> None:
    """Write a version as a folder that transformers and TRL load unchanged (a LoRA adapter: peft)."""
    with open_repo(repo) as r:
        if from_remote is None:
            c = api.checkout(ref, to, merged=merged, force=force, repo=r)
        else:
            from rewardkit.api.remote import checkout_from
            from rewardkit.cli.render import TransferBar

            with TransferBar() as bar:
                c = checkout_from(r, from_remote, ref, to, merged=merged, force=force, progress=bar)
    console.print(f"Checked out {c.id[:10]} into {to}")
