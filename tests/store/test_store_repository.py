from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rewardkit.errors import ModelError, RefError, StoreError
from rewardkit.store import Repository


def test_init_open_discover(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "r"
    Repository.init(path).close()
    assert json.loads((path / "config.json").read_text()) == {"format": "rewardkit", "version": 2}
    assert (path / "objects").is_dir() and (path / "meta.db").is_file()
    with pytest.raises(StoreError, match="already exists"):
        Repository.init(path)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(StoreError, match="not an empty folder"):
        Repository.init(tmp_path / "full")
    with pytest.raises(
        StoreError, match=r"no rewardkit repository at .*nope; run `rewardkit init`"
    ):
        Repository.open(tmp_path / "nope")
    with Repository.open(path) as r:
        with r.engine.connect() as c:
            assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    monkeypatch.setenv("REWARDKIT_REPO", str(path))
    with Repository.discover() as r:
        assert r.path == path
    monkeypatch.delenv("REWARDKIT_REPO")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StoreError, match="no rewardkit repository at .rewardkit"):
        Repository.discover()
    Repository.init(".rewardkit").close()
    with Repository.discover() as r:
        assert r.path == Path(".rewardkit")


def test_commit_log_show_round_trip(
    repo: Repository, tiny_tensors, write_model, snapshot, model_dir: Path
) -> None:
    c1 = repo.commit_dir(
        model_dir,
        "baseline",
        author="ann",
        params={"lr": 1e-5},
        metrics={"accuracy": 0.7},
        data_fingerprint="sha256:abc",
        backbone="tiny-bert",
    )
    write_model(model_dir, tiny_tensors(seed=1))
    c2 = repo.commit_dir(model_dir, "retrain\n\ndetails", author="bob")
    assert c1.parents == [] and c2.parents == [c1.id]
    assert repo.log() == [c2, c1]
    assert repo.log(limit=1) == [c2]
    assert repo.log("main~1") == [c1]
    shown = repo.show(c1.id[:8])
    assert shown == c1
    assert (shown.author, shown.params, shown.metrics) == ("ann", {"lr": 1e-5}, {"accuracy": 0.7})
    assert (shown.data_fingerprint, shown.backbone) == ("sha256:abc", "tiny-bert")
    assert shown.created_at.endswith("Z") and shown.created_at < c2.created_at
    m = repo.manifest(c1)
    assert sorted(m.files) == ["config.json", "tokenizer/vocab.txt"]
    assert m.tensors["head.weight"].dtype == "BF16" and m.tensors["embed.weight"].shape == (10, 4)
    assert repo.manifest("main~1") == m
    assert repo.branches() == {"main": c2.id}
    assert repo.refs.reflog("refs/heads/main")[-1].message == "commit: retrain"


def test_branches_are_independent(repo: Repository, tiny_tensors, write_model, snapshot) -> None:
    a = repo.commit_tensors(tiny_tensors(0), {}, "on main")
    b = repo.commit_tensors(tiny_tensors(1), {}, "on exp", branch="exp")
    assert b.parents == [] and repo.branches() == {"exp": b.id, "main": a.id}


def test_dedup_writes_only_changed_tensors(
    repo: Repository, tiny_tensors, write_model, snapshot, model_dir: Path
) -> None:
    def object_files() -> set[Path]:
        return {p for p in (repo.path / "objects").rglob("*") if p.is_file()}

    repo.commit_dir(model_dir, "first")
    first = object_files()
    assert len(first) == 4 + 2 + 1  # tensors, files, manifest
    repo.commit_dir(model_dir, "same again")
    assert object_files() == first  # same manifest too: nothing new
    tensors = tiny_tensors()
    tensors["head.bias"] = torch.ones(1)
    write_model(model_dir, tensors)
    repo.commit_dir(model_dir, "one tensor changed")
    new = object_files() - first
    assert len(new) == 2  # the changed tensor and the new manifest
    bias_id = repo.manifest("main").tensors["head.bias"].id
    assert repo.objects.path(bias_id) in new
    stats = repo.stats()
    assert (stats.objects, stats.commits, stats.branches) == (9, 3, 1)
    assert stats.bytes == sum(p.stat().st_size for p in object_files())


def test_checkout_is_bit_identical(repo: Repository, model_dir: Path, tmp_path: Path) -> None:
    repo.commit_dir(model_dir, "first")
    out = repo.checkout("main", tmp_path / "out")
    original, restored = (
        load_file(model_dir / "model.safetensors"),
        load_file(out / "model.safetensors"),
    )
    assert original.keys() == restored.keys()
    for name, t in original.items():
        assert restored[name].dtype == t.dtype
        assert torch.equal(restored[name].view(torch.uint8), t.view(torch.uint8)), name
    assert (out / "config.json").read_bytes() == (model_dir / "config.json").read_bytes()
    assert (out / "tokenizer/vocab.txt").read_bytes() == (
        model_dir / "tokenizer/vocab.txt"
    ).read_bytes()
    loaded = repo.load_tensors("main")
    assert all(torch.equal(loaded[n], t) for n, t in original.items())


def test_checkout_refuses_non_empty_folder(
    repo: Repository, model_dir: Path, tmp_path: Path
) -> None:
    repo.commit_dir(model_dir, "first")
    with pytest.raises(StoreError, match="not empty.*force=True"):
        repo.checkout("main", model_dir)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("keep")
    repo.checkout("main", tmp_path / "out", force=True)
    assert (tmp_path / "out" / "notes.txt").read_text() == "keep"
    assert (tmp_path / "out" / "model.safetensors").is_file()
    with pytest.raises(RefError):
        repo.checkout("nope", tmp_path / "other")


