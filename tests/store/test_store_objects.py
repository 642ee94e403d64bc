from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from rewardkit.errors import StoreError
from rewardkit.store import objects
from rewardkit.store.objects import ObjectStore, blob_id, tensor_bytes, tensor_id


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    return ObjectStore(tmp_path / "objects")


def test_equal_content_gives_equal_id(store: ObjectStore) -> None:
    a = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    b = a.clone()
    assert store.put_tensor(a).id == store.put_tensor(b).id
    # layout does not matter: a transposed-then-contiguous view of the same values
    assert store.put_tensor(a.t().contiguous().t()).id == store.put_tensor(a).id
    assert store.put_blob(b"hello") == store.put_blob(b"hello") == blob_id(b"hello")


def test_dtype_shape_and_kind_change_the_id(store: ObjectStore) -> None:
    a = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    ids = {
        store.put_tensor(a).id,
        store.put_tensor(a.reshape(3, 2)).id,
        store.put_tensor(a.reshape(6)).id,
        store.put_tensor(a.view(torch.int32)).id,  # same bytes, other dtype
        store.put_blob(bytes(tensor_bytes(a))),  # same bytes as a blob
    }
    assert len(ids) == 5


def test_id_is_defined_by_header_and_bytes(store: ObjectStore) -> None:
    a = torch.tensor([1.0, 2.0], dtype=torch.float32)
    ref = store.put_tensor(a)
    assert ref.id == tensor_id("F32", (2,), a.numpy().tobytes())
    assert (ref.dtype, ref.shape, ref.nbytes) == ("F32", (2,), 8)
    # the stored file is exactly what is hashed, so re-hashing the file verifies it
    import hashlib

    assert hashlib.sha256(store.path(ref.id).read_bytes()).hexdigest() == ref.id
    assert store.path(ref.id).parent.name == ref.id[:2]


@pytest.mark.parametrize(
    "tensor",
    [
        torch.randn(3, 5),
        torch.randn(4, 2).to(torch.bfloat16),
        torch.randn(7).to(torch.float16),
        torch.randn(2, 2, dtype=torch.float64),
        torch.arange(5, dtype=torch.int64),
        torch.tensor([True, False]),
        torch.tensor(3.5),  # scalar
        torch.empty(0, 4),  # no elements
    ],
)
def test_tensor_round_trip_is_bit_identical(store: ObjectStore, tensor: torch.Tensor) -> None:
    ref = store.put_tensor(tensor)
    back = store.get_tensor(ref.id, verify=True)
    assert back.dtype == tensor.dtype and back.shape == tensor.shape
    assert bytes(tensor_bytes(back)) == bytes(tensor_bytes(tensor))


def test_writes_are_atomic_and_deduplicated(store: ObjectStore) -> None:
    ids = [store.put_blob(b"x" * n) for n in (0, 1, 1000)]
    store.put_blob(b"x")
    store.put_tensor(torch.ones(3))
    store.put_tensor(torch.ones(3))
    files = [p for p in store.root.rglob("*") if p.is_file()]
    assert not [p for p in files if p.name.startswith(".tmp")]
    assert len(files) == 4 == store.stats().objects
    assert set(ids) <= set(store.ids())
    assert store.get_bytes(ids[2]) == b"x" * 1000


def test_failed_write_leaves_no_temp_file(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("rewardkit.store.objects.os.fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        store.put_blob(b"data")
    assert [p for p in store.root.rglob("*") if p.is_file()] == []
    assert not store.has(blob_id(b"data"))


def test_undo_on_error_deletes_only_new_objects(store: ObjectStore) -> None:
    kept = store.put_blob(b"old")
    with store.undo_on_error():  # success keeps everything
        done = store.put_blob(b"done")
    before = sorted(store.root.rglob("*"))
    with pytest.raises(KeyError), store.undo_on_error():
        assert store.put_blob(b"old") == kept
        new = store.put_tensor(torch.ones(3)).id
        assert store.has(new)
        raise KeyError("boom")
    assert sorted(store.root.rglob("*")) == before  # fan-out folder removed too
    assert store.has(kept) and store.has(done) and not store.has(new)
    store.put_blob(b"new")  # outside a block nothing is recorded
    with pytest.raises(KeyError), store.undo_on_error():
        raise KeyError("boom")
    assert store.has(blob_id(b"new"))


def test_undo_on_error_blocks_are_exclusive_without_fcntl(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(objects, "fcntl", None, raising=False)  # as on Windows: no flock
    entered = threading.Event()

    def other() -> None:
        with ObjectStore(store.root).undo_on_error():
            entered.set()

    with store.undo_on_error():
        thread = threading.Thread(target=other)
        thread.start()
        assert not entered.wait(0.2)
    assert entered.wait(5)
    thread.join()


def test_verify_detects_corruption(store: ObjectStore) -> None:
    id = store.put_blob(b"hello world")
    path = store.path(id)
    path.chmod(0o644)
    path.write_bytes(path.read_bytes().replace(b"hello", b"jello"))
    assert store.get_bytes(id) == b"jello world"  # unverified read trusts the file
    with pytest.raises(StoreError, match="corrupt"):
        store.get_bytes(id, verify=True)
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(StoreError, match="corrupt"):
        store.get_bytes(id)


def test_missing_and_invalid_ids(store: ObjectStore) -> None:
    with pytest.raises(StoreError, match="missing"):
        store.get_bytes("0" * 64)
    with pytest.raises(StoreError, match="64 lowercase hex"):
        store.has("../../etc/passwd")
    with pytest.raises(StoreError, match="not a tensor"):
        store.get_tensor(store.put_blob(b"abc"))


def test_unsupported_dtype_is_refused(store: ObjectStore) -> None:
    with pytest.raises(StoreError, match="complex"):
        store.put_tensor(torch.zeros(2, dtype=torch.complex64))
