"""A repository: an object store, a metadata database and refs, combined.

Layout of ``<repo>/``::

    config.json   {"format": "rewardkit", "version": 2[, "db_url": "..."]}
    HEAD          the current branch, as in git: "ref: refs/heads/main"
    objects/      content-addressed tensors and blobs (see :mod:`rewardkit.store.objects`)
    meta.db       commits, refs, reflog (SQLite unless config.json names another db_url)

Version 1 stored branches under bare names (``main``) and had no ``HEAD``; :meth:`open`
upgrades such a repository in place (refs and reflog renamed to ``refs/heads/...`` in one
transaction, then ``HEAD``, then ``config.json``, each step idempotent).
"""

from __future__ import annotations

import getpass
import os
import shutil
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import torch
from sqlalchemy import or_, update

from rewardkit.errors import RefMovedError, StoreError
from rewardkit.store import db
from rewardkit.store.adapters import is_adapter
from rewardkit.store.atomic import TMP_PREFIX
from rewardkit.store.commits import Commit, CommitStore
from rewardkit.store.config import CONFIG_FILE, read_config, write_config
from rewardkit.store.manifest import Manifest, TensorEntry, check_file_path
from rewardkit.store.modeldir import MAX_SHARD_SIZE, read_model_dir, staged_folder, write_model_dir, write_weights
from rewardkit.store.objects import ObjectStore
from rewardkit.store.refs import ANY, HEAD, HEADS, Refs, check_ref_name, resolve
from rewardkit.store.refverbs import DEFAULT_BRANCH, HEAD_FILE, RefVerbs, write_head

FORMAT = "rewardkit"
FORMAT_VERSION = 2
#: How many times ``retry=True`` re-parents a commit whose branch moved meanwhile.
MAX_RETRIES = 20
DB_FILE = "meta.db"
OBJECTS_DIR = "objects"
DB_FILES = (DB_FILE, f"{DB_FILE}-wal", f"{DB_FILE}-shm", f"{DB_FILE}-journal")
DEFAULT_DIR = ".rewardkit"
ENV_REPO = "REWARDKIT_REPO"


@dataclass(frozen=True)
class RepoStats:
    """What a repository holds.

    Attributes:
        objects: Number of objects (tensors, blobs, manifests); dedup keeps this low.
        bytes: Total size of the object files in bytes.
        commits: Number of commits.
        branches: Number of branches.
    """

    objects: int
    bytes: int
    commits: int
    branches: int


