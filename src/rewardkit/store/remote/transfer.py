"""Push and fetch: only what the other side lacks travels, concurrently, verified on arrival.

Push lists the remote once (one recursive ``find``, not one ``exists`` per object), sends the
missing objects through a bounded thread pool, then the missing commit files, then moves each
remote branch by compare-and-swap (:meth:`Remote.swap_ref`). A push killed at any point
leaves objects and commits that no remote ref names (harmless: the next push finds them in
its listing and does not send them again), never a ref naming a commit whose objects are not
all there.

Fetch reads the commit metadata of the remote branches' whole history, then downloads the
objects the local store lacks through the pool. Each object arrives in a temp file beside its
place in the local store, is re-hashed (a delta after its base is installed) and renamed into
place as soon as it is verified, so an interrupted fetch or clone resumes where it stopped
and downloads nothing twice; a corrupt object is refused, naming its id, and never enters
the store. Commits are
added after all their objects, and the remote-tracking refs ``refs/remotes/<remote>/<branch>``
move last.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

from rewardkit.errors import RefMovedError, StoreError
from rewardkit.store.atomic import TMP_PREFIX, fsync_dir
from rewardkit.store.commits import Commit
from rewardkit.store.gc import used_objects
from rewardkit.store.graph import closure
from rewardkit.store.manifest import Manifest
from rewardkit.store.objects import ObjectStore, canonical_json
from rewardkit.store.refs import HEADS, REMOTES, check_ref_name
from rewardkit.store.remote.location import Listing, Remote

if TYPE_CHECKING:
    from rewardkit.store.repository import Repository

#: Default number of objects moved at once (threads; each mostly waits on the network or disk).
DEFAULT_JOBS = 8

T = TypeVar("T")


class Progress(Protocol):
    """Receives progress of a push or fetch (e.g. a rich progress bar in the CLI)."""

    def start(self, what: str, objects: int, bytes: int) -> None:  # noqa: A002 - pinned name
        """Called once, before objects move: ``what`` is e.g. ``"push origin"``; totals to move."""

    def advance(self, bytes: int) -> None:  # noqa: A002 - pinned name
        """Called once per object moved (and verified), with its size in bytes; from worker threads."""


@dataclass(frozen=True)
class TransferReport:
    """What one push or fetch moved.

    Attributes:
        commits: Commits sent or received.
        objects: Objects sent or received (only those the other side lacked).
        bytes: Bytes of object files moved (as stored: compressed or delta-encoded).
        refs: Ref name -> commit id it was set to (remote refs for push, remote-tracking refs for fetch).
    """

    commits: int
    objects: int
    bytes: int
    refs: dict[str, str]


def _pool_run(jobs: int, fn: Callable[[T], object], items: Iterable[T]) -> None:
    """Run ``fn`` on every item with at most ``jobs`` threads; the first error cancels the rest and is raised."""
    items = list(items)
    if not items:
        return
    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="rewardkit-transfer") as pool:
        futures = [pool.submit(fn, item) for item in items]
        try:
            for f in futures:
                f.result()
        finally:
            for f in futures:
                f.cancel()


def push(
    repo: Repository,
    remote: Remote,
    branches: Sequence[str] | None = None,
    *,
    force: bool = False,
    jobs: int = DEFAULT_JOBS,
    progress: Progress | None = None,
) -> TransferReport:
    """Send ``branches`` and everything they need to ``remote``, then move the remote branches.

    Only commits the remote lacks travel (walked through parents and lineage, e.g. an
    adapter's base), and of the objects they use (:func:`~rewardkit.store.gc.used_objects`)
    only those the remote lacks; each is re-hashed before it leaves, so local damage never
    spreads. Objects go first, then commit files, then each ref by compare-and-swap
    (:meth:`Remote.swap_ref`): the remote branch must be an ancestor of what is pushed (a
    fast-forward) unless ``force``, and must not move between our read and our write even
    with ``force`` (a forced push overwrites what it saw, never a push it did not see).

    Args:
        repo: The local :class:`~rewardkit.store.repository.Repository`.
        remote: Where to push.
        branches: Local branch names, e.g. ``["main"]``; the remote branches of the same
            names move. None: the current branch.
        force: Move the remote branches even if that is not a fast-forward (their commits
            may be lost); written to the remote's reflog as ``push --force``.
        jobs: Objects uploaded at once.
        progress: Told the totals, then each object sent.

    Returns:
        Counts and bytes sent; ``refs`` maps ``refs/heads/<branch>`` to the pushed commit.

    Raises:
        RefMovedError: If a remote branch moved to a commit we do not build on
            ("remote main moved: pull and merge"); nothing on the remote changed except
            objects and commits no ref names (harmless, reused by the next push).
        StoreError: If a branch does not exist, a local object is damaged, or the remote
            cannot be reached or takes no pushes (one line).
    """
    if isinstance(branches, str):  # push(repo, remote, "main"): one branch, not four of one letter
        branches = [branches]
    names = list(branches) if branches is not None else [repo.current_branch()]
    if not names:
        raise StoreError("nothing to push: name at least one branch, e.g. main")
    heads: dict[str, str] = {}
    for b in names:
        head = repo.refs.get(HEADS + check_ref_name(b))
        if head is None:
            known = ", ".join(repo.branches()) or "none yet; commit a model first"
            raise StoreError(f"cannot push {b}: no such branch (branches: {known})")
        heads[b] = head
    remote.check_pushable()
    with remote.io("push"):
        olds = {b: remote.branch(b) for b in heads}
        local = {c.id: c for c in repo.commits.all()}  # one query; walks below run in memory
        for b, head in heads.items():
            _check_fast_forward(local, remote, b, olds[b], head, force)
        listing = remote.list()
        new = [local[id] for id in _reachable(local, heads.values(), lineage=True) if id not in listing.commits]
        ids = sorted(used_objects(repo.objects, new) - listing.objects.keys())
        sizes = {id: repo.objects.stored_size(id) for id in ids}
        if progress is not None:
            progress.start(f"push {remote.name}", len(ids), sum(sizes.values()))

        def upload(id: str) -> None:
            repo.objects.get_payload(id, verify=True)  # never spread local damage
            remote.write_file(remote.object_path(id), repo.objects.path(id))
            if progress is not None:
                progress.advance(sizes[id])

        _pool_run(jobs, upload, ids)
        _pool_run(jobs, lambda c: remote.write_file(remote.commit_path(c.id), canonical_json(c.fields())), new)
        refs = {}
        for b, head in heads.items():
            if olds[b] != head:
                remote.swap_ref(b, head, expected=olds[b], message="push --force" if force else "push")
            refs[HEADS + b] = head
    return TransferReport(commits=len(new), objects=len(ids), bytes=sum(sizes.values()), refs=refs)


def _check_fast_forward(
    local: dict[str, Commit], remote: Remote, branch: str, old: str | None, new: str, force: bool
) -> None:
    if force or old is None or old == new:
        return
    if old not in _reachable(local, [new], lineage=False):
        raise RefMovedError(f"remote {branch} moved: pull and merge (remote {remote.name} has {old[:12]})")


def _reachable(commits: dict[str, Commit], ids: Iterable[str], *, lineage: bool) -> set[str]:
    """Return the ids reachable from ``ids`` in ``commits`` through parents (and adapter bases with ``lineage``).

    Raises:
        StoreError: If a commit on the way is not in ``commits`` (a damaged history: run fsck).
    """
    def edges(id: str) -> list[str]:
        if id not in commits:
            raise StoreError(f"commit {id} is not in the repository (a damaged history: run rewardkit fsck)")
        return [*commits[id].parents, *(commits[id].base_commits() if lineage else ())]

    return closure(ids, edges)


def fetch(
    repo: Repository,
    remote: Remote,
    branches: Sequence[str] | None = None,
    *,
    objects_for: Sequence[str] | None = None,
    jobs: int = DEFAULT_JOBS,
    progress: Progress | None = None,
) -> TransferReport:
    """Receive remote branches and what they need; set ``refs/remotes/<remote>/<branch>``.

    The commit metadata of the branches' whole history always comes (it is small, and
    ``log`` needs it); objects come for every commit of that history, or only for the
    commits in ``objects_for`` and their lineage (an adapter's base): a partial clone of
    one version for a serving host.

    Args:
        repo: The local repository.
        remote: Where to fetch from.
        branches: Remote branch names; None: all of them.
        objects_for: Full commit ids whose objects to fetch; None: every commit's.
        jobs: Objects downloaded at once.
        progress: Told the totals, then each object received and verified.

    Returns:
        Counts and bytes received; ``refs`` maps each remote-tracking ref to its commit.

    Raises:
        StoreError: If the remote cannot be reached, holds no repository or no such
            branch, or a commit or object on it is missing or corrupt (named by id). No
            commit or ref changes locally then; the objects already verified stay, so the
            next fetch resumes.
    """
    if isinstance(branches, str):
        branches = [branches]
    with remote.io("fetch"):
        if branches is None:
            heads = remote.branches()
        else:  # read just these refs: no listing
            named = {b: remote.branch(b) for b in branches}
            heads = {b: id for b, id in named.items() if id is not None}
        if not heads and not remote.fs.exists(remote.root):
            raise StoreError(f"remote {remote.name}: no repository at {remote.url} (nothing pushed there yet?)")
        if branches is not None and len(heads) < len(named):
            unknown = next(b for b in named if b not in heads)
            known = ", ".join(remote.branches()) or "none"
            raise StoreError(f"remote {remote.name} has no branch {unknown!r} (branches: {known})")
        history, new = _history(repo, remote, heads.values(), jobs)
        wanted = _with_lineage(history, objects_for) if objects_for is not None else set(history)
        with Receiver(repo.objects, remote, jobs) as receiver:
            receiver.get(id for i in sorted(wanted) for id in history[i].object_ids())
            receiver.get(manifest_objects(repo.objects, (history[i] for i in sorted(wanted))), progress)
        # Under the object store's write lock, which gc holds while it decides: fetched commits
        # keep their old created_at, so a gc between adding them and moving the remote-tracking
        # refs would take them for old garbage. The objects they use are checked again inside.
        with repo.objects.undo_on_error():
            missing = next((id for id in receiver.asked if not repo.objects.has(id)), None)
            if missing is not None:
                raise StoreError(f"object {missing} was removed while fetching (a gc ran meanwhile?): fetch again")
            for c in sorted(new.values(), key=lambda c: c.created_at):
                repo.commits.add(c)
            refs = {}
            for branch, id in heads.items():
                name = f"{REMOTES}{remote.name}/{branch}"
                old = repo.refs.get(name)
                if old != id:
                    repo.refs.set_ref(name, id, expected_old=old, message=f"fetch: {remote.url}")
                refs[name] = id
    return TransferReport(commits=len(new), objects=len(receiver.got), bytes=receiver.bytes, refs=refs)


def _history(
    repo: Repository, remote: Remote, heads: Iterable[str], jobs: int
) -> tuple[dict[str, Commit], dict[str, Commit]]:
    """Return (every commit reachable from ``heads`` through parents and lineage, those not local yet).

    Remote commits are read a generation at a time through the pool; a local commit's
    ancestors are local too (fetch adds parents first), so they come from the database, read
    once.
    """
    history: dict[str, Commit] = {}
    new: dict[str, Commit] = {}
    frontier = set(heads)
    known = {c.id: c for c in repo.commits.all()}  # one query; the local part is walked in memory
    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="rewardkit-transfer") as pool:
        while frontier:
            local = [i for i in frontier if i in known]
            history.update((id, known[id]) for id in _reachable(known, local, lineage=True))
            for c in pool.map(remote.get_commit, sorted(frontier.difference(local))):
                history[c.id] = new[c.id] = c
            frontier = {p for i in frontier for p in (*history[i].parents, *history[i].base_commits())}
            frontier.difference_update(history)
    return history, new


def _with_lineage(history: dict[str, Commit], ids: Sequence[str]) -> set[str]:
    """Return ``ids`` and the commits their tensors need (an adapter's base, transitively; not a transfer base)."""
    def edges(id: str) -> list[str]:
        if id not in history:
            raise StoreError(f"cannot fetch the objects of commit {id}: it is not in the fetched history")
        return list(filter(None, [history[id].adapter_base()]))

    return closure(ids, edges)


def manifest_objects(store: ObjectStore, commits: Iterable[Commit]) -> list[str]:
    """Return the tensors and files that the manifests of ``commits`` (in ``store``, verified) list."""
    out: dict[str, None] = {}
    for c in commits:
        manifest = Manifest.from_bytes(store.get_bytes(c.manifest_id))
        out.update(dict.fromkeys(e.id for e in manifest.tensors.values()))
        out.update(dict.fromkeys(manifest.files.values()))
    return list(out)


class FlatStore(ObjectStore):
    """An object store in one folder, without the ``ab/`` fan-out: :func:`fsck_remote`'s scratch store.

    A throwaway store this way leaves one folder to remove instead of one per object (removing
    hundreds of fan-out folders costs more than downloading small objects).
    """

    def path(self, id: str) -> Path:
        """Return the file path of object ``id``: ``root/<id>``."""
        return super().path(id).parent.parent / id


class _Staged(ObjectStore):
    """The destination store as seen while objects arrive: a staged object is read from its temp file.

    Objects are downloaded to a temp file (``.tmp-fetch-*``) in the very folder they will be
    installed in, so installing a verified one is a rename (no copy of gigabytes, no second
    filesystem), and what a killed fetch leaves is an ordinary temp file that gc removes and
    fsck notes. Every other id (a delta base already installed) reads from ``dest``.
    """

    def __init__(self, dest: ObjectStore) -> None:
        super().__init__(dest.root, compress=False)
        self.dest = dest
        self.files: dict[str, Path] = {}  # id -> its temp file, while downloaded but not installed

    def path(self, id: str) -> Path:
        """Return the temp file of a staged object, else the object's path in ``dest``."""
        return self.files.get(id) or self.dest.path(id)


class Receiver:
    """Downloads objects, verifies each as it arrives, and installs it in a store at once.

    Use as a context manager (temp files of objects not installed are removed on exit).
    Attributes ``got`` and ``bytes`` count what was installed, ``asked`` holds every id asked for.

    Args:
        dest: The store to install verified objects in (and whose objects need not travel).
        remote: Where objects come from.
        jobs: Objects downloaded at once.
        problems: If given, a refused or missing object is appended here (one line naming
            it) and the others go on; otherwise the first one raises.
        listing: The remote's listing if the caller has one; else it is made (once) when the
            first object is missing from ``dest``.
    """

    def __init__(
        self,
        dest: ObjectStore,
        remote: Remote,
        jobs: int,
        problems: list[str] | None = None,
        listing: Listing | None = None,
    ) -> None:
        self.dest, self.remote, self.jobs, self.problems = dest, remote, jobs, problems
        self._listing = listing
        self.got: list[str] = []
        self.asked: set[str] = set()  # every id asked for (delta bases not included)
        self.bytes = 0
        self._progress: Progress | None = None
        self._count = threading.Lock()

    @property
    def sizes(self) -> dict[str, int]:
        """Object id -> size of every object file on the remote (bytes), listed once."""
        if self._listing is None:
            self._listing = self.remote.list()
        return self._listing.objects

    def __enter__(self) -> Receiver:
        self.staging = _Staged(self.dest)
        return self

    def __exit__(self, *exc: object) -> None:
        for tmp in list(self.staging.files.values()):
            tmp.unlink(missing_ok=True)
        self.staging.files.clear()

    def get(self, ids: Iterable[str], progress: Progress | None = None) -> None:
        """Receive every object of ``ids`` (and its delta base) that ``dest`` lacks.

        With ``progress``, first report the totals, counting what earlier calls received.

        Raises:
            StoreError: If an object is missing on the remote or does not hash to its id
                (unless ``problems`` collects them).
        """
        todo = []
        for id in dict.fromkeys(ids):
            self.asked.add(id)
            if self.dest.has(id):
                continue
            if id in self.sizes:
                todo.append(id)
            else:
                self._fail(self._missing(id))
        if progress is not None:
            self._progress = progress
            progress.start(f"fetch {self.remote.name}", len(self.got) + len(todo),
                           self.bytes + sum(self.sizes[id] for id in todo))
            for id in self.got:
                progress.advance(self.sizes[id])
        requested = set(todo)
        waiting: dict[str, list[str]] = {}  # delta base -> deltas downloaded, waiting for it
        failed: set[str] = set()
        with ThreadPoolExecutor(max_workers=max(1, self.jobs), thread_name_prefix="rewardkit-transfer") as pool:
            pending: dict[Future[str | None], str] = {pool.submit(self._download, id): id for id in todo}
            try:
                while pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for f in done:
                        id = pending.pop(f)
                        try:
                            base = f.result()
                        except StoreError as exc:
                            self._fail(exc)
                            failed.add(id)
                            for delta in waiting.pop(id, []):
                                self._fail(StoreError(
                                    f"remote {self.remote.name}: refused object {delta}: its delta base {id} is refused"
                                ))
                            continue
                        if base is None:  # verified and installed: its deltas can be checked now
                            for delta in waiting.pop(id, []):
                                pending[pool.submit(self._verify_and_install, delta)] = delta
                        elif self.dest.has(base):
                            pending[pool.submit(self._verify_and_install, id)] = id
                        elif base in failed:
                            self._fail(StoreError(
                                f"remote {self.remote.name}: refused object {id}: its delta base {base} is refused"
                            ))
                        elif base in requested:
                            waiting.setdefault(base, []).append(id)
                        elif base not in self.sizes:
                            self._fail(StoreError(
                                f"remote {self.remote.name}: refused object {id}: its delta base {base} is missing"
                            ))
                        else:
                            requested.add(base)
                            waiting.setdefault(base, []).append(id)
                            pending[pool.submit(self._download, base)] = base
            finally:
                for f in pending:
                    f.cancel()

    def _fail(self, exc: StoreError) -> None:
        if self.problems is None:
            raise exc
        self.problems.append(str(exc))

    def _missing(self, id: str) -> StoreError:
        return StoreError(f"remote {self.remote.name}: object {id} is missing ({self.remote.object_path(id)})")

    def _refused(self, id: str, exc: StoreError) -> StoreError:
        return StoreError(f"remote {self.remote.name}: refused object {id}: {exc}")

    def _download(self, id: str) -> str | None:
        """Download object ``id``; verify and install it unless it waits for a delta base (returned)."""
        final = self.dest.path(id)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f"{TMP_PREFIX}fetch-{uuid.uuid4().hex}"
        self.staging.files[id] = tmp
        try:
            self.remote.fs.get_file(self.remote.object_path(id), str(tmp))  # streamed, not held in memory
        except FileNotFoundError:
            raise self._missing(id) from None
        try:
            deps = self.staging.dependencies(id)
        except StoreError as exc:
            self._discard(id)
            raise self._refused(id, exc) from None
        if deps and not self.dest.has(deps[0]):
            return deps[0]
        return self._verify_and_install(id)

    def _verify_and_install(self, id: str) -> None:
        """Re-hash the staged object ``id`` (a delta decodes against its installed base), then install it."""
        try:
            self.staging.get_payload(id, verify=True)
        except StoreError as exc:
            self._discard(id)
            raise self._refused(id, exc) from None
        tmp, final = self.staging.files[id], self.dest.path(id)
        size = tmp.stat().st_size
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o444)
        os.replace(tmp, final)  # an existing copy (a concurrent fetch) is the same bytes
        del self.staging.files[id]
        fsync_dir(final.parent)
        with self._count:
            self.got.append(id)
            self.bytes += size
        if self._progress is not None:
            self._progress.advance(size)

    def _discard(self, id: str) -> None:
        tmp = self.staging.files.pop(id, None)
        if tmp is not None:
            tmp.unlink(missing_ok=True)
