"""Push and fetch against a directory remote (fsspec ``file`` protocol)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rewardkit.errors import RefMovedError, StoreError
from rewardkit.store import Repository
from rewardkit.store.remote import Remote, fetch, push

FILES = {"config.json": b'{"model_type": "tiny"}\n'}


def remote_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def origin(tmp_path: Path) -> Remote:
    return Remote("origin", str(tmp_path / "remote"))


def test_push_to_empty_remote_then_only_the_changed_head_travels(repo, origin, tiny_tensors):
    first = repo.commit_tensors(tiny_tensors(0), FILES, "v1")
    report = push(repo, origin, "main")
    assert report.commits == 1
    assert report.objects == len(tiny_tensors(0)) + 2  # tensors + config blob + manifest
    assert report.refs == {"refs/heads/main": first.id}
    assert origin.branches() == {"main": first.id}
    assert report.bytes == sum(repo.objects.stored_size(id) for id in repo.objects.ids())

    changed = dict(tiny_tensors(0), **{"head.weight": torch.ones(1, 4, dtype=torch.bfloat16)})
    second = repo.commit_tensors(changed, FILES, "head only")
    new_tensor = repo.manifest(second).tensors["head.weight"].id
    report = push(repo, origin, "main")
    assert report.commits == 1
    assert report.objects == 2  # the changed tensor and the manifest; the commit is a file of its own
    assert report.bytes == repo.objects.stored_size(new_tensor) + repo.objects.stored_size(second.manifest_id)
    assert origin.branches() == {"main": second.id}
    assert push(repo, origin, "main").objects == 0  # nothing new: nothing moves


def test_fetch_into_fresh_repository_checks_out_bit_identical(repo, origin, tiny_tensors, tmp_path):
    repo.commit_tensors(tiny_tensors(0), FILES, "v1")
    head = repo.commit_tensors(tiny_tensors(1), FILES, "v2")
    push(repo, origin, "main")
    with Repository.init(tmp_path / "clone") as clone:
        report = fetch(clone, origin)
        assert report.commits == 2
        assert report.refs == {"refs/remotes/origin/main": head.id}
        assert clone.refs.get("refs/remotes/origin/main") == head.id
        out = clone.checkout("origin/main", tmp_path / "out")
        got = load_file(str(out / "model.safetensors"))
        for name, tensor in tiny_tensors(1).items():
            assert got[name].dtype == tensor.dtype
            assert torch.equal(got[name].view(torch.uint8), tensor.contiguous().view(torch.uint8))
        assert (out / "config.json").read_bytes() == FILES["config.json"]
        assert fetch(clone, origin).objects == 0


def test_diverged_pusher_is_refused_and_remote_unchanged(repo, origin, tiny_tensors, tmp_path):
    base = repo.commit_tensors(tiny_tensors(0), FILES, "base")
    push(repo, origin, "main")
    with Repository.init(tmp_path / "other") as other:
        fetch(other, origin)
        other.reset(base.id)
        other.commit_tensors(tiny_tensors(2), FILES, "theirs")
        push(other, origin, "main")
    repo.commit_tensors(tiny_tensors(3), FILES, "ours")
    before = remote_files(Path(origin.root))
    with pytest.raises(RefMovedError, match="remote main moved: pull and merge"):
        push(repo, origin, "main")
    assert remote_files(Path(origin.root)) == before
    push(repo, origin, "main", force=True)
    assert origin.branches()["main"] == repo.refs.get("refs/heads/main")


def test_push_refused_while_another_push_holds_the_lock(repo, origin, tiny_tensors):
    repo.commit_tensors(tiny_tensors(0), FILES, "v1")
    lock = Path(origin.root) / "refs" / "heads" / "main.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text("1\n")
    with pytest.raises(StoreError, match="locked by another push"):
        push(repo, origin, "main")
    assert origin.branch("main") is None


def test_corrupt_object_on_remote_is_refused_naming_it(repo, origin, tiny_tensors, tmp_path):
    c = repo.commit_tensors(tiny_tensors(0), FILES, "v1")
    push(repo, origin, "main")
    victim = repo.manifest(c).tensors["embed.weight"].id
    path = Path(origin.object_path(victim))
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with Repository.init(tmp_path / "clone") as clone:
        with pytest.raises(StoreError, match=f"refused object {victim}"):
            fetch(clone, origin)
        assert list(clone.objects.ids()) == []
        assert clone.commits.count() == 0
        assert clone.refs.as_dict() == {}


def test_corrupt_commit_on_remote_is_refused(repo, origin, tiny_tensors, tmp_path):
    c = repo.commit_tensors(tiny_tensors(0), FILES, "v1")
    push(repo, origin, "main")
    path = Path(origin.commit_path(c.id))
    path.write_bytes(path.read_bytes().replace(b"v1", b"v2"))
    with Repository.init(tmp_path / "clone") as clone, pytest.raises(StoreError, match=f"commit {c.id}"):
        fetch(clone, origin)


def test_unknown_url_scheme_is_a_clear_error():
    with pytest.raises(StoreError, match="cannot open"):
        Remote("origin", "nosuchscheme://bucket/x")


def test_missing_object_on_remote_is_refused_naming_it(repo, origin, tiny_tensors, tmp_path):
    c = repo.commit_tensors(tiny_tensors(0), FILES, "v1")
    push(repo, origin, "main")
    victim = repo.manifest(c).tensors["head.bias"].id
    Path(origin.object_path(victim)).unlink()
    with Repository.init(tmp_path / "clone") as clone:
        with pytest.raises(StoreError, match=f"object {victim} is missing"):
            fetch(clone, origin)
        assert list(clone.objects.ids()) == [] and clone.commits.count() == 0


def test_delta_encoded_objects_travel_with_their_base(repo, origin, tmp_path):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(128, 128, generator=g).to(torch.bfloat16)
    repo.commit_tensors({"w": w}, FILES, "v1")
    push(repo, origin, "main")
    clone = Repository.init(tmp_path / "clone")
    fetch(clone, origin)  # the base arrives first; the delta later decodes against the local copy
    w2 = w.clone()
    w2[0, :8] += 1
    head = repo.commit_tensors({"w": w2}, FILES, "v2")
    new_id = repo.manifest(head).tensors["w"].id
    assert repo.objects.dependencies(new_id), "the second version should be stored as a delta"
    push(repo, origin, "main")
    with clone:
        assert fetch(clone, origin).objects == 2  # the delta and the manifest
        assert torch.equal(clone.objects.get_tensor(new_id, verify=True), w2)
