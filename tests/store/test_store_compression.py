"""Compressed and delta objects: lossless, same ids, cheap headers, damage refused."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from rewardkit.errors import StoreError
from rewardkit.store import Repository
from rewardkit.store.objects import MIN_ENCODE_SIZE, ObjectStore, tensor_bytes, tensor_id


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    return ObjectStore(tmp_path / "objects")


def _weights(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Weight-like values: small normal numbers, whose exponent bytes compress."""
    return (torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 0.02).to(dtype)


def _encoded(store: ObjectStore, id: str) -> bool:
    return store.path(id).read_bytes().startswith(b"enc ")


def _bits(tensor: torch.Tensor) -> bytes:
    return bytes(tensor_bytes(tensor))


@pytest.mark.parametrize(
    "tensor",
    [
        _weights(64, 64),
        _weights(64, 64, dtype=torch.bfloat16),
        _weights(64, 64, dtype=torch.float16),
        _weights(64, 64, dtype=torch.float64),
        _weights(64, 64).to(torch.float8_e4m3fn),
        torch.arange(4096, dtype=torch.int64),
        torch.arange(4096, dtype=torch.int32) % 7,
        torch.arange(8192, dtype=torch.int16) % 300,
        torch.arange(8192, dtype=torch.uint8),
        torch.arange(8192) % 3 == 0,  # bool
        torch.tensor(3.5),  # scalar: too small to encode, stays raw
        torch.empty(0, 4, dtype=torch.bfloat16),  # no elements
    ],
    ids=lambda t: f"{t.dtype}-{list(t.shape)}",
)
def test_every_dtype_round_trips_bit_identical_with_the_id_of_its_raw_bytes(
    store: ObjectStore, tensor: torch.Tensor
) -> None:
    ref = store.put_tensor(tensor)
    assert ref.id == tensor_id(ref.dtype, ref.shape, _bits(tensor))  # ids never depend on the encoding
    assert _encoded(store, ref.id) == (ref.nbytes >= MIN_ENCODE_SIZE)
    if _encoded(store, ref.id):
        assert store.stored_size(ref.id) < 0.95 * ref.nbytes
    back = store.get_tensor(ref.id, verify=True)
    assert back.dtype == tensor.dtype and back.shape == tensor.shape and _bits(back) == _bits(tensor)
    assert store.header(ref.id).shape == ref.shape and store.dependencies(ref.id) == []


def test_incompressible_data_stays_raw_and_raw_files_hash_to_their_id(store: ObjectStore) -> None:
    noise = torch.randint(0, 256, (1 << 16,), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    ref = store.put_tensor(noise)
    assert not _encoded(store, ref.id)
    assert hashlib.sha256(store.path(ref.id).read_bytes()).hexdigest() == ref.id


def test_old_raw_objects_stay_readable_and_are_reused(tmp_path: Path) -> None:
    tensor = _weights(128, 64)
    old = ObjectStore(tmp_path / "objects", compress=False)  # as rewardkit wrote before compression
    id = old.put_tensor(tensor).id
    assert not _encoded(old, id)
    new = ObjectStore(tmp_path / "objects")
    assert _bits(new.get_tensor(id, verify=True)) == _bits(tensor)
    before = new.path(id).stat()
    assert new.put_tensor(tensor).id == id  # dedup: the raw file is kept as is
    after = new.path(id).stat()  # same file (inode), not rewritten; only its time is refreshed for gc
    assert (after.st_ino, after.st_size) == (before.st_ino, before.st_size) and not _encoded(new, id)


def test_blobs_compress_and_small_objects_stay_raw(store: ObjectStore) -> None:
    text = b'{"vocab": {"hello": 1, "world": 2}}\n' * 500
    id = store.put_blob(text)
    assert _encoded(store, id) and store.stored_size(id) < len(text) / 10
    assert store.get_bytes(id, verify=True) == text
    small = store.put_blob(b"x" * 1000)  # compressible, but below one filesystem block
    assert not _encoded(store, small)


def test_a_fine_tuned_tensor_is_stored_as_a_smaller_delta_of_its_parent(store: ObjectStore) -> None:
    base = _weights(256, 256)
    tuned = base + _weights(256, 256, seed=1) * 1e-3  # every element changes a little
    base_id = store.put_tensor(base).id
    alone = ObjectStore(store.root.parent / "alone").put_tensor(tuned).id
    ref = store.put_tensor(tuned, delta_base=base_id)
    assert ref.id == alone  # same id with or without delta
    assert store.dependencies(ref.id) == [base_id]
    assert store.stored_size(ref.id) < 0.8 * ObjectStore(store.root.parent / "alone").stored_size(alone)
    assert _bits(store.get_tensor(ref.id, verify=True)) == _bits(tuned)
    # a third version offered the delta as its base uses the delta's base: chains stay one deep
    again = tuned + _weights(256, 256, seed=2) * 1e-3
    third = store.put_tensor(again, delta_base=ref.id)
    assert store.dependencies(third.id) == [base_id]
    assert _bits(store.get_tensor(third.id, verify=True)) == _bits(again)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64, torch.int64, torch.int8])
