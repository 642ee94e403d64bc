"""Remote commands: ``remote add|list|rm``, ``push``, ``fetch``, ``pull``, ``clone`` (parse, call the API, render)."""

from __future__ import annotations

from pathlib import Path
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
from rewardkit.cli.render import TransferBar, console, merge_summary, print_json, transfer_summary

REMOTE_HELP = "Remote name (see `rewardkit remote list`); default: origin, or the only remote."
JobsOption = Annotated[int, typer.Option("--jobs", "-j", min=1, help="Objects moved at once (threads); each is "
                                         "verified by its hash on arrival.")]
EndpointOption = Annotated[str | None, typer.Option(
    "--endpoint-url", help="S3-compatible endpoint (MinIO, Ceph, moto), e.g. http://127.0.0.1:9000; default: "
    "$AWS_ENDPOINT_URL, else AWS. Credentials come from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE.",
    show_default=False)]

remote_app = typer.Typer(
    help="Name the places a repository is shared through: a directory (local, NFS, SMB mount) or any fsspec URL "
         "such as s3://bucket/prefix. `push`, `fetch`, `pull` and `clone` use them.",
    no_args_is_help=True,
)


@remote_app.command("add")
def remote_add(
    name: Annotated[str, typer.Argument(help="Remote name, e.g. origin.")],
    url: Annotated[str, typer.Argument(help="Directory path, or fsspec URL such as s3://bucket/prefix.")],
    endpoint_url: EndpointOption = None,
    repo: RepoOption = None,
) -> None:
    """Name a remote (stored in the repository's config.json; nothing is contacted yet)."""
    from rewardkit.store.remote.config import add_remote, list_remotes

    with open_repo(repo) as r:
        add_remote(r, name, url, endpoint_url=endpoint_url)
        console.print(f"Added remote {name}: {list_remotes(r)[name]['url']}")


@remote_app.command("list")
def remote_list(as_json: JsonOption = False, repo: RepoOption = None) -> None:
    """Every remote with its URL (and S3 endpoint)."""
    from rewardkit.store.remote.config import list_remotes

    with open_repo(repo) as r:
        remotes = list_remotes(r)
    if as_json:
        print_json(remotes)
        return
    for name, spec in remotes.items():
        endpoint = f"  (endpoint {spec['endpoint_url']})" if spec.get("endpoint_url") else ""
        console.print(f"{name}  {spec['url']}{endpoint}")
    if not remotes:
        console.print("no remotes yet; add one with `rewardkit remote add origin URL`")


@remote_app.command("rm")
def remote_rm(name: Annotated[str, typer.Argument(help="Remote to forget.")], repo: RepoOption = None) -> None:
    """Forget a remote and delete its remote-tracking branches (<name>/*); the remote itself is untouched."""
    from rewardkit.store.remote.config import remove_remote

    with open_repo(repo) as r:
        remove_remote(r, name)
    console.print(f"Removed remote {name}")


def push(
    remote: Annotated[str | None, typer.Argument(help=REMOTE_HELP, show_default=False)] = None,
    refs: Annotated[list[str] | None, typer.Argument(help="Local branches to push; default: the current branch.",
                                                     show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Move a remote branch even if ours does not build on "
                                        "it (its commits may be lost; written to the remote's reflog).")] = False,
    jobs: JobsOption = 8,
    repo: RepoOption = None,
) -> None:
    """Send branches to a remote: only objects it lacks travel, then commits, then each branch by compare-and-swap.

    A branch someone moved meanwhile refuses the push ("remote main moved: pull and merge"): pull, push again.
    """
    from rewardkit.api.remote import default_remote
    from rewardkit.api.remote import push as push_api

    with open_repo(repo) as r, TransferBar() as bar:
        name = remote or default_remote(r)
        report = push_api(r, name, refs or None, force=force, jobs=jobs, progress=bar)
    console.print(transfer_summary(f"push {name}", report))


def fetch(
    remote: Annotated[str | None, typer.Argument(help=REMOTE_HELP, show_default=False)] = None,
    jobs: JobsOption = 8,
    repo: RepoOption = None,
) -> None:
    """Receive every branch of a remote as <remote>/<branch> (see `branch -a`); local branches do not move."""
    from rewardkit.api.remote import default_remote
    from rewardkit.api.remote import fetch as fetch_api

    with open_repo(repo) as r, TransferBar() as bar:
        name = remote or default_remote(r)
        report = fetch_api(r, name, jobs=jobs, progress=bar)
    console.print(transfer_summary(f"fetch {name}", report))


def pull(
    remote: Annotated[str | None, typer.Argument(help=REMOTE_HELP, show_default=False)] = None,
    branch: Annotated[str | None, typer.Argument(help="Remote branch; default: the current branch's name.",
                                                 show_default=False)] = None,
    strategy: StrategyOption = "average",
    weights: WeightsOption = None,
    lam: LambdaOption = 1.0,
    density: DensityOption = None,
    seed: DropSeedOption = 0,
    ff_only: Annotated[bool, typer.Option("--ff-only", help="Only fast-forward; refuse ('diverged: merge or "
                                          "rebase') when both sides have new commits.")] = False,
    jobs: JobsOption = 8,
    repo: RepoOption = None,
) -> None:
    """Fetch a remote branch, then fast-forward the current branch to it, or merge it in weight space."""
    from rewardkit.api.remote import default_remote
    from rewardkit.api.remote import pull as pull_api

    with open_repo(repo) as r, TransferBar() as bar:
        name = remote or default_remote(r)
        result = pull_api(r, name, branch, strategy=strategy, weights=parse_weights(weights), lam=lam, density=density,
                          seed=seed, ff_only=ff_only, jobs=jobs, progress=bar)
    console.print(transfer_summary(f"fetch {name}", result.report))
    if result.plan is None:
        console.print(f"Branch {result.branch} starts at {result.new[:10]}")
    else:
        console.print(merge_summary(result.plan, result.commit))


def clone(
    url: Annotated[str, typer.Argument(help="Directory path or fsspec URL (s3://bucket/prefix) of the remote.")],
    dir: Annotated[Path, typer.Argument(help="Folder to create (new or empty); it becomes the repository.")],  # noqa: A002
    filter: Annotated[str | None, typer.Option(  # noqa: A002 (git's option name)
        "--filter", help="Partial clone: fetch every commit, but the objects of only this remote branch or commit "
        "(a serving host wants one model, not the history).", show_default=False)] = None,
    endpoint_url: EndpointOption = None,
    jobs: JobsOption = 8,
    as_json: JsonOption = False,
) -> None:
    """Make a repository from a remote (named origin), with a branch at origin's main (or --filter's), current.

    Interrupted, the same command resumes: only what is still missing travels.
    """
    from rewardkit.api.remote import clone as clone_api

    with TransferBar() as bar:
        result = clone_api(url, dir, filter=filter, endpoint_url=endpoint_url, jobs=jobs, progress=bar)
    if as_json:
        print_json({"path": str(result.path), "branch": result.branch, "commit": result.commit,
                    "partial": result.partial, "objects": result.report.objects, "bytes": result.report.bytes,
                    "commits": result.report.commits})
        return
    console.print(transfer_summary("fetch origin", result.report))
    partial = f" (partial: objects of {result.partial} only)" if result.partial else ""
    console.print(f"Cloned into {result.path}{partial}; branch {result.branch} at {result.commit[:10]}")
