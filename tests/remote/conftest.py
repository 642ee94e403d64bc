"""Fixtures of the remote tests: a local repository, tiny tensors, and a remote on a directory or on moto S3."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rewardkit.store import Repository
from rewardkit.store.remote import Remote


def tiny_tensors(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "embed.weight": torch.randn(10, 4, generator=g),
        "head.weight": torch.randn(1, 4, generator=g).to(torch.bfloat16),
        "head.bias": torch.zeros(1),
        "position_ids": torch.arange(8, dtype=torch.int64),
    }


@pytest.fixture(name="tiny_tensors")
def _tiny_tensors_fixture():
    return tiny_tensors


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    with Repository.init(tmp_path / "repo") as r:
        yield r


def make_remote(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Remote:
    """A fresh remote called ``origin``: a directory under ``tmp_path``, or a prefix in a new moto bucket."""
    if kind == "dir":
        return Remote("origin", str(tmp_path / "remote"))
    bucket, endpoint = request.getfixturevalue("s3_bucket"), request.getfixturevalue("s3_endpoint")
    return Remote("origin", bucket + "/repo", endpoint_url=endpoint)


@pytest.fixture(params=["dir", "s3"])
def origin(request: pytest.FixtureRequest, tmp_path: Path) -> Remote:
    """The same store-level test against a directory remote and a moto S3 remote (dulwich's habit)."""
    return make_remote(request.param, tmp_path, request)


def remote_files(remote: Remote) -> dict[str, bytes]:
    """Every file on the remote (path relative to its root -> bytes)."""
    remote.fs.invalidate_cache()
    if not remote.fs.exists(remote.root):
        return {}
    return {p[len(remote.root) + 1:]: remote.fs.cat_file(p) for p in sorted(remote.fs.find(remote.root))}


def damage(remote: Remote, path: str, change) -> None:
    """Replace the remote file ``path`` by ``change(its bytes)`` (a directory remote's objects are read-only)."""
    data = remote.fs.cat_file(path)
    if remote.is_local:
        Path(path).chmod(0o644)
    remote.fs.pipe_file(path, change(data))
    remote.fs.invalidate_cache()


def flip_last_byte(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 0xFF])


# Test modules get the helpers as fixtures: tests/ is not a package, so they cannot import them.
@pytest.fixture(name="remote_files")
def _remote_files_fixture():
    return remote_files


@pytest.fixture(name="damage")
def _damage_fixture():
    return lambda remote, path: damage(remote, path, flip_last_byte)


@pytest.fixture(name="make_remote")
def _make_remote_fixture(tmp_path, request):
    return lambda kind: make_remote(kind, tmp_path, request)