def test_checkout_detects_corrupt_objects(
    repo: Repository, model_dir: Path, tmp_path: Path
) -> None:
    c = repo.commit_dir(model_dir, "first")
    path = repo.objects.path(repo.manifest(c).tensors["embed.weight"].id)
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="corrupt"):
        repo.checkout("main", tmp_path / "out")


@pytest.mark.parametrize(
    ("case", "match"),
    [
        ("missing", "does not exist"),
        ("file", "is not a folder"),
        ("no weights", "has no model.safetensors; save the model with"),
        ("sharded", "index.json is not a sharded-weights index \\(no key 'weight_map'\\)"),
        ("truncated", "cannot read .*model.safetensors"),
        ("garbage", "cannot read .*model.safetensors"),
    ],
)
def test_bad_model_folder_changes_nothing(
    repo: Repository, tmp_path: Path, tiny_tensors, write_model, snapshot, case: str, match: str
) -> None:
    repo.commit_tensors(tiny_tensors(5), {"config.json": b"{}"}, "existing")
    before = snapshot(repo)
    folder = tmp_path / "m"
    if case != "missing":
        weights = write_model(folder) / "model.safetensors"
    if case == "file":
        folder = folder / "config.json"
    elif case in ("no weights", "sharded"):
        weights.unlink()
        if case == "sharded":
            (folder / "model.safetensors.index.json").write_text("{}")
    elif case == "truncated":
        weights.write_bytes(weights.read_bytes()[:-10])
    elif case == "garbage":
        weights.write_bytes(b"\x00" * 100)
    with pytest.raises(ModelError, match=match):
        repo.commit_dir(folder, "bad")
    assert snapshot(repo) == before


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"message": ""}, "message is empty"),
        ({"metrics": {"loss": float("inf")}}, "finite"),
        ({"branch": "bad name"}, "invalid branch name"),
        ({"files": {"../escape": b""}}, "invalid file name"),
        ({"files": {"model.safetensors": b""}}, "cannot be stored as a file"),
        ({"tensors": {}}, "no tensors"),
        ({"tensors": {"x": [1, 2]}}, "not a torch.Tensor"),
    ],
)
def test_bad_commit_input_changes_nothing(
    repo: Repository, tiny_tensors, write_model, snapshot, kwargs: dict, match: str
) -> None:
    repo.commit_tensors(tiny_tensors(5), {}, "existing")
    before = snapshot(repo)
    args = {"tensors": tiny_tensors(6), "files": {"a.txt": b"a"}, "message": "new", **kwargs}
    with pytest.raises(StoreError, match=match):
        repo.commit_tensors(args.pop("tensors"), args.pop("files"), args.pop("message"), **args)
    assert snapshot(repo) == before


def test_commit_refused_when_branch_moves_meanwhile(
    repo: Repository, tiny_tensors, write_model, snapshot, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = repo.commit_tensors(tiny_tensors(0), {}, "first")
    other = repo.commit_tensors(tiny_tensors(1), {}, "other", branch="other")
    put_blob = repo.objects.put_blob

    def racing_put_blob(data: bytes, **kwargs: bool) -> str:  # another process moves main mid-commit
        repo.refs.set_ref("refs/heads/main", other.id, first.id, "someone else")
        monkeypatch.setattr(repo.objects, "put_blob", put_blob)
        return put_blob(data, **kwargs)

    monkeypatch.setattr(repo.objects, "put_blob", racing_put_blob)
    commits_before, objects_before = repo.commits.count(), object_paths(repo)
    with pytest.raises(StoreError, match=f"branch main moved: expected {first.id}, found {other.id}"):
        repo.commit_tensors(tiny_tensors(2), {"a.txt": b"new"}, "mine")
    assert repo.branches()["main"] == other.id
    assert repo.commits.count() == commits_before  # commit row rolled back with the ref move
    assert object_paths(repo) == objects_before  # and the objects it wrote deleted


def test_failed_commit_deletes_only_the_objects_it_created(
    repo: Repository, tiny_tensors, snapshot, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = repo.commit_tensors(tiny_tensors(0), {"config.json": b"{}"}, "first")
    shared = set(repo.objects.ids())
    before = snapshot(repo)
    tensors = tiny_tensors(0)
    tensors["embed.weight"] = torch.ones(10, 4)  # new; the other three tensors are shared
    files = {"config.json": b"{}", "notes.txt": b"new"}  # one shared blob, one new
    written: set[str] = set()

    def failing_set_ref(*args: object) -> None:
        written.update(set(repo.objects.ids()) - shared)
        raise RuntimeError("disk full")

    monkeypatch.setattr(repo.refs, "set_ref", failing_set_ref)
    with pytest.raises(RuntimeError, match="disk full"):
        repo.commit_tensors(tensors, files, "second")
    assert len(written) == 3  # the new tensor, blob and manifest were written, then deleted
    assert snapshot(repo) == before
    assert set(repo.objects.ids()) == shared
    assert repo.load_tensors(first.id).keys() == tiny_tensors(0).keys()  # verifies every object
    monkeypatch.undo()
    assert repo.commit_tensors(tensors, files, "second").parents == [first.id]
    assert written < set(repo.objects.ids())


def object_paths(repo: Repository) -> list[str]:
    """Every file and folder under objects/."""
    return sorted(str(p.relative_to(repo.path)) for p in (repo.path / "objects").rglob("*"))
