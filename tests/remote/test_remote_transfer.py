"""Push, fetch, the remote reflog and fsck_remote, each against a directory remote and a moto S3 remote."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rewardkit.errors import RefMovedError, StoreError
from rewardkit.store import Repository
from rewardkit.store.fsck import fsck
from rewardkit.store.remote import Remote, fetch, fsck_remote, push

FILES = {"config.json": b'{"model_type": "tiny"}\n'}


class Recorder:
    """A Progress that records its calls."""

    def __init__(self) -> None:
        self.started: list[tuple[str, int, int]] = []
        self.advanced: list[int] = []
        self._lock = threading.Lock()

    def start(self, what: str, objects: int, bytes: int) -> None:  # noqa: A002
        self.started.append((what, objects, bytes))

    def advance(self, bytes: int) -> None:  # noqa: A002
        with self._lock:
            self.advanced.append(bytes)


def test_push_to_empty_remote_then_only_the_changed_head_travels(repo, origin, tiny_tensors):
    first = repo.commit_tensors(tiny_tensors(0), FILES, "v1")
    progress = Recorder()
    report = push(repo, origin, progress=progress)  # None: the current branch
    assert report.commits == 1
    assert report.objects == len(tiny_tensors(0)) + 2  # tensors + config blob + manifest
    assert report.refs == {"refs/heads/main": first.id}
    assert origin.branches() == {"main": first.id}
    assert report.bytes == sum(repo.objects.stored_size(id) for id in repo.objects.ids())
    assert progress.started == [("push origin", report.objects, report.bytes)]
    assert sorted(progress.advanced) == sorted(repo.objects.stored_size(id) for id in repo.objects.ids())

    changed = dict(tiny_tensors(0), **{"head.weight": torch.ones(1, 4, dtype=torch.bfloat16)})
    second = repo.commit_tensors(changed, FILES, "head only")
    new_tensor = repo.manifest(second).tensors["head.weight"].id
    report = push(repo, origin, ["main"], jobs=2)
    assert report.commits == 1
    assert report.objects == 2  # the changed tensor and the manifest; the commit is a file of its own
    assert report.bytes == repo.objects.stored_size(new_tensor) + repo.objects.stored_size(second.manifest_id)
    assert origin.branches() == {"main": second.id}
    assert push(repo, origin, ["main"]).objects == 0  # nothing new: nothing moves
    assert fsck_remote(origin).ok


def test_push_lists_the_remote_once_not_one_exists_per_object(repo, origin, tiny_tensors, monkeypatch):
    repo.commit_tensors(tiny_tensors(0), FILES, "v1")
    calls = {"find": 0, "exists": 0}
    fs = type(origin.fs)
    for name in calls:
        real = getattr(fs, name)

        def counted(self, *args, _real=real, _name=name, **kwargs):
            calls[_name] += 1
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(fs, name, counted)
    report = push(repo, origin, ["main"])
    assert report.objects == 6
    assert calls["exists"] == 0  # never one per object or commit
    assert calls["find"] == 1  # one listing of the remote (refs are read by name, no listing)


def test_push_several_branches_at_once(repo, origin, tiny_tensors):
    repo.commit_tensors(tiny_tensors(0), FILES, "v1")
    repo.switch("exp/lr", create=True)
    exp = repo.commit_tensors(tiny_tensors(1), FILES, "exp")
    report = push(repo, origin, ["main", "exp/lr"])
    assert report.refs == {"refs/heads/main": repo.refs.get("refs/heads/main"), "refs/heads/exp/lr": exp.id}
    assert origin.branches() == {"exp/lr": exp.id, "main": repo.refs.get("refs/heads/main")}
    with pytest.raises(StoreError, match="cannot push nope: no such branch"):
        push(repo, origin, ["nope"])


def test_fetch_into_fresh_repository_checks_out_bit_identical(repo, origin, tiny_tensors, tmp_path):
    repo.commit_tensors(tiny_tensors(0), FILES, "v1")
    head = repo.commit_tensors(tiny_tensors(1), FILES, "v2")
    push(repo, origin, ["main"])
    with Repository.init(tmp_path / "clone") as clone:
        progress = Recorder()
        report = fetch(clone, origin, progress=progress, jobs=3)
        assert report.commits == 2
        assert report.refs == {"refs/remotes/origin/main": head.id}
        assert progress.started == [("fetch origin", report.objects, report.bytes)]
        assert sum(progress.advanced) == report.bytes and len(progress.advanced) == report.objects
        assert clone.refs.get("refs/remotes/origin/main") == head.id
        out = clone.checkout("origin/main", tmp_path / "out")
        got = load_file(str(out / "model.safetensors"))
        for name, tensor in tiny_tensors(1).items():
            assert got[name].dtype == tensor.dtype
            assert torch.equal(got[name].view(torch.uint8), tensor.contiguous().view(torch.uint8))
        assert (out / "config.json").read_bytes() == FILES["config.json"]
        assert fetch(clone, origin).objects == 0
        assert fsck(clone).ok


def test_fetch_objects_for_one_commit_only(repo, origin, tiny_tensors, tmp_path):
    old = repo.commit_tensors(tiny_tensors(0), FILES, "v1")
    head = repo.commit_tensors(tiny_tensors(1), FILES, "v2")
    push(repo, origin, ["main"])
    with Repository.init(tmp_path / "clone") as clone:
        report = fetch(clone, origin, ["main"], objects_for=[head.id])
        assert report.commits == 2  # the whole history's metadata
        assert clone.commits.has(old.id)
        assert not clone.objects.has(old.manifest_id)
        assert torch.equal(clone.load_tensors("origin/main")["embed.weight"], tiny_tensors(1)["embed.weight"])
        only_v1 = set(repo.objects.ids()) - set(clone.objects.ids())
        assert {old.manifest_id, repo.manifest(old).tensors["embed.weight"].id} <= only_v1
        assert fetch(clone, origin).objects == len(only_v1)  # later: the rest
        with pytest.raises(StoreError, match="has no branch 'nope'"):
            fetch(clone, origin, ["nope"])


def test_interrupted_fetch_resumes_without_downloading_verified_objects_again(repo, origin, tiny_tensors, tmp_path,
                                                                                monkeypatch):
    c = repo.commit_tensors(tiny_tensors(0), FILES, "v1")
    push(repo, origin, ["main"])
    victim = repo.manifest(c).tensors["embed.weight"].id
    real = origin.fs.get_file

    def fail_on_victim(rpath, lpath, *args, **kwargs):
        if rpath.endswith(victim[2:]):
            raise ConnectionError("network went away")
        return real(rpath, lpath, *args, **kwargs)

    monkeypatch.setattr(origin.fs, "get_file", fail_on_victim)
    with Repository.init(tmp_path / "clone") as clone:
        with pytest.raises(StoreError, match="network went away"):
            fetch(clone, origin, jobs=1)
        kept = set(clone.objects.ids())
        assert c.manifest_id in kept and victim not in kept  # verified ones stay, no commit or ref yet
        assert clone.commits.count() == 0 and clone.refs.as_dict() == {}
        monkeypatch.undo()
        report = fetch(clone, origin)
        assert report.objects == 6 - len(kept)
        assert set(clone.objects.ids()) == set(repo.objects.ids())
        assert fsck(clone).ok


def test_diverged_pusher_is_refused_and_remote_unchanged_then_force_is_logged(
    repo, origin, tiny_tensors, tmp_path, remote_files
):
    base = repo.commit_tensors(tiny_tensors(0), FILES, "base")
    push(repo, origin, ["main"])
    with Repository.init(tmp_path / "other") as other:
        fetch(other, origin)
        other.reset(base.id)
        theirs = other.commit_tensors(tiny_tensors(2), FILES, "theirs")
        push(other, origin, ["main"])
    ours = repo.commit_tensors(tiny_tensors(3), FILES, "ours")
    before = remote_files(origin)
    with pytest.raises(RefMovedError, match="remote main moved: pull and merge"):
        push(repo, origin, ["main"])
    assert remote_files(origin) == before
    push(repo, origin, ["main"], force=True)
    assert origin.branches()["main"] == ours.id
    log = origin.reflog("main")
    assert [(e.old, e.new, e.message) for e in log] == [
        (None, base.id, "push"), (base.id, theirs.id, "push"), (theirs.id, ours.id, "push --force")
    ]
    assert all(e.ref == "refs/heads/main" and "@" in e.user and e.time.endswith("Z") for e in log)


def test_swap_ref_is_a_compare_and_swap(repo, origin, tiny_tensors):
    a = repo.commit_tensors(tiny_tensors(0), FILES, "a")
    b = repo.commit_tensors(tiny_tensors(1), FILES, "b")
    push(repo, origin, ["main"])
    with pytest.raises(RefMovedError, match="remote main moved"):
        origin.swap_ref("main", a.id, expected=None, message="push")  # "create" but it exists
    with pytest.raises(RefMovedError, match="remote main moved"):
        origin.swap_ref("main", a.id, expected=a.id, message="push")  # it is at b, not a
    origin.swap_ref("main", a.id, expected=b.id, message="push --force")
    assert origin.branch("main") == a.id


def test_s3_conditional_write_refuses_a_writer_that_lost_the_race(repo, make_remote, tiny_tensors):
    """Between our read of the ref (with its ETag) and our write, another push moves it: S3 answers 412."""
    origin = make_remote("s3")
    a = repo.commit_tensors(tiny_tensors(0), FILES, "a")
    push(repo, origin, ["main"])
    b = repo.commit_tensors(tiny_tensors(1), FILES, "b")
    push(repo, origin, ["main"])  # objects and commit of b are there
    assert origin.branch("main") == b.id  # we read b (and its ETag) ...
    other = Remote("origin", origin.url, endpoint_url=origin.fs.client_kwargs["endpoint_url"])
    other.fs.pipe_file(other.path("refs/heads/main"), f"{a.id}\n".encode())  # ... another writer moves it ...
    with pytest.raises(RefMovedError, match="remote main moved: pull and merge"):
        origin.swap_ref("main", b.id, expected=b.id, message="push")  # ... so our conditional write is refused
    assert origin.branch("main") == a.id  # the other writer's move stands


def test_corrupt_object_on_remote_is_refused_naming_it(repo, origin, tiny_tensors, tmp_path, damage):
    c = repo.commit_tensors(tiny_tensors(0), FILES, "v1")
    push(repo, origin, ["main"])
    victim = repo.manifest(c).tensors["embed.weight"].id
    damage(origin, origin.object_path(victim))
    report = fsck_remote(origin)
    assert not report.ok and any(victim in p for p in report.problems)
    with Repository.init(tmp_path / "clone") as clone:
        with pytest.raises(StoreError, match=f"refused object {victim}"):
            fetch(clone, origin)
        assert not clone.objects.has(victim)  # never stored; the verified others stay for a resumed fetch
        assert not list((clone.path / "objects").rglob(".tmp-*"))  # nor left behind as a temp file
        assert clone.commits.count() == 0
        assert clone.refs.as_dict() == {}
        assert fsck(clone).ok


def test_corrupt_commit_on_remote_is_refused(repo, origin, tiny_tensors, tmp_path):
    c = repo.commit_tensors(tiny_tensors(0), FILES, "v1")
    push(repo, origin, ["main"])
    p = origin.commit_path(c.id)
    origin.fs.pipe_file(p, origin.fs.cat_file(p).replace(b"v1", b"v2"))
    report = fsck_remote(origin)
    assert not report.ok and any(c.id in p for p in report.problems)
    with Repository.init(tmp_path / "clone") as clone, pytest.raises(StoreError, match=f"commit {c.id}"):
        fetch(clone, origin)


def test_missing_object_on_remote_is_refused_naming_it(repo, origin, tiny_tensors, tmp_path):
    c = repo.commit_tensors(tiny_tensors(0), FILES, "v1")
    push(repo, origin, ["main"])
    victim = repo.manifest(c).tensors["head.bias"].id
    origin.fs.rm(origin.object_path(victim))
    assert any(f"object {victim} is missing" in p for p in fsck_remote(origin).problems)
    with Repository.init(tmp_path / "clone") as clone:
        with pytest.raises(StoreError, match=f"object {victim} is missing"):
            fetch(clone, origin)
        assert set(clone.objects.ids()) <= {c.manifest_id}  # the manifest came first (kept for a resumed fetch)
        assert clone.commits.count() == 0 and clone.refs.as_dict() == {}


def test_delta_encoded_objects_travel_with_their_base(repo, origin, tmp_path):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(128, 128, generator=g).to(torch.bfloat16)
    repo.commit_tensors({"w": w}, FILES, "v1")
    push(repo, origin, ["main"])
    clone = Repository.init(tmp_path / "clone")
    fetch(clone, origin)  # the base arrives first; the delta later decodes against the local copy
    w2 = w.clone()
    w2[0, :8] += 1
    head = repo.commit_tensors({"w": w2}, FILES, "v2")
    new_id = repo.manifest(head).tensors["w"].id
    assert repo.objects.dependencies(new_id), "the second version should be stored as a delta"
    push(repo, origin, ["main"])
    assert fsck_remote(origin).ok
    with clone:
        assert fetch(clone, origin).objects == 2  # the delta and the manifest
        assert torch.equal(clone.objects.get_tensor(new_id, verify=True), w2)
    with Repository.init(tmp_path / "partial") as partial:  # only v2's objects: its delta base comes too
        fetch(partial, origin, objects_for=[head.id])
        assert torch.equal(partial.objects.get_tensor(new_id, verify=True), w2)


def test_corrupt_delta_base_on_remote_refuses_the_delta_too(repo, origin, tmp_path, damage):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(128, 128, generator=g).to(torch.bfloat16)
    v1 = repo.commit_tensors({"w": w}, FILES, "v1")
    w2 = w.clone()
    w2[0, :8] += 1
    v2 = repo.commit_tensors({"w": w2}, FILES, "v2")
    push(repo, origin, ["main"])
    base, delta = repo.manifest(v1).tensors["w"].id, repo.manifest(v2).tensors["w"].id
    damage(origin, origin.object_path(base))
    problems = fsck_remote(origin).problems
    assert any(f"refused object {base}" in p for p in problems)
    assert any(f"refused object {delta}: its delta base {base}" in p for p in problems)
    with Repository.init(tmp_path / "clone") as clone, pytest.raises(StoreError, match=f"refused object {base}"):
        fetch(clone, origin, objects_for=[v2.id])


def test_directory_lock_of_a_dead_pusher_is_broken_at_once(repo, make_remote, tiny_tensors):
    origin = make_remote("dir")
    head = repo.commit_tensors(tiny_tensors(0), FILES, "v1")
    lock = Path(origin.root) / "locks" / "main.lock"
    lock.parent.mkdir(parents=True)
    import socket
    import subprocess
    import sys
    import time

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    lock.write_text(f'{{"pid": {pid}, "host": "{socket.gethostname()}", "since": {time.time()}, '
                    f'"lease_s": 3600, "token": "killed"}}')
    started = time.monotonic()
    push(repo, origin, ["main"])
    assert time.monotonic() - started < 2  # not the lease (an hour): the pid is gone on this host
    assert origin.branch("main") == head.id and not lock.exists()


def test_push_to_a_filesystem_without_conditional_writes_is_refused(repo, tiny_tensors):
    repo.commit_tensors(tiny_tensors(0), FILES, "v1")
    remote = Remote("mem", "memory://somewhere/repo")
    with pytest.raises(StoreError, match="no conditional write") as info:
        push(repo, remote, ["main"])
    assert "\n" not in str(info.value)
    assert not remote.fs.exists(remote.path("objects"))


def test_unknown_url_scheme_is_a_clear_error():
    with pytest.raises(StoreError, match="cannot open 'nosuchscheme://bucket/x'"):
        Remote("origin", "nosuchscheme://bucket/x")


def test_unreachable_s3_endpoint_is_one_line(repo, tiny_tensors, s3_bucket, tmp_path):
    import socket

    repo.commit_tensors(tiny_tensors(0), FILES, "v1")
    with socket.socket() as s:  # a free port: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    remote = Remote("origin", s3_bucket + "/repo", endpoint_url=f"http://127.0.0.1:{port}",
                    config_kwargs={"retries": {"max_attempts": 1}, "connect_timeout": 1})
    remote.fs.retries = 1  # s3fs retries a refused connection with back-off otherwise (about 2 s)
    with pytest.raises(StoreError, match=r"remote origin \(s3://.*\): .* failed: Could not connect") as info:
        push(repo, remote, ["main"])
    assert "\n" not in str(info.value)
    with Repository.init(tmp_path / "clone") as clone, pytest.raises(StoreError, match="failed: Could not connect"):
        fetch(clone, remote)


def test_missing_bucket_and_missing_directory_are_one_line_errors(repo, s3_endpoint, s3_bucket, tmp_path):
    for remote in (
        Remote("origin", "s3://no-such-bucket-rewardkit/repo", endpoint_url=s3_endpoint),
        Remote("origin", str(tmp_path / "nothing-here")),
    ):
        with Repository.init(tmp_path / f"clone-{remote.is_s3}") as clone:
            with pytest.raises(StoreError, match="no repository at|fetch failed") as info:
                fetch(clone, remote)
            assert "\n" not in str(info.value)
            assert clone.refs.as_dict() == {}


def test_directory_remote_files_are_readable_by_the_team(repo, make_remote, tiny_tensors):
    """mkstemp makes 0600 files: a remote on a shared mount must be readable by the others who fetch."""
    origin = make_remote("dir")
    c = repo.commit_tensors(tiny_tensors(0), FILES, "v1")
    push(repo, origin, ["main"])
    for p in (origin.object_path(c.manifest_id), origin.commit_path(c.id), origin.path("refs/heads/main")):
        assert Path(p).stat().st_mode & 0o444 == 0o444, p


def test_push_to_a_directory_whose_parent_is_missing_is_refused(repo, tiny_tensors, tmp_path):
    """A typo or an unmounted share must not silently become a new folder on the local disk."""
    repo.commit_tensors(tiny_tensors(0), FILES, "v1")
    remote = Remote("origin", str(tmp_path / "not-mounted" / "team" / "models"))
    with pytest.raises(StoreError, match="not-mounted/team does not exist") as info:
        push(repo, remote, ["main"])
    assert "\n" not in str(info.value) and not (tmp_path / "not-mounted").exists()
    with Repository.init(tmp_path / "clone") as clone, pytest.raises(StoreError, match="no repository at"):
        fetch(clone, remote)


def test_fsck_remote_notes_leftovers_and_names_a_damaged_ref(repo, origin, tiny_tensors):
    c = repo.commit_tensors(tiny_tensors(0), FILES, "v1")
    push(repo, origin, ["main"])
    origin.fs.makedirs(origin.path("objects", "ab"), exist_ok=True)
    origin.fs.pipe_file(origin.path("objects", "ab", ".tmp-killed"), b"half an object")  # a killed push's
    stray = "ab" * 32
    origin.fs.pipe_file(origin.object_path(stray), b"blob 1\0x")  # an object no ref uses
    report = fsck_remote(origin)
    assert report.ok, report.problems
    assert report.refs == {"main": c.id} and report.commits == 1 and report.objects == 6
    assert any("temp file" in n for n in report.notes) and any("1 object(s) no remote branch uses" in n
                                                                for n in report.notes)
    origin.fs.pipe_file(origin.path("refs", "heads", "broken"), b"not a commit id\n")
    report = fsck_remote(origin)
    assert not report.ok and report.problems[0].startswith("ref broken:") and "damaged" in report.problems[0]


def test_fetch_lands_commits_and_refs_under_the_write_lock_gc_takes(repo, origin, tiny_tensors, tmp_path,
                                                                    monkeypatch):
    """Fetched commits keep their old created_at: a gc between adding them and moving the refs would collect them."""
    from rewardkit.store.remote import transfer

    c = repo.commit_tensors(tiny_tensors(0), FILES, "v1")
    push(repo, origin, ["main"])
    with Repository.init(tmp_path / "clone") as clone:
        real_exit = transfer.Receiver.__exit__

        def gc_meanwhile(self, *exc):  # a gc after the objects arrived, before the commits are added
            real_exit(self, *exc)
            path = clone.objects.path(c.manifest_id)
            path.chmod(0o644)
            path.unlink()

        monkeypatch.setattr(transfer.Receiver, "__exit__", gc_meanwhile)
        with pytest.raises(StoreError, match=f"object {c.manifest_id} was removed while fetching"):
            fetch(clone, origin)
        assert clone.commits.count() == 0 and clone.refs.as_dict() == {}
        monkeypatch.undo()
        fetch(clone, origin)
        assert clone.refs.get("refs/remotes/origin/main") == c.id and fsck(clone).ok
        held = []
        monkeypatch.setattr(clone.commits, "add", lambda commit: held.append(clone.objects._lock is not None))
        repo.commit_tensors(tiny_tensors(1), FILES, "v2")
        push(repo, origin, ["main"])
        with pytest.raises(StoreError, match="no such commit"):  # the patched add added nothing
            fetch(clone, origin)
        assert held == [True]


def test_objects_for_a_fine_tune_leaves_its_transfer_base_behind(repo, origin, tiny_tensors, tmp_path):
    """A transfer base (params["base"]) is lineage, not a dependency: a partial fetch skips its tensors."""
    base = repo.commit_tensors(tiny_tensors(0), FILES, "base", branch="base")
    tuned = repo.commit_tensors(tiny_tensors(1), FILES, "fine-tune", params={"base": base.id})
    assert tuned.base_commits() == [base.id] and tuned.adapter_base() is None
    push(repo, origin, ["main", "base"])
    with Repository.init(tmp_path / "clone") as clone:
        fetch(clone, origin, ["main"], objects_for=[tuned.id])
        assert clone.commits.has(base.id)  # its metadata came with the lineage
        assert not clone.objects.has(base.manifest_id)
        assert torch.equal(clone.load_tensors(tuned.id)["embed.weight"], tiny_tensors(1)["embed.weight"])
