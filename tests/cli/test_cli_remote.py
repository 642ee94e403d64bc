"""``rewardkit remote|push|fetch|pull|clone`` end to end on a tiny reward model, against a directory and moto S3."""

import json
from pathlib import Path

import pytest
from cli_helpers import repo_bytes, variant

from rewardkit.store import Repository


@pytest.fixture(params=["directory", "s3"])
def remote_url(request, tmp_path) -> tuple[str, list[str]]:
    """(URL, extra options for `remote add`/`clone`) of an empty remote of each kind."""
    if request.param == "directory":
        return str(tmp_path / "shared-models"), []
    bucket = request.getfixturevalue("s3_bucket")
    return f"{bucket}/models", ["--endpoint-url", request.getfixturevalue("s3_endpoint")]


def head(repo: Path, ref: str = "main") -> str:
    with Repository.open(repo) as r:
        return r.resolve(ref).id


def test_two_clones_push_pull_fast_forward_then_diverge_merge_and_push(cli, tmp_path, tiny_model_dir, remote_url):
    url, opts = remote_url
    a, b = tmp_path / "a", tmp_path / "b"
    assert cli("init", a)[0] == 0
    assert cli("commit", tiny_model_dir, "-m", "base", "--repo", a)[0] == 0
    code, out, err = cli("remote", "add", "origin", url, *opts, "--repo", a)
    assert code == 0, err
    code, out, err = cli("push", "--repo", a)
    assert code == 0, err
    assert "push origin:" in out and " objects (" in out and "main -> " in out

    code, out, err = cli("clone", url, b, *opts)  # B clones
    assert code == 0, err
    assert f"Cloned into {b}" in out and "branch main" in out
    assert head(b) == head(a)
    code, out, _ = cli("branch", "-a", "--repo", b)
    assert "* main" in out and "remotes/origin/main" in out

    assert cli("commit", variant(tiny_model_dir, tmp_path / "v2", 0.01), "-m", "v2 by B", "--repo", b)[0] == 0
    code, out, err = cli("push", "origin", "main", "--repo", b)  # only the changed tensors travel
    assert code == 0, err
    code, out, err = cli("fetch", "--repo", a)  # A fetches: origin/main moves, main does not
    assert code == 0, err
    assert "fetch origin: " in out and "1 commit; origin/main -> " in out
    messages = lambda *args: [c["message"] for c in json.loads(cli("log", "--json", *args, "--repo", a)[1])]  # noqa: E731
    assert messages() == ["base"] and messages("--all") == ["v2 by B", "base"]  # log --all: remote-tracking too
    code, out, err = cli("pull", "--repo", a)  # A pulls: a fast-forward
    assert code == 0, err
    assert "Fast-forward main" in out
    assert head(a) == head(b)

    assert cli("commit", variant(tiny_model_dir, tmp_path / "v3a", 0.02), "-m", "v3 by A", "--repo", a)[0] == 0
    assert cli("commit", variant(tiny_model_dir, tmp_path / "v3b", -0.02), "-m", "v3 by B", "--repo", b)[0] == 0
    assert cli("push", "--repo", a)[0] == 0
    before = repo_bytes(b)
    code, out, err = cli("push", "--repo", b)  # the second pusher is refused, nothing overwritten
    assert code == 2 and "remote main moved: pull and merge" in err and len(err.strip().splitlines()) == 1
    assert repo_bytes(b) == before
    code, out, err = cli("pull", "--repo", b)  # fetch, then a weight-space merge
    assert code == 0, err
    assert "Merge made by the 'average' strategy" in out
    with Repository.open(b) as rb:
        merged = rb.resolve("main")
        assert merged.parents == [rb.resolve("main~1").id, head(a)]
    code, out, err = cli("push", "--repo", b)
    assert code == 0, err
    assert cli("pull", "--repo", a)[0] == 0
    assert head(a) == head(b) == merged.id
    code, out, _ = cli("log", "--all", "--json", "--repo", a)
    assert code == 0 and {c["message"] for c in json.loads(out)} == {"base", "v2 by B", "v3 by A", "v3 by B",
                                                                       "merge origin/main into main (average)"}


def test_remote_add_list_rm_and_tracking_refs(cli, tmp_path, tiny_model_dir):
    assert cli("init")[0] == 0
    assert cli("commit", tiny_model_dir, "-m", "base")[0] == 0
    code, out, err = cli("remote", "add", "origin", "shared")
    assert code == 0, err
    assert f"Added remote origin: {tmp_path / 'shared'}" in out  # stored absolute
    assert cli("remote", "add", "backup", "s3://bucket/rm", "--endpoint-url", "http://127.0.0.1:1")[0] == 0
    code, out, _ = cli("remote", "list", "--json")
    assert json.loads(out) == {"backup": {"url": "s3://bucket/rm", "endpoint_url": "http://127.0.0.1:1"},
                               "origin": {"url": str(tmp_path / "shared"), "endpoint_url": None}}
    assert cli("push")[0] == 0
    code, out, _ = cli("branch", "-a", "--json")
    assert json.loads(out)["remotes"] == {"origin/main": head(tmp_path / ".rewardkit")}
    code, out, _ = cli("log", "--all")
    assert "origin/main" in out  # decorated as git does, not refs/remotes/origin/main
    assert "refs/remotes" not in out
    code, out, err = cli("remote", "rm", "origin")
    assert code == 0, err
    code, out, _ = cli("branch", "-a", "--json")
    assert json.loads(out)["remotes"] == {}
    code, out, _ = cli("remote", "list")
    assert out.strip() == "backup  s3://bucket/rm  (endpoint http://127.0.0.1:1)"


