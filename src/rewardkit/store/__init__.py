"""The version-control core: content-addressed objects, manifests, commits, refs, repository.

Start with :class:`Repository`::

    repo = Repository.init(".rewardkit")
    commit = repo.commit_dir("out/rm", "baseline", metrics={"accuracy": 0.71})
    repo.create_branch("exp")
    repo.set_alias("production", "main", require=["accuracy>=0.7"])
    repo.checkout("main~1", "out/previous")

Diff, merge, gc and fsck are modules of their own (:mod:`~rewardkit.store.diff`,
:mod:`~rewardkit.store.merge`, :mod:`~rewardkit.store.gc`, :mod:`~rewardkit.store.fsck`).

The names below are imported on first use (see :mod:`rewardkit.lazy`): the objects import
torch, which :mod:`rewardkit.store.lock` (used by the CLI at start) does not need.
"""

from typing import TYPE_CHECKING

from rewardkit.lazy import lazy_exports

if TYPE_CHECKING:
    from rewardkit.store.commits import Commit
    from rewardkit.store.manifest import Manifest, TensorEntry
    from rewardkit.store.objects import ObjectStore, TensorRef
    from rewardkit.store.refs import ANY, ReflogEntry, Refs
    from rewardkit.store.repository import Repository, RepoStats

__all__ = [
    "ANY",
    "Commit",
    "Manifest",
    "ObjectStore",
    "RepoStats",
    "ReflogEntry",
    "Refs",
    "Repository",
    "TensorEntry",
    "TensorRef",
]
__getattr__, __dir__ = lazy_exports(__name__, {
    "Commit": "rewardkit.store.commits",
    **dict.fromkeys(("Manifest", "TensorEntry"), "rewardkit.store.manifest"),
    **dict.fromkeys(("ObjectStore", "TensorRef"), "rewardkit.store.objects"),
    **dict.fromkeys(("ANY", "ReflogEntry", "Refs"), "rewardkit.store.refs"),
    **dict.fromkeys(("Repository", "RepoStats"), "rewardkit.store.repository"),
})
