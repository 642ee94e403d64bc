"""Partial clones: every commit's metadata is local, but only some commits' objects were fetched.

``clone --filter=REF`` and ``checkout --from REMOTE REF`` fetch the whole history's commits
(small JSON) and the objects of one version only, as a serving host wants. The repository
records that in ``config.json``::

    "partial_clone": {"remote": "origin", "filter": "main"}

While it is set, ``checkout`` of a commit whose objects are absent fails with one line saying
to run ``rewardkit fetch`` (:func:`check_fetched`), and ``fsck`` reports such commits as
"not fetched (partial clone)", as information rather than damage. A full fetch that leaves
every commit's model present clears it (:func:`clear_if_complete`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rewardkit.errors import StoreError
from rewardkit.store.config import read_config, write_config
from rewardkit.store.manifest import Manifest

if TYPE_CHECKING:
    from rewardkit.store.commits import Commit
    from rewardkit.store.repository import Repository

PARTIAL_KEY = "partial_clone"


def partial_clone(repo_path: str | Path) -> dict[str, Any] | None:
    """Return ``{"remote": ..., "filter": ...}`` if some commits' objects were never fetched, else None."""
    state = read_config(repo_path).get(PARTIAL_KEY)
    return state if isinstance(state, dict) else None


def set_partial_clone(repo: Repository, remote: str, filter: str) -> None:  # noqa: A002 (git's word)
    """Record that only some commits' objects were fetched from ``remote`` (``filter``: what was asked for)."""
    config = read_config(repo.path)
    config[PARTIAL_KEY] = {"remote": remote, "filter": filter}
    write_config(repo.path, config)


def is_complete(repo: Repository) -> bool:
    """True if every commit's model (manifest, tensors, files) is in the local store."""
    return not any(missing_objects(repo, c) for c in repo.commits.all())


def clear_if_complete(repo: Repository) -> bool:
    """Forget the partial-clone state if every commit's model is now present; return whether it is."""
    if partial_clone(repo.path) is None:
        return True
    if not is_complete(repo):
        return False
    config = read_config(repo.path)
    config.pop(PARTIAL_KEY, None)
    write_config(repo.path, config)
    return True


def missing_objects(repo: Repository, commit: Commit) -> list[str]:
    """Return the ids of the objects ``commit``'s model needs that are not in the local store.

    That is its manifest (and probe objects), and when the manifest is present, its tensors
    and files. Only presence is checked (``fsck`` re-hashes); a delta object is installed by
    a fetch only after its base, so its base is not checked again.
    """
    missing = [id for id in commit.object_ids() if not repo.objects.has(id)]
    if commit.manifest_id in missing:
        return missing
    manifest = Manifest.from_bytes(repo.objects.get_bytes(commit.manifest_id))
    listed = [*(e.id for e in manifest.tensors.values()), *manifest.files.values()]
    return missing + [id for id in listed if not repo.objects.has(id)]


def check_fetched(repo: Repository, commit: Commit, ref: str) -> None:
    """Refuse, in one line, to read a model a partial clone never fetched.

    ``commit`` and the commits its lineage names (an adapter's base) must have all their
    objects; a repository that is not a partial clone is not checked here (a missing object
    there is damage, reported as such when it is read).

    Raises:
        StoreError: Naming the commit and the command that fetches it.
    """
    state = partial_clone(repo.path)
    if state is None:
        return
    for id in (commit.id, commit.adapter_base()):
        if id and repo.commits.has(id) and missing_objects(repo, repo.commits.get(id)):
            remote = state.get("remote") or "origin"
            raise StoreError(
                f"the model of commit {id[:10]} ({ref}) was not fetched (partial clone of {remote}): run "
                f"`rewardkit fetch` to get every version, or `rewardkit checkout --from {remote} {ref} --to DIR`"
            )