@pytest.mark.parametrize("args, message", [
    (("push", "nowhere"), "unknown remote 'nowhere' (known: origin)"),
    (("fetch", "nowhere"), "unknown remote 'nowhere' (known: origin)"),
    (("pull", "nowhere"), "unknown remote 'nowhere' (known: origin)"),
    (("remote", "add", "x", "foo://bucket/rm"), "unknown URL scheme 'foo'"),
    (("remote", "add", "origin", "elsewhere"), "remote 'origin' already exists"),
    (("remote", "add", "bad..name", "elsewhere"), "invalid remote name 'bad..name'"),
    (("remote", "rm", "nowhere"), "unknown remote 'nowhere'"),
    (("clone", "foo://bucket/rm", "c"), "unknown URL scheme 'foo'"),
    (("clone", "does-not-exist", "c"), "does not exist"),
    (("push", "origin", "no-such-branch"), "cannot push no-such-branch: no such branch"),
    (("pull", "origin", "no-such-branch"), "remote origin has no branch 'no-such-branch'"),
])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(cli, tmp_path, tiny_model_dir, args, message):
    assert cli("init")[0] == 0
    assert cli("commit", tiny_model_dir, "-m", "base")[0] == 0
    assert cli("remote", "add", "origin", "shared")[0] == 0
    assert cli("push")[0] == 0
    before = repo_bytes(tmp_path / ".rewardkit")
    code, out, err = cli(*args)
    assert code == 2, (out, err)
    assert message in err and len(err.strip().splitlines()) == 1
    assert repo_bytes(tmp_path / ".rewardkit") == before
    assert not (tmp_path / "c").exists()


def test_unreachable_s3_endpoint_is_one_line_and_changes_nothing(cli, tmp_path, tiny_model_dir, monkeypatch):
    import socket

    pytest.importorskip("s3fs", reason="s3fs is not installed: S3 remote tests skipped")
    for name, value in {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1",
                        "AWS_MAX_ATTEMPTS": "1", "AWS_RETRY_MODE": "standard"}.items():
        monkeypatch.setenv(name, value)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert cli("init")[0] == 0
    assert cli("commit", tiny_model_dir, "-m", "base")[0] == 0
    assert cli("remote", "add", "origin", "s3://bucket/rm", "--endpoint-url", f"http://127.0.0.1:{port}")[0] == 0
    before = repo_bytes(tmp_path / ".rewardkit")
    for args in (("fetch",), ("push",), ("pull",), ("clone", "s3://bucket/rm", "c", "--endpoint-url", f"http://127.0.0.1:{port}")):
        code, out, err = cli(*args)
        assert code == 2, (args, out, err)
        assert "(s3://bucket/rm)" in err and len(err.strip().splitlines()) == 1
        assert repo_bytes(tmp_path / ".rewardkit") == before
    assert not (tmp_path / "c").exists()


def test_partial_clone_checkout_fsck_and_checkout_from(cli, tmp_path, tiny_model_dir):
    origin = tmp_path / "origin-repo"
    assert cli("init", origin)[0] == 0
    assert cli("commit", tiny_model_dir, "-m", "v1", "--repo", origin)[0] == 0
    assert cli("commit", variant(tiny_model_dir, tmp_path / "v2", 0.5), "-m", "v2", "--repo", origin)[0] == 0
    assert cli("remote", "add", "origin", "shared", "--repo", origin)[0] == 0
    assert cli("push", "--repo", origin)[0] == 0
    v1 = head(origin, "main~1")

    code, out, err = cli("clone", "shared", "serve", "--filter", "main", "--json")
    assert code == 0, err
    cloned = json.loads(out)
    assert cloned["partial"] == "main" and cloned["commits"] == 2
    with Repository.open(tmp_path / "serve") as r:
        assert r.manifest("main").tensors  # main's model is here
        assert not r.objects.has(r.resolve("main~1").manifest_id)  # v1's is not
    code, out, err = cli("checkout", "main~1", "--to", "out1", "--repo", "serve")
    assert code == 2 and "was not fetched (partial clone of origin): run `rewardkit fetch`" in err
    assert not (tmp_path / "out1").exists()
    code, out, err = cli("fsck", "--json", "--repo", "serve")
    report = json.loads(out)
    assert code == 0 and report["ok"], out
    assert [f["name"] for f in report["findings"] if f["problem"] == "not fetched"] == [v1]

    code, out, err = cli("checkout", "--from", "origin", "main~1", "--to", "out1", "--repo", "serve")
    assert code == 0, err
    assert (tmp_path / "out1" / "model.safetensors").is_file()
    assert cli("fetch", "--repo", "serve")[0] == 0  # everything: no longer partial
    code, out, _ = cli("fsck", "--json", "--repo", "serve")
    assert json.loads(out)["findings"] == []
    assert "partial_clone" not in json.loads((tmp_path / "serve" / "config.json").read_text())


