"""Ref commands: branch, switch, tag, alias, reset, revert, reflog (parse, call the store, render)."""

from __future__ import annotations

from typing import Annotated

import typer

from rewardkit.cli.options import JsonOption, RepoOption, open_repo
from rewardkit.cli.render import console, print_json, reflog_table, refs_table


def branch(
    name: Annotated[str | None, typer.Argument(help="Branch to create; list the branches when omitted.",
                                               show_default=False)] = None,
    start: Annotated[str, typer.Argument(help="Where the new branch starts: branch, tag, alias or commit id.")]
    = "HEAD",
    delete: Annotated[str | None, typer.Option("--delete", "-d", help="Delete this branch (its reflog keeps "
                                               "where it was, so nothing is lost).", show_default=False)] = None,
    all_branches: Annotated[bool, typer.Option("--all", "-a", help="List the remote-tracking branches too "
                                               "(remotes/origin/main: where `fetch` last saw origin's main).")]
    = False,
    as_json: JsonOption = False,
    repo: RepoOption = None,
) -> None:
    """List, create or delete branches; the current one is marked with *."""
    with open_repo(repo) as r:
        if delete is not None:
            old = r.delete_branch(delete)
            console.print(f"Deleted branch {delete} (was {old[:10]}); `rewardkit branch {delete} {old[:10]}` "
                          "restores it")
        elif name is not None:
            target = r.create_branch(name, start)
            console.print(f"Created branch {name} at {target[:10]}")
        elif as_json:
            remotes = {"remotes": r.remote_branches()} if all_branches else {}
            print_json({"current": r.current_branch(), "branches": r.branches()} | remotes)
        else:
            shown = r.branches() | ({f"remotes/{n}": id for n, id in r.remote_branches().items()} if all_branches
                                    else {})
            console.print(refs_table("branch", shown, r.commits.get, current=r.current_branch()))


def switch(
    name: Annotated[str, typer.Argument(help="Branch to make current.")],
    create: Annotated[bool, typer.Option("--create", "-c", help="Create the branch first, at START.")] = False,
    start: Annotated[str, typer.Argument(help="With -c: where the new branch starts.")] = "HEAD",
    repo: RepoOption = None,
) -> None:
    """Make NAME the current branch: `commit`, `train --commit`, `merge`, `reset` and `revert` move it."""
    if start != "HEAD" and not create:
        raise typer.BadParameter(f"START ({start}) is only for a new branch: `rewardkit switch -c {name} {start}`")
    with open_repo(repo) as r:
        target = r.switch(name, create=create, start=start)
    console.print(f"Switched to {'a new ' if create else ''}branch {name} ({target[:10]})")


def tag(
    name: Annotated[str | None, typer.Argument(help="Tag to create; list the tags when omitted.",
                                               show_default=False)] = None,
    ref: Annotated[str, typer.Argument(help="Commit to tag: branch, alias or commit id.")] = "HEAD",
    as_json: JsonOption = False,
    repo: RepoOption = None,
) -> None:
    """List tags, or tag a commit; a tag never moves once set."""
    with open_repo(repo) as r:
        if name is None:
            if as_json:
                print_json(r.tags())
            else:
                console.print(refs_table("tag", r.tags(), r.commits.get))
            return
        target = r.create_tag(name, ref)
    console.print(f"Tagged {target[:10]} as {name}")


alias_app = typer.Typer(help="Aliases such as `production`: names that move only when their gates pass.",
                        no_args_is_help=True)


@alias_app.command("set")
def alias_set(
    name: Annotated[str, typer.Argument(help="Alias, e.g. production or staging.")],
    ref: Annotated[str, typer.Argument(help="Commit to point to: branch, tag or commit id.")],
    require: Annotated[list[str] | None, typer.Option(
        "--require", help="Gate on a stored metric, e.g. 'test/accuracy>=0.60' (repeatable; all must pass; "
        "ops >=, <=, >, <, ==, !=).", show_default=False)] = None,
    repo: RepoOption = None,
) -> None:
    """Point an alias at a commit, if every --require gate passes on the commit's stored metrics."""
    with open_repo(repo) as r:
        target = r.set_alias(name, ref, require=require or [])
    console.print(f"Alias {name} -> {target[:10]}" + (f" (passed {len(require)} gate(s))" if require else ""))


@alias_app.command("list")
def alias_list(as_json: JsonOption = False, repo: RepoOption = None) -> None:
    """Every alias and the commit it points to."""
    with open_repo(repo) as r:
        if as_json:
            print_json(r.aliases())
        else:
            console.print(refs_table("alias", r.aliases(), r.commits.get))


@alias_app.command("rm")
def alias_rm(name: Annotated[str, typer.Argument(help="Alias to remove.")], repo: RepoOption = None) -> None:
    """Remove an alias (the reflog keeps where it pointed)."""
    with open_repo(repo) as r:
        old = r.remove_alias(name)
    console.print(f"Removed alias {name} (was {old[:10]})")


def reset(
    ref: Annotated[str | None, typer.Argument(help="Commit to move the current branch to.", show_default=False)]
    = None,
    to: Annotated[str | None, typer.Option("--to", help="Same as REF.", show_default=False)] = None,
    repo: RepoOption = None,
) -> None:
    """Move the current branch to REF (roll back); `rewardkit reflog` keeps the old position."""
    target = to or ref
    if target is None or (to and ref and to != ref):
        raise typer.BadParameter("give the commit to reset to once, as REF or --to REF")
    with open_repo(repo) as r:
        old, new = r.reset(target)
        branch_name = r.current_branch()
    console.print(f"{branch_name}: {old[:10] if old else '(none)'} -> {new[:10]}; the old position is in "
                  f"`rewardkit reflog {branch_name}`")


def revert(
    ref: Annotated[str, typer.Argument(help="Commit whose change to undo.")] = "HEAD",
    message: Annotated[str | None, typer.Option("--message", "-m", help="Commit message.", show_default=False)]
    = None,
    repo: RepoOption = None,
) -> None:
    """New commit on the current branch whose model is REF's parent's (no tensor is copied)."""
    with open_repo(repo) as r:
        c = r.revert(ref, message)
        branch_name = r.current_branch()
    console.print(f"[{branch_name} {c.id[:10]}] {c.message.partition(chr(10))[0]}")


def reflog(
    ref: Annotated[str | None, typer.Argument(help="Branch, tag or alias; every ref when omitted.",
                                              show_default=False)] = None,
    as_json: JsonOption = False,
    repo: RepoOption = None,
) -> None:
    """Every move of a ref (or of all refs), oldest first: commits, resets, merges, alias moves, deletions."""
    with open_repo(repo) as r:
        entries = r.reflog(ref)
    if as_json:
        print_json([e.__dict__ for e in entries])
    else:
        console.print(reflog_table(entries))
