"""The ref verbs of a repository: branches, ``switch``, tags, aliases with gates, reset, revert, reflog.

:class:`RefVerbs` is mixed into :class:`~rewardkit.store.repository.Repository`; it owns
``HEAD`` (the current branch, a file in the repository as in git) and every user-facing
ref move. Each move is one :meth:`~rewardkit.store.refs.Refs.set_ref` compare-and-swap,
written to the reflog, so ``rewardkit reflog`` shows where every ref has been and nothing
committed is lost by any of these verbs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from rewardkit.errors import RefError, StoreError
from rewardkit.store.atomic import write_atomically
from rewardkit.store.gates import check_gates
from rewardkit.store.manifest import Manifest
from rewardkit.store.refs import (
    ALIASES,
    HEAD,
    HEADS,
    REMOTES,
    TAGS,
    ReflogEntry,
    Refs,
    check_ref_name,
    full_name,
    kind_of,
    short_name,
)

if TYPE_CHECKING:
    from rewardkit.store.commits import Commit, CommitStore
    from rewardkit.store.objects import ObjectStore

HEAD_FILE = "HEAD"
DEFAULT_BRANCH = "main"
V = TypeVar("V")


class RefVerbs:
    """Branches, tags, aliases, reset, revert and reflog, for :class:`Repository`."""

    path: Path
    refs: Refs
    commits: CommitStore
    objects: ObjectStore

    if TYPE_CHECKING:
        def resolve(self, ref: str) -> Commit: ...  # noqa: D102 (Repository's)
        def commit_manifest(self, manifest_id: str, message: str, **kwargs: object) -> Commit: ...  # noqa: D102
        def manifest(self, commit: Commit | str) -> Manifest: ...  # noqa: D102

    def current_branch(self) -> str:
        """Return the short name of the current branch (from ``HEAD``; ``main`` if missing).

        Raises:
            StoreError: If ``HEAD`` is unreadable or names no valid branch.
        """
        try:
            text = (self.path / HEAD_FILE).read_text().strip()
        except FileNotFoundError:
            return DEFAULT_BRANCH
        except (OSError, UnicodeDecodeError) as exc:
            raise StoreError(f"{self.path / HEAD_FILE} is unreadable: {exc}") from exc
        name = text.removeprefix("ref:").strip()
        if not text.startswith("ref:") or not name.startswith(HEADS):
            raise StoreError(
                f"{self.path / HEAD_FILE} is damaged: expected 'ref: refs/heads/<branch>', got {text!r:.80}"
            )
        return check_ref_name(name[len(HEADS):])

    def switch(self, name: str, *, create: bool = False, start: str = HEAD) -> str:
        """Make ``name`` the current branch, which ``commit`` and ``train --commit`` advance.

        Args:
            name: Branch name.
            create: Create the branch at ``start`` first (``git switch -c``).
            start: Where a created branch starts.

        Returns:
            The commit id the branch points to.

        Raises:
            RefError: If the name is invalid, or the branch does not exist (and ``create`` is off).
            StoreError: If ``create`` is set and the branch exists.
        """
        check_ref_name(name)
        if create:
            self.create_branch(name, start)
        target = self.refs.get(HEADS + name)
        if target is None:
            raise RefError(f"no branch named {name!r} (branches: {', '.join(self.branches()) or 'none yet'}); "
                           f"create it with `rewardkit branch {name}` or `rewardkit switch -c {name}`")
        write_head(self.path, name)
        return target

    def branches(self) -> dict[str, str]:
        """Return branch name -> commit id, sorted by name."""
        return {short_name(n): id for n, id in self.refs.as_dict(HEADS).items()}

    def remote_branches(self) -> dict[str, str]:
        """Return remote-tracking branch (``origin/main``) -> commit id, sorted by name."""
        return {short_name(n): id for n, id in self.refs.as_dict(REMOTES).items()}

    def tags(self) -> dict[str, str]:
        """Return tag name -> commit id, sorted by name."""
        return {short_name(n): id for n, id in self.refs.as_dict(TAGS).items()}

    def aliases(self) -> dict[str, str]:
        """Return alias name -> commit id, sorted by name."""
        return {short_name(n): id for n, id in self.refs.as_dict(ALIASES).items()}

    def all_refs(self) -> dict[str, str]:
        """Return full ref name -> commit id for every branch, tag, alias and remote-tracking branch."""
        return self.refs.as_dict()

    def create_branch(self, name: str, start: str = HEAD) -> str:
        """Create branch ``name`` at the commit ``start`` names; return that commit id.

        Raises:
            RefError: If the name is invalid or ``start`` names no commit.
            StoreError: If a branch, tag or alias of that name exists.
        """
        self._check_new_name(name, "branch")
        target = self.resolve(start).id
        self.refs.set_ref(HEADS + name, target, None, f"branch: created from {start}")
        return target

    def delete_branch(self, name: str) -> str:
        """Delete branch ``name``; its moves stay in the reflog, so nothing it reached is lost.

        Returns:
            The commit id it pointed to (``rewardkit branch NAME <id>`` restores it).

        Raises:
            RefError: If there is no such branch.
            StoreError: If it is the current branch.
        """
        old = self._existing(HEADS, name, "branch")
        if name == self.current_branch():
            raise StoreError(f"cannot delete branch {name!r}: it is the current branch; switch to another first")
        self.refs.set_ref(HEADS + name, None, old, "branch: deleted")
        return old

    def create_tag(self, name: str, ref: str = HEAD) -> str:
        """Tag the commit ``ref`` names; tags never move once set. Return the commit id.

        Raises:
            RefError: If the name is invalid or ``ref`` names no commit.
            StoreError: If the tag (or a branch or alias of that name) exists.
        """
        if self.refs.get(TAGS + name) is not None:
            raise StoreError(f"tag {name!r} already exists (at {self.refs.get(TAGS + name)[:10]}); tags never move, "
                             "choose another name")
        self._check_new_name(name, "tag")
        target = self.resolve(ref).id
        self.refs.set_ref(TAGS + name, target, None, f"tag: created at {ref}")
        return target

    def set_alias(self, name: str, ref: str, *, require: list[str] | tuple[str, ...] = ()) -> str:
        """Point alias ``name`` (e.g. ``production``) at the commit ``ref`` names, if it passes its gates.

        The idea of MLflow's registry aliases, with a promotion check: every gate
        (``test/accuracy>=0.60``, see :mod:`rewardkit.store.gates`) must pass on the commit's
        stored metrics. The move is a compare-and-swap from where the alias was read, and is
        written to the reflog with the gates it passed.

        Returns:
            The commit id the alias now points to.

        Raises:
            RefError: If the name is invalid or ``ref`` names no commit.
            StoreError: If a gate is malformed or fails (naming the metric and its value), a
                branch or tag has that name, or the alias moved meanwhile.
        """
        check_ref_name(name, "alias")
        old = self.refs.get(ALIASES + name)
        if old is None:
            self._check_new_name(name, "alias")
        commit = self.resolve(ref)
        gates = check_gates(require, commit.metrics or {}, f"alias {name} -> {commit.id[:10]}")
        passed = f" (gates: {', '.join(map(str, gates))})" if gates else ""
        self.refs.set_ref(ALIASES + name, commit.id, old, f"alias: {ref}{passed}")
        return commit.id

    def remove_alias(self, name: str) -> str:
        """Remove alias ``name``; return the commit id it pointed to.

        Raises:
            RefError: If there is no such alias.
        """
        old = self._existing(ALIASES, name, "alias")
        self.refs.set_ref(ALIASES + name, None, old, "alias: removed")
        return old

    def reset(self, ref: str) -> tuple[str | None, str]:
        """Move the current branch to the commit ``ref`` names (``git reset``); return (old, new).

        The old position stays in the reflog (``rewardkit reflog``), so nothing is lost.

        Raises:
            RefError: If ``ref`` names no commit.
            StoreError: If the branch moved meanwhile.
        """
        branch = self.current_branch()
        target = self.resolve(ref).id
        old = self.refs.get(HEADS + branch)
        self.refs.set_ref(HEADS + branch, target, old, f"reset: moving to {ref}")
        return old, target

    def revert(self, ref: str = HEAD, message: str | None = None, *, author: str | None = None) -> Commit:
        """Commit, on the current branch, a model that undoes what the commit ``ref`` changed (``git revert``).

        Three-way, tensor by tensor and file by file (no tensor is read or written): where
        ``ref`` changed an entry and the current head still holds ``ref``'s version, the
        parent's version comes back (an added entry goes away, a removed one returns); entries
        ``ref`` did not change keep the head's version. Reverting the head itself therefore
        restores its parent's model exactly, and then the parent's params and metrics, which
        describe that model, are copied; otherwise the new commit has no metrics (evaluate it).
        ``params["revert"]`` records what was reverted; the reverted commit stays reachable.

        Raises:
            RefError: If ``ref`` names no commit.
            StoreError: If the commit has no parent (a root commit), is a merge, the head has
                changed an entry since ``ref`` changed it (a conflict: the message names
                them), or the branch moved.
        """
        reverted = self.resolve(ref)
        if reverted.parent is None:
            raise StoreError(f"cannot revert {reverted.id[:10]}: it is a root commit, there is no earlier model")
        if len(reverted.parents) > 1:
            raise StoreError(f"cannot revert {reverted.id[:10]}: it is a merge; `rewardkit reset` to one of its "
                             "parents instead")
        restored = self.commits.get(reverted.parent)
        head = self.resolve(HEAD)
        mine, theirs, now = (self.manifest(c) for c in (reverted, restored, head))
        tensors, conflicts = _three_way(now.tensors, mine.tensors, theirs.tensors)
        files, file_conflicts = _three_way(now.files, mine.files, theirs.files)
        if conflicts or file_conflicts:
            names = [*conflicts, *file_conflicts]
            raise StoreError(
                f"cannot revert {reverted.id[:10]}: HEAD changed {len(names)} of the entries it changed since "
                f"({', '.join(names[:5])}{', …' if len(names) > 5 else ''}); `rewardkit reset` or commit by hand"
            )
        manifest_id = Manifest(tensors=tensors, files=files).store(self.objects)
        summary = reverted.message.strip().splitlines()[0]
        record = {"revert": {"reverted": reverted.id, "restored": restored.id}}
        exact = manifest_id == restored.manifest_id
        return self.commit_manifest(
            manifest_id, message or f'Revert "{summary}"\n\nThis reverts commit {reverted.id}.', author=author,
            params=(dict(restored.params or {}) if exact else {}) | record,
            metrics=restored.metrics if exact else None,
            data_fingerprint=restored.data_fingerprint if exact else None,
            backbone=(restored if exact else head).backbone, reflog_action="revert",
        )

    def reflog(self, ref: str | None = None) -> list[ReflogEntry]:
        """Return the moves of ``ref`` (a branch, tag or alias name, or a full name), oldest first.

        With None, every ref's moves, deleted refs included.

        Raises:
            RefError: If ``ref`` names no ref that exists or ever existed.
        """
        if ref is None:
            return self.refs.reflog()
        name = full_name(ref, self.refs, HEADS + self.current_branch())
        if name is None:  # a deleted ref still has its reflog
            name = next((p + ref for p in (HEADS, TAGS, ALIASES) if self.refs.reflog(p + ref)), None)
        if name is None:
            raise RefError(f"no ref named {ref!r} has ever existed (refs: {', '.join(self.branches()) or 'none'})")
        return self.refs.reflog(name)

    def _existing(self, prefix: str, name: str, kind: str) -> str:
        target = self.refs.get(prefix + check_ref_name(name, kind))
        if target is None:
            known = ", ".join(short_name(n) for n in self.refs.as_dict(prefix)) or "none"
            raise RefError(f"no {kind} named {name!r} ({kind} names: {known})")
        return target

    def _check_new_name(self, name: str, kind: str) -> None:
        check_ref_name(name, kind)
        taken = full_name(name, self.refs)
        if taken is not None:
            raise StoreError(f"cannot create {kind} {name!r}: a {kind_of(taken)} with that name exists")


def write_head(repo: Path, branch: str) -> None:
    """Write ``<repo>/HEAD`` naming ``branch``, atomically."""
    write_atomically(repo / HEAD_FILE, f"ref: {HEADS}{branch}\n")


def _three_way(head: Mapping[str, V], reverted: Mapping[str, V], parent: Mapping[str, V]
               ) -> tuple[dict[str, V], list[str]]:
    """Undo, in ``head``, the change from ``parent`` to ``reverted``; return the result and the conflicts."""
    out = dict(head)
    conflicts = []
    for name in sorted({*reverted, *parent}):
        was, made, now = parent.get(name), reverted.get(name), head.get(name)
        if was == made or now == was:
            continue  # not changed by the reverted commit, or already undone
        if now != made:
            conflicts.append(name)
        elif was is None:
            del out[name]
        else:
            out[name] = was
    return out, conflicts