def test_pull_ff_only_refuses_a_diverged_branch(cli, tmp_path, tiny_model_dir):
    a, b = tmp_path / "a", tmp_path / "b"
    assert cli("init", a)[0] == 0
    assert cli("commit", tiny_model_dir, "-m", "base", "--repo", a)[0] == 0
    assert cli("remote", "add", "origin", "shared", "--repo", a)[0] == 0
    assert cli("push", "--repo", a)[0] == 0
    assert cli("clone", "shared", b)[0] == 0
    assert cli("commit", variant(tiny_model_dir, tmp_path / "x", 0.1), "-m", "x", "--repo", b)[0] == 0
    assert cli("push", "--repo", b)[0] == 0
    assert cli("commit", variant(tiny_model_dir, tmp_path / "y", 0.2), "-m", "y", "--repo", a)[0] == 0
    before = head(a)
    code, out, err = cli("pull", "--ff-only", "--repo", a)
    assert code == 2 and "diverged: merge or rebase" in err and len(err.strip().splitlines()) == 1
    assert head(a) == before


def test_wrong_credentials_are_one_line_and_change_nothing(cli, tmp_path, tiny_model_dir, s3_bucket, s3_endpoint,
                                                           monkeypatch):
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin

    url = f"{s3_bucket}/models"
    assert cli("init")[0] == 0
    assert cli("commit", tiny_model_dir, "-m", "base")[0] == 0
    assert cli("remote", "add", "origin", url, "--endpoint-url", s3_endpoint)[0] == 0
    assert cli("push")[0] == 0
    monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)  # moto now checks keys against its IAM
    monkeypatch.setattr(ActionAuthenticatorMixin, "request_count", 0)
    before = repo_bytes(tmp_path / ".rewardkit")
    for args in (("fetch",), ("push", "--force"), ("pull",), ("clone", url, "c", "--endpoint-url", s3_endpoint)):
        code, out, err = cli(*args)
        assert code == 2, (args, out, err)
        assert f"({url})" in err and "Access Key Id you provided does not exist" in err, err
        assert len(err.strip().splitlines()) == 1
        assert repo_bytes(tmp_path / ".rewardkit") == before
    assert not (tmp_path / "c").exists()


def test_transfer_bar_counts_objects_and_bytes_and_the_summary_says_what_moved():
    from rewardkit.cli.render import TransferBar, transfer_summary
    from rewardkit.store.remote import TransferReport

    with TransferBar() as bar:
        bar.start("fetch origin", 2, 3072)
        bar.advance(1024)
        bar.advance(2048)
        (task,) = bar._progress.tasks
        assert (task.description, task.completed, task.total, task.fields["done"], task.fields["objects"]) == (
            "fetch origin", 3072, 3072, 2, 2)
        bar.start("fetch origin", 1, 10)  # a second transfer replaces the first bar
        assert [t.total for t in bar._progress.tasks] == [10]
    report = TransferReport(commits=1, objects=2, bytes=3072, refs={"refs/remotes/origin/main": "ab" * 32})
    assert transfer_summary("fetch origin", report) == (
        "fetch origin: 2 objects (3.0 KiB), 1 commit; origin/main -> ababababab")


@pytest.mark.parametrize("command", [("remote",), ("push",), ("fetch",), ("pull",), ("clone",)])
def test_help_explains_each_verb(cli, command):
    code, out, _ = cli(*command, "--help")
    assert code == 0
    assert {"remote": "fsspec URL", "push": "compare-and-swap", "fetch": "<remote>/<branch>",
            "pull": "fast-forward", "clone": "Partial clone"}[command[0]] in " ".join(out.split())


def test_fsck_remote_finds_a_flipped_byte_naming_the_object(cli, tmp_path, tiny_model_dir):
    assert cli("init")[0] == 0
    assert cli("commit", tiny_model_dir, "-m", "base")[0] == 0
    assert cli("remote", "add", "origin", "shared")[0] == 0
    assert cli("push")[0] == 0
    code, out, err = cli("fsck", "--remote", "origin")
    assert code == 0, err
    assert "fsck origin (" in out and "1 branches, 1 commits" in out and "ok: nothing is wrong" in out
    victim = max((tmp_path / "shared" / "objects").rglob("*"), key=lambda p: p.stat().st_size if p.is_file() else 0)
    victim.chmod(0o644)
    data = victim.read_bytes()
    victim.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    code, out, err = cli("fsck", "--remote", "origin", "--json")
    report = json.loads(out)
    assert code == 1 and not report["ok"]
    assert any(victim.parent.name + victim.name in p for p in report["problems"])
    assert cli("fsck", "--remote", "nowhere")[0] == 2