def test_delta_round_trips_for_every_element_width(store: ObjectStore, dtype: torch.dtype) -> None:
    base = (torch.arange(8192) % 97).to(dtype)
    tuned = base.clone()
    tuned[::3] += 1
    tuned[1::5] -= 2  # negative changes, and wrap-around for int8
    ref = store.put_tensor(tuned, delta_base=store.put_tensor(base).id)
    assert store.dependencies(ref.id) != []
    assert _bits(store.get_tensor(ref.id, verify=True)) == _bits(tuned)


@pytest.mark.parametrize(
    "candidate", ["other dtype", "other size", "blob", "missing", "itself"]
)
def test_an_unusable_delta_base_is_ignored(store: ObjectStore, candidate: str) -> None:
    tensor = _weights(64, 64)
    base = {
        "other dtype": lambda: store.put_tensor(_weights(64, 64, dtype=torch.float64)[:, :32]).id,
        "other size": lambda: store.put_tensor(_weights(64, 63)).id,
        "blob": lambda: store.put_blob(bytes(tensor_bytes(tensor))),
        "missing": lambda: "0" * 64,
        "itself": lambda: tensor_id("F32", (64, 64), _bits(tensor)),
    }[candidate]()
    ref = store.put_tensor(tensor, delta_base=base)
    assert store.dependencies(ref.id) == []
    assert _bits(store.get_tensor(ref.id, verify=True)) == _bits(tensor)


def _flip_middle(path: Path) -> None:
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


def test_a_corrupt_compressed_object_is_refused_naming_it(store: ObjectStore) -> None:
    id = store.put_tensor(_weights(128, 128)).id
    assert _encoded(store, id)
    _flip_middle(store.path(id))
    assert store.header(id).shape == (128, 128)  # the header is read without decoding
    for verify in (False, True):  # zstd's own checksum catches it even unverified
        with pytest.raises(StoreError, match=f"object {id} at .* is corrupt"):
            store.get_tensor(id, verify=verify)
    path = store.path(id)
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(StoreError, match=f"object {id} at .* is corrupt: .* header says"):
        store.header(id)


def test_a_delta_whose_base_is_damaged_or_missing_is_refused_naming_both(store: ObjectStore) -> None:
    base = _weights(128, 128)
    base_id = store.put_tensor(base).id
    id = store.put_tensor(base + 1e-4, delta_base=base_id).id
    assert store.dependencies(id) == [base_id]
    _flip_middle(store.path(base_id))
    with pytest.raises(StoreError, match=f"object {id} is stored as a delta against object {base_id}: .*corrupt"):
        store.get_tensor(id, verify=True)
    store.path(base_id).unlink()
    with pytest.raises(StoreError, match=f"object {id} is stored as a delta .* {base_id} is missing"):
        store.get_tensor(id)


