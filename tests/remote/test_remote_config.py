"""Remotes named in a repository's config.json: add, list, remove, open."""

from __future__ import annotations

import json

import pytest

from rewardkit.errors import RefError, StoreError
from rewardkit.store.remote import fetch, push
from rewardkit.store.remote.config import add_remote, list_remotes, open_remote, remove_remote, storage_options


def test_add_list_open_and_remove(repo, tmp_path, monkeypatch, tiny_tensors):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "shared").mkdir()
    add_remote(repo, "origin", "shared/models")
    add_remote(repo, "s3", "s3://team/rm", endpoint_url="http://127.0.0.1:9000")
    assert list_remotes(repo) == {
        "origin": {"url": str(tmp_path / "shared" / "models"), "endpoint_url": None},
        "s3": {"url": "s3://team/rm", "endpoint_url": "http://127.0.0.1:9000"},
    }
    config = json.loads((repo.path / "config.json").read_text())
    assert config["format"] == "rewardkit" and set(config["remotes"]) == {"origin", "s3"}  # the rest is kept
    origin = open_remote(repo, "origin")
    assert origin.name == "origin" and origin.is_local and origin.root == str(tmp_path / "shared" / "models")

    repo.commit_tensors(tiny_tensors(0), {}, "v1")
    push(repo, origin)
    fetch(repo, origin)
    assert repo.refs.as_dict("refs/remotes/") == {"refs/remotes/origin/main": repo.resolve("main").id}
    remove_remote(repo, "origin")
    assert list(list_remotes(repo)) == ["s3"]
    assert repo.refs.as_dict("refs/remotes/") == {}  # its remote-tracking branches went with it
    assert repo.refs.reflog("refs/remotes/origin/main")[-1].message == "remote: removed origin"


@pytest.mark.parametrize("name, url, error, message", [
    ("origin", "foo://bucket/x", StoreError, "unknown URL scheme 'foo'"),
    ("origin", "  ", StoreError, "empty remote URL"),
    ("bad name", "/tmp/x", RefError, "invalid remote name 'bad name'"),
    ("-x", "/tmp/x", RefError, "invalid remote name '-x'"),
    ("dup", "/tmp/y", StoreError, "remote 'dup' already exists (/tmp/x)"),
])
def test_bad_remote_is_refused_and_config_unchanged(repo, name, url, error, message):
    add_remote(repo, "dup", "/tmp/x")
    before = (repo.path / "config.json").read_bytes()
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        add_remote(repo, name, url)
    assert (repo.path / "config.json").read_bytes() == before


def test_unknown_remote_names_the_known_ones(repo):
    with pytest.raises(StoreError, match=r"unknown remote 'x' \(known: none; add one"):
        open_remote(repo, "x")
    add_remote(repo, "origin", "/tmp/x")
    with pytest.raises(StoreError, match=r"^unknown remote 'x' \(known: origin\)$"):
        open_remote(repo, "x")
    with pytest.raises(StoreError, match=r"unknown remote 'x'"):
        remove_remote(repo, "x")


def test_s3_endpoint_from_the_remote_or_aws_endpoint_url(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    assert storage_options("s3://b/p") == {}
    assert storage_options("s3://b/p", "http://a:1") == {"endpoint_url": "http://a:1"}
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://env:2")
    assert storage_options("s3://b/p") == {"endpoint_url": "http://env:2"}
    assert storage_options("s3://b/p", "http://a:1") == {"endpoint_url": "http://a:1"}  # the remote's own wins
    assert storage_options("/some/dir") == {}  # a directory takes no endpoint
