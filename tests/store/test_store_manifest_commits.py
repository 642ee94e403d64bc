from __future__ import annotations

import math

import pytest

from rewardkit.errors import StoreError
from rewardkit.store.commits import Commit, commit_id
from rewardkit.store.manifest import Manifest, TensorEntry
from rewardkit.store.objects import ObjectStore, blob_id

A, B = "a" * 64, "b" * 64


def _manifest(order: int = 0) -> Manifest:
    tensors = {"w": TensorEntry(A, "F32", (2, 3)), "b": TensorEntry(B, "F32", ())}
    files = {"config.json": A, "tok/vocab.txt": B}
    if order:
        tensors, files = dict(reversed(tensors.items())), dict(reversed(files.items()))
    return Manifest(tensors=tensors, files=files)


def test_manifest_serialization_is_canonical() -> None:
    assert _manifest(0).to_bytes() == _manifest(1).to_bytes()
    assert _manifest(0).id == _manifest(1).id == blob_id(_manifest(0).to_bytes())
    data = _manifest().to_bytes()
    assert b" " not in data and data.startswith(b'{"files":')


def test_manifest_round_trips_through_the_object_store(tmp_path) -> None:
    store = ObjectStore(tmp_path)
    m = _manifest()
    assert m.store(store) == m.id
    assert Manifest.load(store, m.id, verify=True) == m


def test_manifest_changes_with_any_entry() -> None:
    base = _manifest()
    other = Manifest(tensors={**base.tensors, "b": TensorEntry(B, "F32", (1,))}, files=base.files)
    assert other.id != base.id


@pytest.mark.parametrize(
    "name", ["/etc/passwd", "../x", "a/../b", "a//b", "./a", "a\\b", "", "model.safetensors"]
)
def test_manifest_refuses_unsafe_file_names(name: str) -> None:
    with pytest.raises(StoreError):
        Manifest(files={name: A})


def _commit(**overrides: object) -> Commit:
    kwargs: dict = dict(
        created_at="2025-01-01T00:00:00.000000Z",
        params={"lr": 1e-5, "epochs": 1},
        metrics={"accuracy": 0.7},
    )
    kwargs.update(overrides)
    return Commit.create(A, [B], "msg", "ann", **kwargs)


def test_commit_id_is_the_hash_of_its_other_fields() -> None:
    c = _commit()
    assert c.id == _commit().id == commit_id(c.fields())
    assert c.id == _commit(params={"epochs": 1, "lr": 1e-5}).id  # key order does not matter
    assert c.parent == B


@pytest.mark.parametrize(
    "change",
    [
        {"params": {"lr": 2e-5, "epochs": 1}},
        {"metrics": {"accuracy": 0.71}},
        {"created_at": "2025-01-01T00:00:00.000001Z"},
        {"data_fingerprint": "abc"},
        {"backbone": "bert"},
    ],
)
def test_any_field_changes_the_commit_id(change: dict) -> None:
    assert _commit(**change).id != _commit().id


def test_commit_normalises_and_validates_values() -> None:
    assert _commit(params={"sizes": (1, 2)}).params == {"sizes": [1, 2]}
    with pytest.raises(StoreError, match="finite"):
        _commit(metrics={"loss": math.nan})
    with pytest.raises(StoreError, match="cannot store"):
        _commit(params={"fn": object()})
    with pytest.raises(StoreError, match="message is empty"):
        Commit.create(A, [], "  ", "ann")
