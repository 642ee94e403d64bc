"""Check a repository: every object, manifest, commit, ref and reflog entry (``rewardkit fsck``).

What is checked, and what counts as wrong (an *error*; ``rewardkit fsck`` exits 1):

* every object is re-hashed through :meth:`ObjectStore.get_bytes` (``verify=True``); one
  that does not hash to its id, or has a bad header or size, is **corrupt**; an object
  another object needs (:meth:`ObjectStore.dependencies`, a delta base) is **missing** if absent;
* every commit hashes to its id (:func:`~rewardkit.store.commits.commit_id`), its parents
  and lineage bases (:meth:`Commit.base_commits`: adapter, init-from) exist, and every object it refers to
  (:meth:`Commit.object_ids`, the manifest's tensors and files) exists; every manifest
  loads (:meth:`Manifest.load`: structure, dtypes, shapes);
* every ref (branch, tag, alias) and every reflog entry's old and new commit exists;
* the metadata database can be read (and on SQLite passes ``PRAGMA quick_check``);
* ``.tmp-*`` files older than :data:`~rewardkit.store.objects.TMP_GRACE_S` are leftovers of
  a killed writer (``rewardkit gc`` removes them).

Information only (not wrong): **dangling** commits and objects, which no ref, tag, alias or
reflog entry reaches (a killed commit's objects; what ``rewardkit gc`` collects), young
``.tmp-*`` files (a write in progress, or a killed one that the next write or gc removes), and
in a partial clone (:mod:`rewardkit.store.remote.partial`) commits whose manifest was never
fetched: **not fetched (partial clone)**.
fsck reads and never writes.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from rewardkit.errors import StoreError
from rewardkit.store.commits import Commit, commit_id
from rewardkit.store.gc import temp_files, used_objects
from rewardkit.store.graph import closure
from rewardkit.store.manifest import Manifest
from rewardkit.store.objects import TMP_GRACE_S, ObjectStore
from rewardkit.store.repository import CONFIG_FILE, OBJECTS_DIR, Repository

Problem = Literal["missing", "corrupt", "dangling", "leftover", "damaged", "not fetched"]
Item = Literal["object", "manifest", "commit", "ref", "reflog", "temp file", "database"]


@dataclass(frozen=True)
class Finding:
    """One thing fsck found.

    Attributes:
        problem: ``"missing"``, ``"corrupt"``, ``"damaged"`` (database), ``"leftover"``
            (temp file), ``"dangling"`` or ``"not fetched"`` (a partial clone's commit whose
            model was never fetched: information).
        item: What kind of thing: ``"object"``, ``"manifest"``, ``"commit"``, ``"ref"``,
            ``"reflog"``, ``"temp file"`` or ``"database"``.
        name: Its name: object or commit id, full ref name, file path.
        detail: One line naming the item: what is wrong, and what refers to it.
        error: True if the repository is wrong; False for information (dangling items,
            young temp files).
    """

    problem: Problem
    item: Item
    name: str
    detail: str
    error: bool = True


@dataclass(frozen=True)
class FsckReport:
    """What :func:`fsck` checked and found.

    Attributes:
        path: The repository folder.
        objects: Number of objects re-hashed.
        commits: Number of commits checked.
        refs: Number of refs (branches, tags, aliases) checked.
        reflog_entries: Number of reflog entries checked.
        findings: Everything found, errors first.
    """

    path: str
    objects: int = 0
    commits: int = 0
    refs: int = 0
    reflog_entries: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        """The findings that make the repository wrong."""
        return [f for f in self.findings if f.error]

    @property
    def ok(self) -> bool:
        """True if nothing is wrong (dangling items and young temp files are allowed)."""
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, with ``ok``."""
        return asdict(self) | {"ok": self.ok}


def fsck(repo: Repository | str | Path) -> FsckReport:
    """Check every object, manifest, commit, ref and reflog entry of a repository.

    Args:
        repo: An open repository, or the folder of one. Given a folder, a metadata
            database that cannot be opened (lost, truncated, damaged) is reported as a
            finding and the objects are still checked.

    Returns:
        The report; ``report.ok`` is False when anything is wrong.

    Raises:
        StoreError: If ``repo`` is a folder that holds no repository (no ``config.json``).
    """
    if isinstance(repo, Repository):
        return _Checker(repo.path, repo).run()
    path = Path(repo)
    try:
        opened = Repository.open(path)
    except StoreError as exc:
        if not (path / CONFIG_FILE).is_file():
            raise
        return _Checker(path, None, str(exc)).run()
    with opened:
        return _Checker(path, opened).run()


