"""``fsck --remote``: every remote ref's commits and objects are there and hash right.

For every branch on the remote: its ref file names a commit id; every commit reachable from
it (through parents and lineage) has its commit file, hashing to its id; every object those
commits use (manifest, probe set, tensors, files, delta bases) is present and re-hashes to
its id. Objects are downloaded into a temporary store and checked exactly as a local store
checks itself. What an interrupted push leaves behind (objects and commits no ref names,
``.tmp-*`` files of a directory remote) is noted, never a problem: the next push reuses it.
"""

from __future__ import annotations

import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rewardkit.errors import StoreError
from rewardkit.store.commits import Commit
from rewardkit.store.remote.location import Remote
from rewardkit.store.remote.transfer import DEFAULT_JOBS, FlatStore, Receiver, manifest_objects


@dataclass(frozen=True)
class RemoteFsckReport:
    """What :func:`fsck_remote` found.

    Attributes:
        url: The remote's URL.
        refs: Branch -> commit id of every readable remote branch.
        commits: Commits checked (reachable from the branches).
        objects: Objects checked.
        problems: One line per problem, naming the ref, commit or object.
        notes: Harmless findings (leftovers of interrupted pushes).
    """

    url: str
    refs: dict[str, str] = field(default_factory=dict)
    commits: int = 0
    objects: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True if no problem was found."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, with ``ok``."""
        return {**asdict(self), "ok": self.ok}


def fsck_remote(remote: Remote, *, jobs: int = DEFAULT_JOBS) -> RemoteFsckReport:
    """Check every remote branch, its commits and their objects (see the module docstring).

    Args:
        remote: The remote to check.
        jobs: Objects downloaded at once.

    Returns:
        The report; ``ok`` is False if a ref, commit or object is damaged or missing.

    Raises:
        StoreError: If the remote cannot be reached (one line).
    """
    problems: list[str] = []
    with remote.io("fsck"):
        refs: dict[str, str] = {}
        for name in remote.branch_names():
            try:
                id = remote.branch(name)
            except StoreError as exc:
                problems.append(f"ref {name}: {exc}")
                continue
            if id is not None:
                refs[name] = id
        commits = _reachable(remote, refs, problems, jobs)
        listing = remote.list()
        with tempfile.TemporaryDirectory(prefix="rewardkit-fsck-") as tmp:
            store = FlatStore(Path(tmp), compress=False)
            with Receiver(store, remote, jobs, problems, listing) as receiver:
                receiver.get(id for c in commits.values() for id in c.object_ids())
                readable = [c for c in commits.values() if store.has(c.manifest_id)]
                receiver.get(manifest_objects(store, readable))
            checked = set(receiver.got)
            used = receiver.asked | checked  # checked: delta bases too
    notes = []
    if listing.temp_files:
        example = listing.temp_files[0]
        notes.append(f"{len(listing.temp_files)} temp file(s) of an interrupted push (harmless), e.g. {example}")
    unused = len(listing.objects.keys() - used)
    if unused:
        notes.append(f"{unused} object(s) no remote branch uses (an interrupted push's? the next push reuses them)")
    loose = len(listing.commits - commits.keys())
    if loose:
        notes.append(f"{loose} commit file(s) no remote branch reaches (e.g. an interrupted push's)")
    return RemoteFsckReport(remote.url, refs, len(commits), len(checked), problems, notes)


def _reachable(remote: Remote, refs: dict[str, str], problems: list[str], jobs: int) -> dict[str, Commit]:
    """Return the readable commits reachable from ``refs``, read a generation at a time through a pool.

    A missing or corrupt commit is a problem (named with a branch that reaches it).
    """
    found: dict[str, Commit] = {}
    via = {id: name for name, id in reversed(refs.items())}  # commit -> a branch that reaches it
    frontier = set(via)

    def read(id: str) -> Commit | StoreError:
        try:
            return remote.get_commit(id)
        except StoreError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="rewardkit-fsck") as pool:
        while frontier:
            ids = sorted(frontier)
            frontier = set()
            for id, got in zip(ids, pool.map(read, ids), strict=True):
                if isinstance(got, StoreError):
                    problems.append(f"branch {via[id]}: {got}")
                    continue
                found[id] = got
                for p in (*got.parents, *got.base_commits()):
                    if p not in found and p not in via:
                        via[p] = via[id]
                        frontier.add(p)
    return found
