"""Share a repository through remotes: push, fetch, pull, clone, and check out one version from a remote.

Porcelain over :mod:`rewardkit.store.remote` (transfer, verification, ref compare-and-swap)
and :mod:`rewardkit.store.merge` (what ``pull`` does with what it fetched), with git's habits:

* ``push`` sends the current branch (or the named ones) and moves ``refs/remotes/<r>/<b>``
  to what the remote now holds; a remote branch that moved meanwhile refuses it
  ("remote main moved: pull and merge").
* ``fetch`` receives every remote branch into ``refs/remotes/<remote>/<branch>``; local
  branches never move.
* ``pull`` fetches one branch, then fast-forwards the current branch, or merges it in weight
  space (any ``rewardkit merge`` strategy), or refuses with "diverged: merge or rebase".
* ``clone`` makes a repository whose ``origin`` is the URL, with a local branch at origin's
  default branch; ``filter`` (a partial clone) fetches every commit but only one version's
  objects (:mod:`rewardkit.store.remote.partial`).

Storage errors (unreachable endpoint, wrong credentials, no such bucket) become one-line
:class:`~rewardkit.errors.StoreError` s naming the remote and its URL (:meth:`Remote.io`); a
refused command leaves the local branches as they were.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from rewardkit.errors import RefError, RewardkitError, StoreError
from rewardkit.store import remote as transfer
from rewardkit.store.refs import HEADS, REMOTES, check_ref_name
from rewardkit.store.refverbs import write_head
from rewardkit.store.remote.config import (
    add_remote,
    list_remotes,
    normalize_url,
    open_remote,
    storage_options,
)
from rewardkit.store.remote.partial import (
    clear_if_complete,
    is_complete,
    missing_objects,
    partial_clone,
    set_partial_clone,
)
from rewardkit.store.repository import CONFIG_FILE, Repository

if TYPE_CHECKING:
    from rewardkit.store.commits import Commit
    from rewardkit.store.merge import MergePlan
    from rewardkit.store.remote import Progress, Remote, TransferReport

DEFAULT_REMOTE = "origin"
#: Uploads or downloads at once (threads); each object is verified by its hash on arrival.
JOBS = 8


@dataclass(frozen=True)
class PullResult:
    """What :func:`pull` did.

    Attributes:
        report: What the fetch moved.
        kind: ``"up-to-date"``, ``"fast-forward"``, ``"merge"`` (a merge commit), or
            ``"created"`` (the current branch had no commit: it now starts at the remote's).
        branch: The local branch that moved (the current branch).
        old: Its commit before the pull (None if it had none).
        new: Its commit after.
        plan: The merge plan (None for ``"created"``).
        commit: The merge commit, for ``"merge"``.
    """

    report: TransferReport
    kind: Literal["up-to-date", "fast-forward", "merge", "created"]
    branch: str
    old: str | None
    new: str
    plan: MergePlan | None = None
    commit: Commit | None = None


@dataclass(frozen=True)
class CloneResult:
    """What :func:`clone` made.

    Attributes:
        path: The new repository's folder.
        branch: The local branch created and made current (origin's default: ``main``).
        commit: Where it points.
        report: What the fetch moved.
        partial: The ``filter`` of a partial clone, else None.
    """

    path: Path
    branch: str
    commit: str
    report: TransferReport
    partial: str | None


def default_remote(repo: Repository) -> str:
    """The remote a command without one uses: ``origin``, else the only remote there is.

    Raises:
        StoreError: If there is no remote, or several and none is called ``origin``.
    """
    remotes = list_remotes(repo)
    if DEFAULT_REMOTE in remotes:
        return DEFAULT_REMOTE
    if len(remotes) == 1:
        return next(iter(remotes))
    known = ", ".join(remotes) or "none; add one with `rewardkit remote add origin URL`"
    raise StoreError(f"which remote? there is no remote {DEFAULT_REMOTE!r} (known: {known}); name one")


def _existing(remote: Remote) -> dict[str, str]:
    """The remote's branches; refuses a remote that does not exist."""
    with remote.io("reading its branches"):
        heads = remote.branches()
        if not heads and not remote.fs.exists(remote.root):
            raise StoreError(f"remote {remote.name}: {remote.url} does not exist (nothing was pushed there yet?)")
    return heads


def push(
    repo: Repository,
    remote: str | None = None,
    refs: Sequence[str] | None = None,
    *,
    force: bool = False,
    jobs: int = JOBS,
    progress: Progress | None = None,
) -> TransferReport:
    """Send branches to a remote: only missing objects travel, then commits, then each ref by compare-and-swap.

    Args:
        repo: The local repository.
        remote: Remote name; default ``origin`` (or the only remote).
        refs: Local branches to push (``main`` or ``refs/heads/main``); default the current branch.
        force: Move a remote branch that is not an ancestor of ours (written to the remote's reflog).
        jobs: Uploads at once.
        progress: Told the objects and bytes to send, then each object sent.

    Returns:
        What moved; ``refs`` maps ``refs/heads/<b>`` to the commit the remote branch now names.

    Raises:
        RefMovedError: A remote branch moved to a commit ours does not build on: "remote main
            moved: pull and merge"; no remote ref moved.
        StoreError: Unknown remote, no such local branch, unreachable remote, wrong credentials.
    """
    r = open_remote(repo, remote or default_remote(repo))
    branches = [check_ref_name(ref.removeprefix(HEADS)) for ref in refs] if refs else [repo.current_branch()]
    for b in branches:
        if repo.refs.get(HEADS + b) is None:
            raise StoreError(f"cannot push {b}: no such branch (branches: {', '.join(repo.branches()) or 'none'})")
    report = transfer.push(repo, r, branches, force=force, jobs=jobs, progress=progress)
    for ref, id in report.refs.items():
        _track(repo, r, ref.removeprefix(HEADS), id, "push")
    return report


def fetch(repo: Repository, remote: str | None = None, *, jobs: int = JOBS,
          progress: Progress | None = None) -> TransferReport:
    """Receive every branch of a remote into ``refs/remotes/<remote>/<branch>``, every object verified.

    All the commits and objects the remote's branches reach come (only what is missing), so
    a partial clone becomes a full one (its partial state is cleared once every commit's
    model is present). Local branches do not move.

    Raises:
        StoreError: Unknown remote, missing or unreachable remote, wrong credentials, a corrupt
            object on the remote (named by its id).
    """
    r = open_remote(repo, remote or default_remote(repo))
    report = transfer.fetch(repo, r, jobs=jobs, progress=progress)
    clear_if_complete(repo)
    return report


def pull(
    repo: Repository,
    remote: str | None = None,
    branch: str | None = None,
    *,
    strategy: str = "average",
    weights: Sequence[float] | None = None,
    lam: float = 1.0,
    density: float | None = None,
    seed: int = 0,
    ff_only: bool = False,
    jobs: int = JOBS,
    progress: Progress | None = None,
) -> PullResult:
    """Fetch ``branch`` of ``remote``, then bring the current branch up to it.

    A fast-forward when the current branch is behind; a three-way merge in weight space when
    both have new commits (see :func:`rewardkit.store.merge.plan_merge`; the strategy options
    are ``rewardkit merge``'s); in a partial clone only the remote head's objects are fetched.

    Args:
        repo: The local repository.
        remote: Remote name; default ``origin`` (or the only remote).
        branch: Remote branch; default the current branch's name.
        strategy: Merge strategy for a diverged history, e.g. ``average``, ``ties``, ``ours``.
        weights: One weight per model (current branch first); None: equal.
        lam: Scale of the merged task vector (``task-arithmetic``, ``ties``, ``dare``).
        density: Kept fraction for ``ties``/``dare``.
        seed: Seed of ``dare``'s masks.
        ff_only: Refuse to merge: only fast-forward.
        jobs: Downloads at once.
        progress: Told the objects and bytes to fetch, then each object received.

    Raises:
        StoreError: "diverged: merge or rebase ..." when both sides have new commits and
            ``ff_only`` is set, or the merge is refused (the reason follows); the remote has
            no such branch; and :func:`fetch`'s errors. The current branch is then unchanged.
    """
    from rewardkit.store.merge import commit_merge, fast_forward, plan_merge  # torch: only when pulling

    name = remote or default_remote(repo)
    r = open_remote(repo, name)
    current = repo.current_branch()
    branch = check_ref_name(branch or current)
    heads = _existing(r)
    if branch not in heads:
        raise StoreError(f"remote {name} has no branch {branch!r} (branches: {', '.join(heads) or 'none'})")
    objects_for = [heads[branch]] if partial_clone(repo.path) else None
    report = transfer.fetch(repo, r, [branch], objects_for=objects_for, jobs=jobs, progress=progress)
    tracking = f"{REMOTES}{name}/{branch}"
    target = report.refs[tracking]
    old = repo.refs.get(HEADS + current)
    if old is None:
        repo.refs.set_ref(HEADS + current, target, None, f"pull: {name}/{branch}")
        return PullResult(report, "created", current, None, target)
    try:
        plan = plan_merge(repo, [tracking], strategy=strategy, weights=weights, lam=lam, density=density, seed=seed)
    except RefError:
        raise
    except StoreError as exc:
        raise StoreError(f"diverged: merge or rebase: {current} and {name}/{branch} cannot be merged "
                         f"automatically: {exc}") from exc
    if plan.kind == "merge" and ff_only:
        raise StoreError(f"diverged: merge or rebase: {current} ({old[:10]}) and {name}/{branch} ({target[:10]}) "
                         "both have new commits; `rewardkit pull` without --ff-only merges them")
    if plan.kind == "fast-forward":
        fast_forward(repo, plan)
        return PullResult(report, "fast-forward", current, old, target, plan)
    if plan.kind == "up-to-date":
        return PullResult(report, "up-to-date", current, old, old, plan)
    commit = commit_merge(repo, plan, f"merge {name}/{branch} into {current} ({strategy})")
    return PullResult(report, "merge", current, old, commit.id, plan, commit)


def clone(
    url: str,
    dir: str | Path,  # noqa: A002 (git's word)
    *,
    filter: str | None = None,  # noqa: A002 (git's word)
    endpoint_url: str | None = None,
    jobs: int = JOBS,
    progress: Progress | None = None,
) -> CloneResult:
    """Make a repository in ``dir`` from the remote at ``url``, named ``origin``.

    Every remote branch becomes ``origin/<branch>``; a local branch is made at origin's default
    branch (the ``filter`` branch, else ``main``, else the first by name) and made current.
    Run again after an interruption, it resumes: only what is still missing travels.

    Args:
        url: A directory path or an fsspec URL (``s3://bucket/prefix``).
        dir: Folder to create (new or empty).
        filter: Partial clone: a remote branch or commit id whose objects to fetch; every
            commit's metadata comes, other versions' objects do not.
        endpoint_url: S3-compatible endpoint (default ``$AWS_ENDPOINT_URL``), saved with the remote.
        jobs: Downloads at once.
        progress: Told the objects and bytes to fetch, then each object received.

    Raises:
        StoreError: Unknown scheme, unreachable remote, wrong credentials, a remote with no
            branch, ``dir`` not empty, a corrupt object (named). ``dir`` is then left as it
            was (an interrupted clone, e.g. Ctrl-C, is kept, to be resumed).
    """
    url = normalize_url(url)
    path = Path(dir)
    r = transfer.Remote(DEFAULT_REMOTE, url, **storage_options(url, endpoint_url))
    heads = _existing(r)
    if not heads:
        raise StoreError(f"nothing to clone at {url}: it has no branches (is it the URL of a rewardkit remote?)")
    resume = _interrupted_clone(path, url)
    created = not path.exists()
    repo = Repository.open(path) if resume else Repository.init(path)
    try:
        if not resume:
            add_remote(repo, DEFAULT_REMOTE, url, endpoint_url=endpoint_url)
        if filter is None:
            report = transfer.fetch(repo, r, jobs=jobs, progress=progress)
        else:
            set_partial_clone(repo, DEFAULT_REMOTE, filter)
            _, report = _fetch_version(repo, r, filter, jobs, progress)
        branch = next(b for b in (filter, "main", *heads) if b in heads)
        head = repo.refs.get(f"{REMOTES}{DEFAULT_REMOTE}/{branch}") or heads[branch]
        repo.refs.set_ref(HEADS + branch, head, None, f"clone: from {url}")
        write_head(path, branch)
    except RewardkitError:
        repo.close()
        if created:
            shutil.rmtree(path, ignore_errors=True)
        elif not resume:  # the folder was there, empty: empty it again
            for child in path.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        raise
    except BaseException:  # interrupted: keep what arrived; the same command resumes
        repo.close()
        raise
    repo.close()
    return CloneResult(path, branch, head, report, filter)


def checkout_from(
    repo: Repository,
    remote: str,
    ref: str,
    to: str | Path,
    *,
    merged: bool = False,
    force: bool = False,
    jobs: int = JOBS,
    progress: Progress | None = None,
) -> Commit:
    """Fetch only what one version needs from ``remote`` (its objects, and every commit's metadata), then check it out.

    Args:
        repo: The local repository (objects of other versions are not fetched: it becomes a
            partial clone unless it already holds them).
        remote: Remote name.
        ref: A remote branch (``main``), ``main~2``, or a commit id (prefix) on the remote.
        to: Folder to write (see :func:`rewardkit.api.checkout`).
        merged: For a LoRA adapter, write full weights.
        force: Write into a non-empty folder.
        jobs: Downloads at once.
        progress: Told the objects and bytes to fetch, then each object received.

    Returns:
        The commit checked out.

    Raises:
        StoreError: As :func:`fetch`; ``ref`` names nothing on the remote.
    """
    from rewardkit.api.models import checkout  # transformers: only when checking out

    r = open_remote(repo, remote)
    id, _ = _fetch_version(repo, r, ref, jobs, progress)
    if not is_complete(repo) and partial_clone(repo.path) is None:
        set_partial_clone(repo, remote, ref)
    return checkout(id, to, merged=merged, force=force, repo=repo)


def _fetch_version(repo: Repository, r: Remote, ref: str, jobs: int,
                   progress: Progress | None) -> tuple[str, TransferReport]:
    """Fetch every remote branch's commits, and the objects of the commit ``ref`` names (and its base).

    A remote branch name is looked up on the remote directly (one fetch); anything else
    (``main~2``, a commit id) is resolved after the commits arrived.

    Raises:
        StoreError: ``ref`` names nothing on the remote, or the remote lacks its objects.
    """
    heads = _existing(r)
    if ref in heads:
        report = transfer.fetch(repo, r, objects_for=[heads[ref]], jobs=jobs, progress=progress)
        id = heads[ref]
    else:
        report = transfer.fetch(repo, r, objects_for=[], jobs=jobs, progress=progress)
        id = _resolve_on(repo, r, ref)
    commit = repo.commits.get(id)
    need = [c for c in (id, commit.adapter_base()) if c and missing_objects(repo, repo.commits.get(c))]
    if need:
        more = transfer.fetch(repo, r, objects_for=need, jobs=jobs, progress=progress)
        report = replace(report, commits=report.commits + more.commits, objects=report.objects + more.objects,
                         bytes=report.bytes + more.bytes)
    still = [c for c in need if missing_objects(repo, repo.commits.get(c))]
    if still:
        raise StoreError(f"remote {r.name} did not provide the objects of commit {still[0][:10]}")
    return id, report


def _resolve_on(repo: Repository, r: Remote, ref: str) -> str:
    """The commit ``ref`` names on remote ``r``: ``<r>/<ref>`` first (``main~2``), then a commit id."""
    try:
        return repo.resolve(f"{r.name}/{ref}").id
    except RefError:
        pass
    try:
        return repo.resolve(ref).id
    except RefError:
        raise RefError(f"remote {r.name} has no branch or commit {ref!r} "
                       f"(branches: {', '.join(r.branches()) or 'none'})") from None


def _track(repo: Repository, r: Remote, branch: str, id: str, why: str) -> None:
    """Point ``refs/remotes/<r>/<branch>`` at ``id`` (where the remote branch now is)."""
    name = f"{REMOTES}{r.name}/{branch}"
    old = repo.refs.get(name)
    if old != id:
        repo.refs.set_ref(name, id, old, f"{why}: {r.url}")


def _interrupted_clone(path: Path, url: str) -> bool:
    """True if ``path`` is a clone of ``url`` that was interrupted before its branch was made."""
    if not (path / CONFIG_FILE).is_file():
        return False
    with Repository.open(path) as repo:
        origin = list_remotes(repo).get(DEFAULT_REMOTE)
        return origin is not None and origin["url"] == url and not repo.branches()
