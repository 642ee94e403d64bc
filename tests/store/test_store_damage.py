"""A damaged repository is never trusted: edited manifests, damaged objects, lost or damaged meta.db."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rewardkit.errors import StoreError
from rewardkit.store import Repository
from rewardkit.store.objects import VERIFY_EXISTING_MAX


def _writable(path: Path) -> Path:
    path.chmod(0o644)
    return path


def test_a_renamed_tensor_in_a_stored_manifest_is_refused(
    repo: Repository, model_dir: Path, tmp_path: Path
) -> None:
    commit = repo.commit_dir(model_dir, "first")
    path = _writable(repo.objects.path(commit.manifest_id))
    path.write_bytes(path.read_bytes().replace(b'"head.bias"', b'"head.bois"'))
    match = f"manifest {commit.manifest_id}: object {commit.manifest_id} .* is corrupt"
    for read in (lambda: repo.manifest("main"), lambda: repo.checkout("main", tmp_path / "out")):
        with pytest.raises(StoreError, match=match):
            read()
    assert not (tmp_path / "out").exists()


def _corrupt(path: Path, how: str) -> None:
    data = bytearray(_writable(path).read_bytes())
    if how == "flip":
        data[-1] ^= 0xFF
    path.write_bytes(bytes(data[:-4]) if how == "truncate" else bytes(data))


@pytest.mark.parametrize(
    ("size", "how", "verify_existing", "repaired"),
    [
        (8, "flip", False, True),  # small objects are compared byte for byte
        (8, "truncate", False, True),
        (VERIFY_EXISTING_MAX, "truncate", False, True),  # large ones by size...
        (VERIFY_EXISTING_MAX, "flip", False, False),  # ...so a same-size flip needs verify_existing
        (VERIFY_EXISTING_MAX, "flip", True, True),
    ],
)
def test_dedup_never_reuses_a_damaged_object(
    repo: Repository, capfd: pytest.CaptureFixture[str], size: int, how: str, verify_existing: bool, repaired: bool
) -> None:
    tensors = {"w": torch.arange(size // 4, dtype=torch.float32), "b": torch.ones(1)}
    first = repo.commit_tensors(tensors, {}, "first")
    _corrupt(repo.objects.path(repo.manifest(first).tensors["w"].id), how)
    tensors["b"] = torch.zeros(1)
    kwargs = {"verify_existing": True} if verify_existing else {}
    repo.commit_tensors(tensors, {}, "second on top", **kwargs)
    assert ("was damaged; rewrote it" in capfd.readouterr().err) == repaired
    if repaired:  # the new version, and the old one, check out again
        assert torch.equal(repo.load_tensors("main")["w"], tensors["w"])
        assert torch.equal(repo.load_tensors("main~1")["w"], tensors["w"])
    else:
        with pytest.raises(StoreError, match="corrupt"):
            repo.load_tensors("main")


def test_a_commit_whose_lock_was_taken_over_writes_nothing_and_deletes_nothing(
    repo: Repository, tiny_tensors, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = repo.commit_tensors(tiny_tensors(0), {}, "first")
    store_blob = repo.objects.put_blob

    def stopped_then_taken_over(data: bytes, **kwargs: bool) -> str:
        other = {"pid": 1, "host": "h", "since": 0, "lease_s": 30, "token": "other"}
        (repo.path / "objects" / ".lock").write_text(json.dumps(other))
        return store_blob(data, **kwargs)

    monkeypatch.setattr(repo.objects, "put_blob", stopped_then_taken_over)
    with pytest.raises(StoreError, match="write lock of .* was taken over .* nothing was committed, commit again"):
        repo.commit_tensors(tiny_tensors(1), {}, "second")
    assert repo.branches() == {"main": first.id} and repo.commits.count() == 1
    # the objects it wrote (two new tensors, the manifest) stay: the new holder may be reusing them
    assert repo.objects.stats().objects == 5 + 3
    assert (repo.path / "objects" / ".lock").exists()  # and the other holder's lock stays too


@pytest.mark.parametrize("how", ["empty", "missing"])
def test_a_lost_database_beside_objects_is_not_a_new_repository(
    repo: Repository, tiny_tensors, how: str
) -> None:
    repo.commit_tensors(tiny_tensors(0), {}, "first")
    repo.close()
    for name in ("meta.db", "meta.db-wal", "meta.db-shm"):
        (repo.path / name).unlink(missing_ok=True)
    if how == "empty":
        (repo.path / "meta.db").write_bytes(b"")
    what = "is empty but" if how == "empty" else "is missing but"
    with pytest.raises(
        StoreError,
        match=f"meta.db {what} .*objects holds 5 objects: the commit history is lost; restore .* from a "
        "backup, or move objects/ away to start a new repository",
    ):
        Repository.open(repo.path)
    assert (repo.path / "meta.db").exists() == (how == "empty")
    assert (repo.path / "meta.db").stat().st_size == 0 if how == "empty" else True  # nothing created


def test_an_empty_database_without_objects_just_opens(tmp_path: Path) -> None:
    Repository.init(tmp_path / "r").close()
    (tmp_path / "r" / "meta.db").write_bytes(b"")
    with Repository.open(tmp_path / "r") as repo:
        assert repo.commits.count() == 0


@pytest.mark.parametrize("keep", [0, 100, 0.5])
def test_a_truncated_database_is_a_clear_error(repo: Repository, tiny_tensors, keep: float) -> None:
    for i in range(30):  # enough commits for several database pages
        repo.commit_tensors(tiny_tensors(0), {}, f"commit {i} " + "x" * 500)
    repo.close()  # the last connection checkpoints the WAL into meta.db
    assert not (repo.path / "meta.db-wal").exists()
    path = repo.path / "meta.db"
    data = path.read_bytes()
    path.write_bytes(data[: int(keep * len(data)) if isinstance(keep, float) else keep] + b"\0" * 7)
    with pytest.raises(StoreError, match=r"metadata database .*meta.db is damaged \(.*\).*restore it from a backup"):
        with Repository.open(repo.path) as r:
            r.log()
