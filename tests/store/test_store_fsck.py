"""fsck names every damaged, missing and dangling item, and never writes."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch
from sqlalchemy import update

from rewardkit.errors import StoreError
from rewardkit.store import Repository
from rewardkit.store.db import commits_table, refs_table, transaction
from rewardkit.store.fsck import fsck
from rewardkit.store.objects import TMP_GRACE_S

pytestmark = pytest.mark.backends()  # each test's `repo` on SQLite, then on PostgreSQL


def _two_commits(repo: Repository, tiny_tensors):
    first = repo.commit_tensors(tiny_tensors(0), {"config.json": b"{}"}, "first")
    second = repo.commit_tensors(tiny_tensors(1), {"config.json": b"{}"}, "second")
    return first, second


def _files(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _writable(path: Path) -> Path:
    path.chmod(0o644)
    return path


def test_a_sound_repository_is_ok_and_fsck_writes_nothing(repo: Repository, tiny_tensors) -> None:
    _two_commits(repo, tiny_tensors)
    repo.close()  # checkpoint the WAL, so the files below are all there is
    before = _files(repo.path)
    report = fsck(repo.path)
    assert report.ok and report.findings == []
    assert (report.objects, report.commits, report.refs) == (9, 2, 1)  # 4 + 2 tensors, a config, 2 manifests
    assert report.reflog_entries == 2
    assert {k: v for k, v in _files(repo.path).items() if not k.startswith("meta.db")} == {
        k: v for k, v in before.items() if not k.startswith("meta.db")}


@pytest.mark.parametrize(("how", "problem", "refusal"), [
    ("flip", "corrupt", "is corrupt: its content does not hash to its id"),
    ("delete", "missing", "is missing"),
])
def test_a_flipped_byte_or_a_deleted_object_is_named_and_checkout_refuses(
    repo: Repository, tiny_tensors, tmp_path: Path, how: str, problem: str, refusal: str
) -> None:
    _, second = _two_commits(repo, tiny_tensors)
    damaged = repo.manifest(second).tensors["embed.weight"].id
    path = _writable(repo.objects.path(damaged))
    if how == "flip":
        data = bytearray(path.read_bytes())
        data[-3] ^= 0x01
        path.write_bytes(bytes(data))
    else:
        path.unlink()

    report = fsck(repo)
    assert not report.ok
    assert [(f.problem, f.item, f.name) for f in report.errors] == [(problem, "object", damaged)]
    assert f"tensor 'embed.weight' of manifest {second.manifest_id}, commit {second.id}" in report.errors[0].detail
    with pytest.raises(StoreError, match=f"object {damaged} .*{refusal}"):
        repo.checkout("main", tmp_path / "out")
    assert repo.checkout("main~1", tmp_path / "older").is_dir()  # the other version is intact


@pytest.mark.backends("sqlite")  # damages meta.db
def test_a_truncated_database_is_reported_not_raised(repo: Repository, tiny_tensors) -> None:
    for i in range(30):  # enough commits for several database pages
        repo.commit_tensors(tiny_tensors(i % 2), {}, f"commit {i} " + "x" * 500)
    repo.close()
    path = repo.path / "meta.db"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    report = fsck(repo.path)
    assert not report.ok
    assert [(f.problem, f.item) for f in report.errors] == [("damaged", "database")]
    assert "meta.db" in report.errors[0].detail and "restore it from a backup" in report.errors[0].detail
    assert report.objects == 8  # the objects were still re-hashed


@pytest.mark.backends("sqlite")  # damages meta.db
def test_a_database_truncated_to_nothing_is_reported(repo: Repository, tiny_tensors) -> None:
    _two_commits(repo, tiny_tensors)
    repo.close()
    for name in ("meta.db-wal", "meta.db-shm"):
        (repo.path / name).unlink(missing_ok=True)
    (repo.path / "meta.db").write_bytes(b"")
    report = fsck(repo.path)
    assert [(f.problem, f.item) for f in report.errors] == [("damaged", "database")]
    assert "the commit history is lost" in report.errors[0].detail
    assert (repo.path / "meta.db").read_bytes() == b""  # fsck created no tables


def test_no_repository_is_an_error_not_a_report(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no rewardkit repository"):
        fsck(tmp_path)


def test_an_edited_commit_row_is_named(repo: Repository, tiny_tensors) -> None:
    first, second = _two_commits(repo, tiny_tensors)
    with transaction(repo.engine) as conn:
        conn.execute(update(commits_table).where(commits_table.c.id == first.id).values(message="rewritten"))
    assert {(f.problem, f.item, f.name) for f in fsck(repo).errors} == {("corrupt", "commit", first.id)}


def test_a_missing_lineage_base_is_named(repo: Repository, tiny_tensors) -> None:
    """A model initialised from a version (``params["base"]``, train --init-from) whose base is gone."""
    gone = "e" * 64
    tuned = repo.commit_tensors(tiny_tensors(0), {}, "tuned", params={"base": gone, "frozen": ["embed.*"]})
    [finding] = fsck(repo).errors
    assert (finding.problem, finding.item, finding.name) == ("missing", "commit", gone)
    assert finding.detail == f"commit {gone} is missing (lineage base of {tuned.id})"


@pytest.mark.backends("sqlite")  # PostgreSQL enforces the refs' foreign key: no such ref can be written there
def test_a_dangling_ref_is_named(repo: Repository, tiny_tensors) -> None:
    _two_commits(repo, tiny_tensors)
    with transaction(repo.engine) as conn:
        conn.execute(update(refs_table).values(commit_id="f" * 64))  # SQLite does not enforce the foreign key
    found = {(f.problem, f.item, f.name) for f in fsck(repo).errors}
    assert any(problem == "missing" and item == "ref" and target.endswith("main") for problem, item, target in found)


def test_dangling_objects_and_young_temp_files_are_information(repo: Repository, tiny_tensors) -> None:
    _two_commits(repo, tiny_tensors)
    orphan = repo.objects.put_tensor(torch.arange(7.0)).id  # a killed commit's object
    fan = repo.objects.path(orphan).parent
    (fan / ".tmp-young").write_bytes(b"x")
    report = fsck(repo)
    assert report.ok
    assert {(f.problem, f.item, f.name) for f in report.findings} == {
        ("dangling", "object", orphan), ("leftover", "temp file", f"objects/{fan.name}/.tmp-young")}
    assert all("information, not an error" in f.detail for f in report.findings)

    old = time.time() - TMP_GRACE_S - 60
    os.utime(fan / ".tmp-young", (old, old))
    report = fsck(repo)
    assert [(f.problem, f.item) for f in report.errors] == [("leftover", "temp file")]
    assert "`rewardkit gc` removes it" in report.errors[0].detail


def test_a_manifest_that_lies_about_a_dtype_is_named(repo: Repository) -> None:
    from rewardkit.store.manifest import Manifest, TensorEntry

    real = repo.objects.put_tensor(torch.ones(3))
    manifest = Manifest(tensors={"w": TensorEntry(real.id, "F16", real.shape)})  # stored as F32
    commit = repo.commit_tensors({"w": torch.ones(3)}, {}, "first")
    fake_id = manifest.store(repo.objects)
    with transaction(repo.engine) as conn:
        conn.execute(update(commits_table).where(commits_table.c.id == commit.id).values(manifest_id=fake_id))
    found = {(f.problem, f.item, f.name) for f in fsck(repo).errors}
    assert ("corrupt", "manifest", fake_id) in found


def test_an_unreadable_head_is_named(repo: Repository, tiny_tensors) -> None:
    _two_commits(repo, tiny_tensors)
    (repo.path / "HEAD").write_bytes(b"ref: refs/heads/\xff\xfe")
    errors = fsck(repo).errors
    assert [(f.problem, f.item, f.name) for f in errors] == [("corrupt", "ref", "HEAD")]