class Repository(RefVerbs):
    """A model repository; get one with :meth:`open`, :meth:`discover` or :meth:`init`."""

    def __init__(self, path: Path, db_url: str) -> None:
        """Combine the parts of the repository at ``path``; use :meth:`open` instead.

        Raises:
            StoreError: If the metadata database is damaged, of a newer schema version
                than this rewardkit reads, or has no tables while ``objects/`` holds
                objects (its history was lost).
        """
        self.path = path
        self.objects = ObjectStore(path / OBJECTS_DIR)
        self.engine = db.connect(db_url, create=False)
        try:
            if not db.has_tables(self.engine):
                n = _count_objects(self.objects.root)
                if n:
                    raise StoreError(
                        f"the metadata database {db.shown(self.engine.url)} is empty but "
                        f"{self.objects.root} holds {n} objects: the commit history is lost; restore "
                        f"the database from a backup, or move {OBJECTS_DIR}/ away to start a new repository"
                    )
            db.ensure_schema(self.engine)
        except BaseException:
            self.engine.dispose()
            raise
        self.commits = CommitStore(self.engine)
        self.refs = Refs(self.engine)

    # -- opening -----------------------------------------------------------------------

    @classmethod
    def init(cls, path: str | Path, *, db_url: str | None = None) -> Repository:
        """Create a repository in a new or empty folder, or finish an interrupted ``init``.

        Re-initialising is refused (rather than silently reusing the repository), so a
        mistyped path never passes unnoticed. ``config.json`` is written last and
        atomically, so a folder without it, holding only what an ``init`` creates (an
        empty ``objects/``, ``meta.db``), is an interrupted ``init``: this one finishes it.

        Args:
            path: Folder to create, e.g. ``.rewardkit``.
            db_url: URL of the metadata database, saved in ``config.json``: default
                ``sqlite:///<path>/meta.db``; or ``postgresql://USER@HOST:PORT/DBNAME`` (an
                existing database; its tables are created if it has none). No password in
                it: libpq reads that from ``PGPASSWORD`` or ``~/.pgpass``.

        Raises:
            StoreError: If ``path`` already holds a repository or other files, ``db_url``
                is unsupported or holds a password, or its database cannot be reached.
        """
        path = Path(path)
        if db_url is not None:
            db.check_saved_url(db_url)
        if (path / CONFIG_FILE).is_file():
            raise StoreError(f"a rewardkit repository already exists at {path}; use it as is")
        if path.exists() and not path.is_dir():
            raise StoreError(f"cannot create a repository at {path}: it is a file")
        if path.is_dir() and not _is_unfinished_init(path):
            raise StoreError(
                f"cannot create a repository at {path}: it exists and is not an empty folder"
            )
        if db_url is None:  # an interrupted init's database holds nothing worth keeping
            for name in DB_FILES:
                (path / name).unlink(missing_ok=True)
        for leftover in path.glob(f"{TMP_PREFIX}*") if path.is_dir() else ():  # of the interrupted init
            leftover.unlink(missing_ok=True)
        new_folder = not path.exists()
        (path / OBJECTS_DIR).mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {"format": FORMAT, "version": FORMAT_VERSION}
        if db_url is not None:
            config["db_url"] = db_url
        try:
            repo = cls(path, db_url or db.sqlite_url(path / DB_FILE))
        except BaseException:
            if new_folder:  # e.g. the database server is unreachable: leave no half-made folder behind
                shutil.rmtree(path, ignore_errors=True)
            raise
        try:
            write_head(path, DEFAULT_BRANCH)
            write_config(path, config)
        except BaseException:
            repo.close()
            raise
        return repo

    @classmethod
    def open(cls, path: str | Path, *, db_url: str | None = None) -> Repository:
        """Open the repository at ``path``.

        Args:
            path: The repository folder (the one holding ``config.json``).
            db_url: Override the metadata database URL from ``config.json``.

        Raises:
            StoreError: If there is no repository at ``path`` (or only an interrupted
                ``init``), it is of a newer format, or its metadata database is lost,
                empty or damaged while ``objects/`` holds objects.
        """
        path = Path(path)
        try:
            config = read_config(path)
        except FileNotFoundError:
            if path.is_dir() and _is_unfinished_init(path) and any(path.iterdir()):
                raise StoreError(
                    f"{path} holds an unfinished repository (an interrupted `rewardkit init`); "
                    f"run `rewardkit init {path}` again to finish it"
                ) from None
            raise StoreError(f"no rewardkit repository at {path}; run `rewardkit init`") from None
        if config.get("format") != FORMAT or config.get("version", 0) > FORMAT_VERSION:
            raise StoreError(
                f"{path} is a repository of format {config.get('format')!r} version "
                f"{config.get('version')}; this rewardkit reads {FORMAT!r} up to version "
                f"{FORMAT_VERSION}, upgrade rewardkit"
            )
        url = db_url or config.get("db_url")
        if url is None and not (path / DB_FILE).is_file():
            n = _count_objects(path / OBJECTS_DIR)
            if n:
                raise StoreError(
                    f"{path / DB_FILE} is missing but {path / OBJECTS_DIR} holds {n} objects: the "
                    f"commit history is lost; restore {DB_FILE} from a backup, or move "
                    f"{OBJECTS_DIR}/ away to start a new repository"
                )
        repo = cls(path, url or db.sqlite_url(path / DB_FILE))
        if config.get("version", 1) < FORMAT_VERSION:
            try:
                repo._upgrade_from_v1(config)
            except BaseException:
                repo.close()
                raise
        return repo

    def _upgrade_from_v1(self, config: dict[str, Any]) -> None:
        """Rename bare branch names to ``refs/heads/...``, write ``HEAD``, then ``config.json``."""
        from rewardkit.store.db import reflog_table, refs_table

        with db.transaction(self.engine) as conn:
            for table, column in ((refs_table, refs_table.c.name), (reflog_table, reflog_table.c.ref)):
                conn.execute(update(table).where(~or_(column.startswith("refs/"), column == HEAD))
                             .values({column.name: HEADS + column}))
        if not (self.path / HEAD_FILE).is_file():
            write_head(self.path, DEFAULT_BRANCH)
        write_config(self.path, config | {"version": FORMAT_VERSION})

    @classmethod
    def discover(cls, path: str | Path | None = None) -> Repository:
        """Open the repository at ``path``, else ``$REWARDKIT_REPO``, else ``./.rewardkit``."""
        return cls.open(path or os.environ.get(ENV_REPO) or DEFAULT_DIR)

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    def __enter__(self) -> Repository:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- writing -----------------------------------------------------------------------

    def commit_tensors(
        self,
        tensors: Mapping[str, torch.Tensor],
        files: dict[str, bytes],
        message: str,
        *,
        author: str | None = None,
        params: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
        data_fingerprint: str | None = None,
        backbone: str | None = None,
        branch: str | None = None,
        verify_existing: bool = False,
        extra_objects: Sequence[bytes | torch.Tensor] = (),
        retry: bool = False,
        move_branch: bool = True,
    ) -> Commit:
        """Commit a model given as tensors and files, and move ``branch`` to it.

        Inputs are validated before anything is written (each tensor as it is stored, one
        at a time, so ``tensors`` may load lazily). Only objects the store lacks are
        written, so a commit that changes one tensor writes one tensor object (plus the
        manifest); a changed tensor may be stored as a compressed delta against the
        parent's tensor of the same name (see :mod:`rewardkit.store.objects`). An object
        already stored is reused only once checked: its size always, its bytes when it is
        small (at most 1 MiB) or ``verify_existing`` is set; a damaged one is rewritten from
        the committed tensors. The branch moves by compare-and-swap
        from the head read here.

        A refused or failed commit leaves the repository as it was: if anything fails
        after the first object is written (the branch moved meanwhile, a database or disk
        error, an interrupt, ``SIGTERM``), the commit row and branch move are rolled back
        together, the objects this call created are deleted, and the error is re-raised. Objects that were
        already stored (shared with other commits by dedup) are kept. Commits in other
        processes wait while this one writes objects, so none can start using an object
        this call may still delete.

        Args:
            tensors: Tensor name (as in ``model.safetensors``) -> tensor, any device; read
                once each, in order.
            files: Relative POSIX path -> content, e.g. ``{"config.json": b"{...}"}``.
            message: What changed.
            author: Who committed; default the login name.
            params: Training parameters (JSON values).
            metrics: Evaluation results (JSON values, finite numbers).
            data_fingerprint: Fingerprint of the training data.
            backbone: Pretrained backbone name, e.g. ``"bert-base-uncased"``.
            branch: Branch to commit on (default: the current branch, ``HEAD``); created
                (as a root commit) if it does not exist.
            verify_existing: Compare every already-stored object with the committed bytes
                before reusing it, not only the small ones.
            extra_objects: Objects the commit refers to besides its model, by ids its
                ``params`` name (blobs as bytes, tensors): e.g. the probe set of
                ``params["probe"]`` (:mod:`rewardkit.store.probe`). Written with the model's
                objects, and deleted with them if the commit fails.
            retry: If the branch moved while committing, re-parent onto its new head and
                try again (see :meth:`commit_manifest`).
            move_branch: False: a commit on no branch (see :meth:`commit_manifest`).

        Returns:
            The new commit.

        Raises:
            StoreError: If an input is invalid, or the branch moved during the commit.
        """
        branch = check_ref_name(branch or self.current_branch())
        if not tensors:
            raise StoreError("no tensors to commit; pass the model's state_dict()")
        for name in files:
            check_file_path(name)
        author = author or _default_author()
        meta: dict[str, Any] = dict(
            params=params, metrics=metrics, data_fingerprint=data_fingerprint, backbone=backbone
        )
        Commit.create("", [], message, author, **meta)  # validate before writing any object

        with self.objects.undo_on_error():  # a failed commit deletes the objects it wrote
            head = self.refs.get(HEADS + branch)
            manifest = self._store_model(tensors, files, head, verify_existing)
            for extra in extra_objects:  # e.g. the probe set its params name
                if isinstance(extra, torch.Tensor):
                    self.objects.put_tensor(extra, verify_existing=verify_existing)
                else:
                    self.objects.put_blob(extra, verify_existing=verify_existing)
            manifest_id = manifest.store(self.objects)
            self.objects.check_lock()
            return self.commit_manifest(manifest_id, message, branch=branch, expected_head=head,
                                        author=author, retry=retry, move_branch=move_branch, **meta)

    def commit_manifest(
        self,
        manifest_id: str,
        message: str,
        *,
        parents: list[str] | None = None,
        branch: str | None = None,
        expected_head: str | None | object = ANY,
        author: str | None = None,
        params: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
        data_fingerprint: str | None = None,
        backbone: str | None = None,
        retry: bool = False,
        reflog_action: str = "commit",
        move_branch: bool = True,
    ) -> Commit:
        """Write a commit of an already-stored manifest and move ``branch`` to it.

        The low-level step under :meth:`commit_tensors`, merge and revert: the commit row and
        the branch's compare-and-swap happen in one transaction, so either both land or
        neither does.

        Args:
            manifest_id: Id of a stored manifest (and all its objects).
            message: What changed.
            parents: Parent commit ids, first parent first; default ``[head]`` (``[]`` on a
                branch with no commit yet). A merge passes ``[head, other, ...]``.
            branch: Branch to move; default the current branch.
            expected_head: Where the caller read the branch; default: read it here.
            author: Who committed; default the login name.
            params: Training parameters (JSON values).
            metrics: Evaluation results (JSON values, finite numbers).
            data_fingerprint: Fingerprint of the training data.
            backbone: Pretrained backbone name.
            retry: If the branch moved meanwhile (another process committed), re-read it,
                re-parent onto the new head and try again, up to :data:`MAX_RETRIES` times.
                Only for a commit whose parents are the default (a merge's parents are a
                decision, not a detail).
            reflog_action: First word of the reflog message, e.g. ``"merge"``.
            move_branch: False: store the commit on no branch (parents default to none), for a
                commit only another one refers to, e.g. the base an adapter commit names in
                its lineage; gc keeps it while that commit is reachable.

        Raises:
            StoreError: If the branch moved (and ``retry`` is off or exhausted), or a field is
                invalid.
        """
        branch = check_ref_name(branch or self.current_branch())
        if retry and parents is not None:
            raise StoreError("retry re-parents a commit; it cannot be used with explicit parents")
        author = author or _default_author()
        meta: dict[str, Any] = dict(params=params, metrics=metrics, data_fingerprint=data_fingerprint,
                                    backbone=backbone)
        summary = message.strip().splitlines()[0] if message.strip() else ""
        if not move_branch:
            commit = Commit.create(manifest_id, parents or [], message, author, **meta)
            self.commits.add(commit)
            return commit
        for attempt in range(MAX_RETRIES + 1):
            head = self.refs.get(HEADS + branch) if expected_head is ANY else expected_head
            commit = Commit.create(manifest_id, parents if parents is not None else [head] if head else [],
                                   message, author, **meta)
            try:
                with db.transaction(self.engine) as conn:
                    self.commits.add(commit, conn)
                    self.refs.set_ref(HEADS + branch, commit.id, head, f"{reflog_action}: {summary}", conn)
                return commit
            except RefMovedError as exc:
                if not retry or attempt == MAX_RETRIES:
                    hint = f"after {attempt} retries" if retry else "pass --retry (retry=True) to commit on top of it"
                    raise RefMovedError(f"{exc}; nothing was committed: {hint}") from exc
                expected_head = ANY
        raise AssertionError("unreachable")  # pragma: no cover

    def _store_model(
        self, tensors: Mapping[str, torch.Tensor], files: dict[str, bytes], head: str | None, verify_existing: bool
    ) -> Manifest:
        """Store a model's tensors one at a time, and its files; return its manifest (not stored).

        Each tensor is offered the same-named tensor of commit ``head`` as its delta base
        (see :meth:`ObjectStore.put_tensor`), so a fine-tune costs what its changes cost.
        Call inside :meth:`ObjectStore.undo_on_error`: a bad tensor raises after others
        were stored.

        Raises:
            StoreError: If a value is not a tensor or has a dtype the store cannot hold.
        """
        parent: dict[str, TensorEntry] = {}
        if head:
            with suppress(StoreError):  # a damaged parent only costs the delta candidates
                parent = Manifest.from_bytes(
                    self.objects.get_bytes(self.commits.get(head).manifest_id, verify=True)
                ).tensors
        entries = {}
        for name, tensor in tensors.items():
            if not isinstance(tensor, torch.Tensor):
                raise StoreError(f"tensor {name!r} is a {type(tensor).__name__}, not a torch.Tensor")
            base = parent[name].id if name in parent else None
            ref = self.objects.put_tensor(tensor, verify_existing=verify_existing, delta_base=base)
            entries[name] = TensorEntry.from_ref(ref)
            del tensor
        put_blob = self.objects.put_blob
        return Manifest(
            tensors=entries,
            files={n: put_blob(data, verify_existing=verify_existing) for n, data in files.items()},
        )

    def commit_dir(
        self,
        model_dir: str | Path,
        message: str,
        *,
        author: str | None = None,
        params: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
        data_fingerprint: str | None = None,
        backbone: str | None = None,
        branch: str | None = None,
        verify_existing: bool = False,
        extra_objects: Sequence[bytes | torch.Tensor] = (),
        retry: bool = False,
        move_branch: bool = True,
    ) -> Commit:
        """Commit a model folder (``model.safetensors`` or shards + other files) on ``branch``.

        See :meth:`commit_tensors` for the arguments; ``model_dir`` is the folder
        ``save_pretrained`` wrote. Its weights headers are checked before anything is
        written, then its tensors are read and stored one at a time (memory: about a few
        times the largest tensor, never the whole model).

        Raises:
            ModelError: If the folder is missing, lacks weights, or they are damaged.
            StoreError: As :meth:`commit_tensors`.
        """
        tensors, files = read_model_dir(model_dir)
        return self.commit_tensors(
            tensors,
            files,
            message,
            author=author,
            params=params,
            metrics=metrics,
            data_fingerprint=data_fingerprint,
            backbone=backbone,
            branch=branch,
            verify_existing=verify_existing,
            extra_objects=extra_objects,
            retry=retry,
            move_branch=move_branch,
        )

    # -- reading -----------------------------------------------------------------------

    def resolve(self, ref: str) -> Commit:
        """Return the commit ``ref`` names (``HEAD``, a branch, tag, alias or id, with ``~N``/``^N``).

        See :func:`rewardkit.store.refs.resolve` for the syntax.

        Raises:
            RefError: If ``ref`` does not name exactly one commit.
        """
        return self.commits.get(resolve(ref, self.refs, self.commits, HEADS + self.current_branch()))

    def show(self, ref: str) -> Commit:
        """Return the commit ``ref`` names (same as :meth:`resolve`; see :meth:`manifest`)."""
        return self.resolve(ref)

    def log(self, ref: str = HEAD, limit: int | None = None, *, all: bool = False) -> list[Commit]:  # noqa: A002
        """Return the history of ``ref`` (or of every ref), newest first, at most ``limit`` commits.

        Every parent of a merge is followed, in topological order (children before parents),
        as ``git log --topo-order`` shows them.

        Args:
            ref: Where to start.
            limit: Show at most this many.
            all: Start from every branch, tag, alias and remote-tracking branch instead (``git log --all``).

        Raises:
            RefError: If ``ref`` does not name exactly one commit.
        """
        starts = list(self.refs.as_dict().values()) if all else [self.resolve(ref).id]
        return self.commits.walk(starts)[:limit]

    def walk(self, ids: list[str], *, lineage: bool = False) -> list[Commit]:
        """Return every commit reachable from ``ids``, newest first (see :meth:`CommitStore.walk`)."""
        return self.commits.walk(ids, lineage=lineage)

    def manifest(self, commit: Commit | str) -> Manifest:
        """Return the manifest of a commit (or of the commit a ref names), verified.

        Raises:
            StoreError: If the manifest or an object it lists is missing, corrupt or does
                not match it (see :meth:`Manifest.load`).
            RefError: If a ref does not name exactly one commit.
        """
        if isinstance(commit, str):
            commit = self.resolve(commit)
        return Manifest.load(self.objects, commit.manifest_id)

    def load_tensors(self, ref: str, *, verify: bool = True) -> dict[str, torch.Tensor]:
        """Return the tensors of the commit ``ref`` names, by name (CPU, stored dtype).

        Args:
            ref: Branch, ``branch~N``, commit id or prefix.
            verify: Re-hash every object read (SHA-256, roughly 1 GB/s) and raise if corrupt.
        """
        return self._tensors(self.manifest(ref), verify)

    def checkout(
        self,
        ref: str | Commit,
        to: str | Path,
        *,
        force: bool = False,
        verify: bool = True,
        weights: bool = True,
        max_shard_size: int | str = MAX_SHARD_SIZE,
    ) -> Path:
        """Write the model of ``ref`` as a folder ``from_pretrained`` loads unchanged.

        The weights are written one tensor at a time (memory: about a few times the
        largest tensor), bit-identical to the committed tensors.

        Args:
            ref: Branch, ``branch~N``, commit id or prefix, or a commit.
            to: Target folder; created if missing. Everything is written into a temporary
                folder beside it first, so a failed checkout leaves it as it was.
            force: Write into a non-empty folder, overwriting files with the same names.
            verify: Re-hash every object read and raise if corrupt.
            weights: Write the weights; ``False`` writes only the small files (config,
                tokenizer), for a caller that reads the tensors with :meth:`load_tensors`
                instead.
            max_shard_size: Above this many bytes of tensors (or a size such as ``"5GB"``),
                write shards and ``model.safetensors.index.json`` as ``save_pretrained``
                does, instead of one ``model.safetensors``.

        Returns:
            The target folder.

        Raises:
            StoreError: If ``to`` is a non-empty folder and ``force`` is False, an object is
                missing or corrupt, or the commit is a LoRA adapter (see
                :func:`rewardkit.api.checkout`).
            RefError: If ``ref`` does not name exactly one commit.
        """
        commit = ref if isinstance(ref, Commit) else self.resolve(ref)
        if is_adapter(commit):
            raise StoreError(f"commit {commit.id[:10]} is a LoRA adapter: check it out with `rewardkit checkout` "
                             "or rewardkit.api.checkout (the adapter folder with its base, or --merged)")
        manifest = self.manifest(commit)
        with staged_folder(to, force=force) as stage:  # a failed checkout leaves `to` as it was
            files = {n: self.objects.get_bytes(i, verify=verify) for n, i in manifest.files.items()}
            write_model_dir(stage, None, files)
            if weights:
                entries = manifest.tensors
                read = lambda name: self.objects.get_payload(entries[name].id, verify=verify)  # noqa: E731
                write_weights(stage, entries, read, max_shard_size=max_shard_size)
        return Path(to)

    def stats(self) -> RepoStats:
        """Return counts of objects (and their bytes), commits and branches."""
        objects = self.objects.stats()
        return RepoStats(
            objects=objects.objects,
            bytes=objects.bytes,
            commits=self.commits.count(),
            branches=len(self.branches()),
        )

    def _tensors(self, manifest: Manifest, verify: bool) -> dict[str, torch.Tensor]:
        return {
            name: self.objects.get_tensor(entry.id, verify=verify)
            for name, entry in manifest.tensors.items()
        }


def _count_objects(folder: Path) -> int:
    return sum(1 for _ in ObjectStore(folder).ids())


def _is_unfinished_init(path: Path) -> bool:
    """True if ``path`` holds only what an interrupted ``init`` leaves, and no object."""
    allowed = {OBJECTS_DIR, HEAD_FILE, *DB_FILES}
    only_init = all(p.name in allowed or p.name.startswith(TMP_PREFIX) for p in path.iterdir())
    return only_init and _count_objects(path / OBJECTS_DIR) == 0


def _default_author() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name (e.g. some containers)
        return "unknown"
