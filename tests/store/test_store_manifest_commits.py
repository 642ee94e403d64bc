from __future__ import annotations

import json
import math

import pytest
import torch

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


def _stored_manifest(store: ObjectStore) -> Manifest:
    """A manifest whose objects are all in ``store``."""
    w, b = store.put_tensor(torch.ones(2, 3)), store.put_tensor(torch.tensor(0.5))
    files = {"config.json": store.put_blob(b"{}"), "tok/vocab.txt": store.put_blob(b"a\nb\n")}
    return Manifest(tensors={"w": TensorEntry.from_ref(w), "b": TensorEntry.from_ref(b)}, files=files)


def test_manifest_round_trips_through_the_object_store(tmp_path) -> None:
    store = ObjectStore(tmp_path)
    m = _stored_manifest(store)
    assert m.store(store) == m.id
    assert Manifest.load(store, m.id) == m


def test_an_edited_manifest_is_refused(tmp_path) -> None:
    """A manifest is its hash: renaming a tensor in the stored file must not change the model."""
    store = ObjectStore(tmp_path)
    m = _stored_manifest(store)
    id = m.store(store)
    path = store.path(id)
    path.chmod(0o644)
    path.write_bytes(path.read_bytes().replace(b'"w":', b'"v":'))  # same size, valid JSON
    with pytest.raises(StoreError, match=f"manifest {id}: .*corrupt: its content does not hash"):
        Manifest.load(store, id)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"shape": (3, 2)}, r"lists tensor 'w' as F32 \[3, 2\], but object \w+ is F32 \[2, 3\]"),
        ({"dtype": "F16"}, r"lists tensor 'w' as F16 \[2, 3\], but object \w+ is F32"),
        ({"id": "blob"}, r"lists tensor 'w' as F32 \[2, 3\], but object \w+ is a blob"),
        ({"id": "missing"}, r"object 0{64} is missing"),
    ],
)
def test_manifest_must_match_the_object_headers(tmp_path, change: dict, match: str) -> None:
    store = ObjectStore(tmp_path)
    m = _stored_manifest(store)
    ids = {"blob": m.files["config.json"], "missing": "0" * 64}
    entry = m.tensors["w"]
    entry = TensorEntry(
        id=ids.get(change.get("id"), entry.id),
        dtype=change.get("dtype", entry.dtype),
        shape=change.get("shape", entry.shape),
    )
    bad = Manifest(tensors={**m.tensors, "w": entry}, files=m.files)
    with pytest.raises(StoreError, match=match):
        Manifest.load(store, bad.store(store))


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ({"tensors": {"": {"id": A, "dtype": "F32", "shape": []}}}, "tensor name '' is not"),
        ({"tensors": {"w": {"id": A, "dtype": "F33", "shape": []}}}, "unknown tensor dtype 'F33'"),
        ({"tensors": {"w": {"id": A, "dtype": "F32", "shape": [-1]}}}, "not a list of non-negative"),
        ({"tensors": {"w": {"id": A, "dtype": "F32", "shape": [1.5]}}}, "not a list of non-negative"),
        ({"tensors": {"w": {"id": "xyz", "dtype": "F32", "shape": []}}}, "invalid object id 'xyz'"),
        ({"files": {"../x": A}}, "invalid file name"),
        ({"files": {"a.txt": 3}}, "invalid object id 3"),
    ],
)
def test_manifest_structure_is_checked(raw: dict, match: str) -> None:
    data = json.dumps({"version": 1, "tensors": {}, "files": {}} | raw).encode()
    with pytest.raises(StoreError, match=match):
        Manifest.from_bytes(data)


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


@pytest.mark.backends()
def test_a_commit_round_trips_through_the_database_unchanged(repo) -> None:
    """JSON columns keep every value and its type; the id still hashes right when read back."""
    params = {"lr": 1e-5, "steps": 2**53 + 1, "nested": {"z": [1, 2.5, None, True], "a": "nul \x00 inside json"},
              "text": "ünïcode ✓ \"quoted\" \\ back"}
    commit = Commit.create(A, [B], "first line\n\nbody ✓", "ann", params=params, metrics={"val/accuracy": 0.5625},
                           data_fingerprint="sha256:" + "c" * 64, backbone="sentence-transformers/all-MiniLM-L6-v2")
    repo.commits.add(commit)
    got = repo.commits.get(commit.id)
    assert got == commit and commit_id(got.fields()) == got.id
    assert type(got.params["steps"]) is int and type(got.params["lr"]) is float


@pytest.mark.backends()
@pytest.mark.parametrize(("field", "value", "match"), [
    ("message", "lr\x001e-5", r"commit message 'lr\\x001e-5' holds a NUL character \(\\x00\); remove it"),
    ("author", "x" * 256, "commit author is 256 characters long; at most 255 fit"),
    ("backbone", "/models/" + "b" * 250, "commit backbone is 258 characters long; at most 255 fit"),
    ("data_fingerprint", "sha\x00", "commit data fingerprint 'sha\\\\x00' holds a NUL character"),
], ids=["nul-message", "long-author", "long-backbone", "nul-fingerprint"])
def test_text_a_database_cannot_hold_is_refused_before_anything_is_written(
    repo, tiny_tensors, snapshot, field: str, value: str, match: str
) -> None:
    """PostgreSQL stores no NUL in text and checks column lengths; no backend accepts them, with a clear error."""
    before = snapshot(repo)
    kwargs = {"message": "m", field: value} if field != "message" else {"message": value}
    with pytest.raises(StoreError, match=f"^{match}"):
        repo.commit_tensors(tiny_tensors(0), {}, **kwargs)
    assert snapshot(repo) == before


@pytest.mark.backends()
def test_a_ref_name_longer_than_the_refs_table_holds_is_refused(repo, tiny_tensors) -> None:
    repo.commit_tensors(tiny_tensors(0), {}, "first")
    long = "exp/" + "x" * 241  # refs/heads/ + 245 characters = 256
    with pytest.raises(StoreError, match=rf"^branch name exp/x+… is too long: refs/heads/{long} has 256 characters, "
                       "at most 255 fit$"):
        repo.create_branch(long)
    assert set(repo.branches()) == {"main"}
    repo.create_branch(long[:-1])
