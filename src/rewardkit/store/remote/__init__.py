"""Remotes: a repository's objects, commits and branches on any fsspec filesystem (directory, S3, …).

:mod:`.location` is where a remote lives and how its refs move (compare-and-swap: a lock file
on a directory, conditional writes on S3), :mod:`.transfer` is push and fetch, :mod:`.fsck`
checks a remote, and :mod:`.config` names the remotes of a repository.
"""

from rewardkit.store.remote.fsck import RemoteFsckReport, fsck_remote
from rewardkit.store.remote.location import Remote, RemoteReflogEntry
from rewardkit.store.remote.transfer import Progress, TransferReport, fetch, push

__all__ = [
    "Progress",
    "Remote",
    "RemoteFsckReport",
    "RemoteReflogEntry",
    "TransferReport",
    "fetch",
    "fsck_remote",
    "push",
]
