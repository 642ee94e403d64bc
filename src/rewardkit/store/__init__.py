"""The version-control core: content-addressed objects, manifests, commits, refs, repository.

Start with :class:`Repository`::

    repo = Repository.init(".rewardkit")
    commit = repo.commit_dir("out/rm", "baseline", metrics={"accuracy": 0.71})
    repo.checkout("main~1", "out/previous")
"""

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