class _Checker:
    """One fsck run: collects findings in the order the checks run."""

    def __init__(self, path: Path, repo: Repository | None, db_error: str | None = None) -> None:
        self.path = path
        self.repo = repo
        self.objects = repo.objects if repo is not None else ObjectStore(path / OBJECTS_DIR)
        self.db_error = db_error
        self.findings: list[Finding] = []
        self.counts = {"objects": 0, "commits": 0, "refs": 0, "reflog_entries": 0}
        self.present: set[str] = set()
        self.corrupt: dict[str, int] = {}  # corrupt object id -> index of its finding, until a user is named
        self.reported_missing: set[str] = set()
        self.partial = _is_partial_clone(path)

    def add(self, problem: Problem, item: Item, name: str, detail: str, error: bool = True) -> None:
        self.findings.append(Finding(problem, item, name, detail, error))

    def run(self) -> FsckReport:
        self.check_objects()
        self.check_temp_files()
        if self.repo is None:
            self.add("damaged", "database", str(self.path), self.db_error or "cannot open the metadata database")
        else:
            try:
                self.check_history(self.repo)
            except StoreError as exc:  # the database broke mid-way: say so, keep what was found
                self.add("damaged", "database", str(self.path), str(exc))
        findings = sorted(self.findings, key=lambda f: not f.error)  # stable: errors first, in check order
        return FsckReport(path=str(self.path), findings=findings, **self.counts)

    # -- objects ---------------------------------------------------------------------------

    def check_objects(self) -> None:
        """Re-hash every object; check that what each needs is there."""
        self.present = set(self.objects.ids())
        for id in sorted(self.present):
            self.counts["objects"] += 1
            try:
                self.objects.get_bytes(id, verify=True)
            except StoreError as exc:
                self.corrupt[id] = len(self.findings)
                self.add("corrupt", "object", id, str(exc))
                continue
            for needed in self.objects.dependencies(id):
                self.need_object(needed, f"needed by object {id}")

    def need_object(self, id: str, used_by: str) -> None:
        """Report object ``id`` once if it is missing; name the first user of a corrupt one."""
        index = self.corrupt.get(id)
        if index is not None and index >= 0:
            finding = self.findings[index]
            self.findings[index] = replace(finding, detail=f"{finding.detail} (it is the {used_by})")
            self.corrupt[id] = -1
        if id not in self.present and id not in self.reported_missing:
            self.reported_missing.add(id)
            self.add("missing", "object", id, f"object {id} is missing ({used_by})")

    def check_temp_files(self) -> None:
        """Report ``.tmp-*`` files: old ones are leftovers (errors), young ones information."""
        cutoff = time.time() - TMP_GRACE_S
        for tmp in temp_files(self.path, self.objects):
            try:
                old = tmp.stat().st_mtime < cutoff
            except FileNotFoundError:  # renamed into place meanwhile
                continue
            name = str(tmp.relative_to(self.path))
            if old:
                detail = f"temp file {name} was left by a killed writer; `rewardkit gc` removes it"
            else:
                detail = (f"temp file {name} is younger than {TMP_GRACE_S:.0f} s: a write in progress, or a killed "
                          "one's, which the next write or `rewardkit gc` removes (information, not an error)")
            self.add("leftover", "temp file", name, detail, error=old)

    # -- history ---------------------------------------------------------------------------

    def check_history(self, repo: Repository) -> None:
        """Check the database, every commit, ref and reflog entry, and what they reach."""
        self.check_database(repo)
        commits = {c.id: c for c in repo.commits.all()}
        self.counts["commits"] = len(commits)
        for c in commits.values():
            if commit_id(c.fields()) != c.id:
                self.add("corrupt", "commit", c.id, f"commit {c.id} does not hash to its id: its row was edited")
            for parent in c.parents:
                if parent not in commits:
                    self.add("missing", "commit", parent, f"commit {parent} is missing (parent of {c.id})")
            for base in c.base_commits():
                if base not in commits:
                    self.add("missing", "commit", base, f"commit {base} is missing (lineage base of {c.id})")
        roots = self.check_refs(repo, commits)
        checked_manifests: set[str] = set()
        for c in commits.values():
            self.check_commit_objects(c, checked_manifests)
        reachable = _reachable(commits, roots)
        for id in sorted(commits.keys() - reachable):
            self.add("dangling", "commit", id, f"dangling commit {id}: no ref, tag, alias or reflog entry reaches it; "
                     "`rewardkit gc` removes it (information, not an error)", error=False)
        intact = self.present - self.corrupt.keys()
        used = used_objects(self.objects, (commits[id] for id in reachable), intact=intact)
        for id in sorted(intact - used):
            self.add("dangling", "object", id,
                     f"dangling object {id}: no reachable commit uses it (e.g. a killed commit's); `rewardkit gc` "
                     "removes it after the grace period (information, not an error)", error=False)

    def check_database(self, repo: Repository) -> None:
        """On SQLite, run ``PRAGMA quick_check`` (pages, indexes) and report what it says."""
        if repo.engine.dialect.name != "sqlite":
            return
        with repo.engine.connect() as conn:
            rows = [str(r) for r in conn.exec_driver_sql("PRAGMA quick_check").scalars()]
        if rows != ["ok"]:
            shown = "; ".join(rows[:5]) + ("; …" if len(rows) > 5 else "")
            self.add("damaged", "database", repo.engine.url.database or "meta.db",
                     f"the metadata database fails SQLite's quick_check: {shown}; restore it from a backup")

    def check_refs(self, repo: Repository, commits: dict[str, Commit]) -> set[str]:
        """Check every ref and reflog entry; return the commit ids they name (the roots)."""
        roots: set[str] = set()
        refs = repo.all_refs()
        self.counts["refs"] = len(refs)
        for name, id in refs.items():
            roots.add(id)
            if id not in commits:
                self.add("missing", "ref", name, f"ref {name} points to commit {id}, which is missing")
        try:
            repo.current_branch()
        except StoreError as exc:
            self.add("corrupt", "ref", "HEAD", f"HEAD (the current branch): {exc}")
        entries = repo.reflog(None)
        self.counts["reflog_entries"] = len(entries)
        for entry in entries:
            for side, id in (("old", entry.old), ("new", entry.new)):
                if id is None:
                    continue
                roots.add(id)
                if id not in commits:
                    where = f"reflog of {entry.ref} at {entry.time} ({entry.message!r})"
                    self.add("missing", "reflog", entry.ref, f"{where}: {side} commit {id} is missing")
        return roots & commits.keys()

    def check_commit_objects(self, c: Commit, checked_manifests: set[str]) -> None:
        """Check that the objects of commit ``c`` exist and that its manifest loads."""
        if self.partial and c.manifest_id not in self.present:
            self.add("not fetched", "commit", c.id, f"commit {c.id}: not fetched (partial clone): its model stays on "
                     "the remote; `rewardkit fetch` gets it (information, not an error)", error=False)
            return
        for id in c.object_ids():
            self.need_object(id, f"{'manifest' if id == c.manifest_id else 'probe object'} of commit {c.id}")
        manifest_id = c.manifest_id
        if manifest_id in checked_manifests or manifest_id not in self.present or manifest_id in self.corrupt:
            return
        checked_manifests.add(manifest_id)
        try:
            manifest = Manifest.from_bytes(self.objects.get_bytes(manifest_id, verify=True))
        except StoreError as exc:
            self.add("corrupt", "manifest", manifest_id, f"manifest {manifest_id} of commit {c.id}: {exc}")
            return
        listed = [*((e.id, f"tensor {n!r}") for n, e in manifest.tensors.items()),
                  *((i, f"file {n!r}") for n, i in manifest.files.items())]
        for id, what in listed:
            self.need_object(id, f"{what} of manifest {manifest_id}, commit {c.id}")
        if all(id in self.present and id not in self.corrupt for id, _ in listed):
            try:
                Manifest.load(self.objects, manifest_id)  # dtypes, shapes and kinds against the objects
            except StoreError as exc:
                self.add("corrupt", "manifest", manifest_id, str(exc))


def _reachable(commits: dict[str, Commit], roots: Iterable[str]) -> set[str]:
    """Commit ids reachable from ``roots`` through all parents and adapter bases, skipping missing ones.

    fsck walks its own in-memory copy rather than :meth:`Repository.walk`, which stops at
    the first missing parent: a damaged history is exactly what fsck must get through.
    """
    return closure((id for id in roots if id in commits),
                   lambda id: (p for p in [*commits[id].parents, *commits[id].base_commits()] if p in commits))


def _is_partial_clone(path: Path) -> bool:
    from rewardkit.store.remote.partial import partial_clone  # fsspec: only needed here

    try:
        return partial_clone(path) is not None
    except StoreError:  # an unreadable config.json is reported by the checks that need it
        return False