def test_re_putting_a_delta_whose_base_is_gone_rewrites_it_whole(store: ObjectStore) -> None:
    base = _weights(512, 512)
    base_id = store.put_tensor(base).id
    tuned = base + 1e-4
    id = store.put_tensor(tuned, delta_base=base_id).id
    store.path(base_id).chmod(0o644)
    store.path(base_id).unlink()
    assert store.put_tensor(tuned).id == id  # large, so only header and base presence are checked
    assert store.dependencies(id) == [] and _bits(store.get_tensor(id, verify=True)) == _bits(tuned)


def test_undo_on_error_deletes_created_compressed_and_delta_objects(store: ObjectStore) -> None:
    base_id = store.put_tensor(_weights(128, 128)).id
    before = sorted(store.root.rglob("*"))
    with pytest.raises(KeyError), store.undo_on_error():
        store.put_tensor(_weights(128, 128) + 1e-4, delta_base=base_id)
        store.put_blob(b"tokenizer " * 1000)
        raise KeyError("boom")
    assert sorted(store.root.rglob("*")) == before


def test_commit_offers_the_parents_tensors_as_delta_bases(repo: Repository) -> None:
    v1 = {"w": _weights(256, 256), "b": _weights(256)}
    repo.commit_tensors(v1, {}, "v1")
    before = repo.stats().bytes
    v2 = {name: t + _weights(*t.shape, seed=9) * 1e-3 for name, t in v1.items()}  # a full fine-tune
    repo.commit_tensors(v2, {}, "v2")
    parent, child = repo.manifest("main~1").tensors, repo.manifest("main").tensors
    assert repo.objects.dependencies(child["w"].id) == [parent["w"].id]
    raw = sum(t.numel() * t.element_size() for t in v2.values())
    assert repo.stats().bytes - before < 0.75 * raw
    assert all(_bits(t) == _bits(v2[n]) for n, t in repo.load_tensors("main").items())


def test_a_head_only_fine_tune_adds_only_the_heads_bytes(repo: Repository) -> None:
    body = {f"layer.{i}.weight": _weights(256, 256, seed=i) for i in range(4)}
    repo.commit_tensors({**body, "score.weight": _weights(1, 256, seed=10)}, {"config.json": b"{}"}, "base")
    before = repo.stats()
    head = _weights(1, 256, seed=11)
    commit = repo.commit_tensors({**body, "score.weight": head}, {"config.json": b"{}"}, "head only")
    after = repo.stats()
    head_id = repo.manifest(commit).tensors["score.weight"].id
    assert after.objects - before.objects == 2  # the head and the manifest
    assert after.bytes - before.bytes == repo.objects.stored_size(head_id) + repo.objects.stored_size(
        commit.manifest_id
    )
    assert repo.objects.stored_size(head_id) <= head.numel() * 4 + 64  # the head's bytes and its header


def test_fsck_and_gc_know_a_real_delta_needs_its_base(repo: Repository) -> None:
    from rewardkit.store.fsck import fsck
    from rewardkit.store.gc import gc, used_objects

    v1 = {"w": _weights(256, 256)}
    repo.commit_tensors(v1, {}, "v1")
    repo.commit_tensors({"w": v1["w"] + 1e-4}, {}, "v2")
    base, delta = repo.manifest("main~1").tensors["w"].id, repo.manifest("main").tensors["w"].id
    assert repo.objects.dependencies(delta) == [base]
    assert base in used_objects(repo.objects, [repo.resolve("main")])  # v2 alone needs v1's tensor
    assert fsck(repo).ok and gc(repo, grace_s=0).removed_objects == []
    repo.objects.path(base).chmod(0o644)
    repo.objects.path(base).unlink()
    report = fsck(repo)
    assert not report.ok and any(base in f.detail for f in report.errors)
