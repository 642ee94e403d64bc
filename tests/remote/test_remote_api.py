"""rewardkit.api.remote: pull, clone (resumed, partial), checkout --from, on a directory and on moto S3."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rewardkit.api import remote as api
from rewardkit.errors import StoreError
from rewardkit.store import Repository
from rewardkit.store.fsck import fsck
from rewardkit.store.gc import gc
from rewardkit.store.remote.config import add_remote
from rewardkit.store.remote.partial import missing_objects, partial_clone

FILES = {"config.json": b'{"model_type": "tiny"}\n'}


@pytest.fixture(params=["dir", "s3"])
def url(request, tmp_path) -> tuple[str, str | None]:
    """(URL, endpoint) of an empty remote: a directory, or a prefix in a fresh moto bucket."""
    if request.param == "dir":
        return str(tmp_path / "remote"), None
    return request.getfixturevalue("s3_bucket") + "/repo", request.getfixturevalue("s3_endpoint")


@pytest.fixture
def shared(repo, url, tiny_tensors) -> Repository:
    """``repo`` with two commits on main, pushed to ``url`` as origin."""
    add_remote(repo, "origin", url[0], endpoint_url=url[1])
    repo.commit_tensors(tiny_tensors(0), FILES, "v1")
    repo.commit_tensors(tiny_tensors(1), FILES, "v2")
    api.push(repo)
    return repo


class Interrupt:
    """A Progress that presses Ctrl-C after ``after`` objects."""

    def __init__(self, after: int) -> None:
        self.after, self.seen, self.total = after, 0, 0

    def start(self, what: str, objects: int, bytes: int) -> None:  # noqa: A002
        self.total = objects

    def advance(self, bytes: int) -> None:  # noqa: A002
        self.seen += 1
        if self.seen == self.after:
            raise KeyboardInterrupt


def test_interrupted_clone_resumes_and_only_the_rest_travels(shared, url, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        api.clone(url[0], tmp_path / "b", endpoint_url=url[1], jobs=1, progress=Interrupt(after=3))
    assert (tmp_path / "b" / "config.json").is_file()  # kept, to be resumed
    total = shared.stats().objects
    result = api.clone(url[0], tmp_path / "b", endpoint_url=url[1], jobs=1)
    assert 0 < result.report.objects < total  # what arrived before Ctrl-C did not travel again
    assert result.branch == "main" and result.commit == shared.resolve("main").id
    with Repository.open(tmp_path / "b") as b:
        assert b.current_branch() == "main"
        for ref in ("main", "main~1"):
            assert all(torch.equal(b.load_tensors(ref)[n].view(torch.uint8), t.view(torch.uint8))
                       for n, t in shared.load_tensors(ref).items())


def test_clone_refuses_a_non_empty_folder_and_a_remote_without_branches(shared, url, tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="exists and is not an empty folder"):
        api.clone(url[0], tmp_path / "b", endpoint_url=url[1])
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["notes.txt"]
    (tmp_path / "e").mkdir()
    with pytest.raises(StoreError, match="remote origin has no branch or commit 'nosuch'"):
        api.clone(url[0], tmp_path / "e", filter="nosuch", endpoint_url=url[1])
    assert list((tmp_path / "e").iterdir()) == []  # a failed clone leaves the folder as it found it
    empty = tmp_path / "empty-remote"
    empty.mkdir()
    with pytest.raises(StoreError, match="nothing to clone at .*: it has no branches"):
        api.clone(str(empty), tmp_path / "c")
    assert not (tmp_path / "c").exists()


def test_pull_creates_fast_forwards_is_up_to_date_and_merges(shared, url, tmp_path, tiny_tensors):
    with Repository.init(tmp_path / "b") as b:
        add_remote(b, "origin", url[0], endpoint_url=url[1])
        result = api.pull(b)  # main has no commit yet: it starts at origin's
        assert (result.kind, result.new) == ("created", shared.resolve("main").id)
        assert api.pull(b).kind == "up-to-date"
        shared.commit_tensors(tiny_tensors(2), FILES, "v3")
        api.push(shared)
        result = api.pull(b, "origin", "main")
        assert (result.kind, result.new) == ("fast-forward", shared.resolve("main").id)
        assert result.report.commits == 1

        shared.commit_tensors(tiny_tensors(3), FILES, "v4 upstream")
        api.push(shared)
        mine = b.commit_tensors(tiny_tensors(4), FILES, "v4 here")
        result = api.pull(b, strategy="task-arithmetic")
        assert result.kind == "merge"
        assert result.commit.parents == [mine.id, shared.resolve("main").id]
        assert result.commit.params["merge"]["strategy"] == "task-arithmetic"
        assert b.resolve("main").id == result.commit.id


def test_pull_that_cannot_merge_says_diverged_and_leaves_the_branch(shared, url, tmp_path, tiny_tensors):
    with Repository.init(tmp_path / "b") as b:
        add_remote(b, "origin", url[0], endpoint_url=url[1])
        api.pull(b)
        shared.commit_tensors(tiny_tensors(2), FILES, "upstream")
        api.push(shared)
        wider = dict(tiny_tensors(5), **{"embed.weight": torch.zeros(10, 8)})  # a shape the merge cannot combine
        mine = b.commit_tensors(wider, FILES, "wider embedding")
        with pytest.raises(StoreError, match=r"^diverged: merge or rebase: main and origin/main cannot be merged"):
            api.pull(b)
        assert b.resolve("main").id == mine.id


def test_checkout_from_fetches_one_version_only(shared, url, tmp_path):
    with Repository.init(tmp_path / "serve") as s:
        add_remote(s, "origin", url[0], endpoint_url=url[1])
        c = api.checkout_from(s, "origin", "main~1", tmp_path / "out")
        assert c.id == shared.resolve("main~1").id
        assert (tmp_path / "out" / "model.safetensors").is_file()
        assert not missing_objects(s, s.commits.get(c.id))
        assert missing_objects(s, s.resolve("origin/main"))  # the other version stayed on the remote
        assert partial_clone(s.path) == {"remote": "origin", "filter": "main~1"}
        api.fetch(s)
        assert partial_clone(s.path) is None


def test_partial_clone_of_one_branch(shared, url, tmp_path):
    result = api.clone(url[0], tmp_path / "serve", filter="main", endpoint_url=url[1])
    assert result.partial == "main" and result.report.commits == 2
    with Repository.open(tmp_path / "serve") as s:
        assert not missing_objects(s, s.resolve("main"))
        assert missing_objects(s, s.resolve("main~1"))
        with pytest.raises(StoreError, match=r"was not fetched \(partial clone of origin\): run `rewardkit fetch`"):
            api_checkout(s, "main~1", tmp_path / "out")
        assert not (tmp_path / "out").exists()
        before = sorted(s.objects.ids())
        report = gc(s, grace_s=0)  # the commits whose models stayed on the remote are not damage
        assert report.removed_objects == [] and sorted(s.objects.ids()) == before
        assert fsck(s).ok


def test_aws_endpoint_url_is_honoured(repo, s3_bucket, s3_endpoint, tmp_path, monkeypatch, tiny_tensors):
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    add_remote(repo, "origin", s3_bucket + "/repo")  # no endpoint stored: the variable's
    head = repo.commit_tensors(tiny_tensors(0), FILES, "v1")
    api.push(repo)
    assert api.clone(s3_bucket + "/repo", tmp_path / "b").commit == head.id


def api_checkout(repo: Repository, ref: str, to: Path):
    from rewardkit.api import checkout

    return checkout(ref, to, repo=repo)
