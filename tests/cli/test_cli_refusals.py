"""Refused commands (issue 6): one line naming what and where, exit 2, every byte of the repository unchanged."""

import shutil

import pytest
import torch
from cli_helpers import repo_bytes

from rewardkit.store import Repository


@pytest.fixture
def repo_with_commit(cli, tmp_path, tiny_model_dir):
    assert cli("init")[0] == 0
    assert cli("commit", tiny_model_dir, "-m", "base")[0] == 0
    return tmp_path / ".rewardkit"


@pytest.fixture
def repo_with_refs(tmp_path):
    """./.rewardkit: main (2 commits, test/accuracy 0.55), branch exp, tag v1, alias staging; all files settled."""
    path = tmp_path / ".rewardkit"
    with Repository.init(path) as repo:
        for i in range(2):
            repo.commit_tensors({"w": torch.full((4,), float(i))}, {"config.json": b"{}"}, f"commit {i}",
                                metrics={"test/accuracy": 0.55})
        repo.create_branch("exp")
        repo.create_tag("v1", "main~1")
        repo.set_alias("staging", "main")
    return path


UNKNOWN_REF = [
    (("checkout", "nope", "--to", "out"), ["'nope'"]),
    (("log", "nope~2"), ["'nope'"]),
    (("show", "main~5"), ["'main~5'", "first commit"]),
    (("branch", "new", "nope"), ["'nope'"]),
    (("tag", "v2", "nope"), ["'nope'"]),
    (("alias", "set", "production", "nope"), ["'nope'"]),
    (("reset", "nope"), ["'nope'"]),
    (("revert", "nope"), ["'nope'"]),
    (("switch", "nope"), ["'nope'", "branch"]),
    (("branch", "-d", "nope"), ["'nope'", "branch"]),
    (("alias", "rm", "nope"), ["'nope'", "alias"]),
    (("reflog", "nope"), ["'nope'"]),
]


@pytest.mark.parametrize(("args", "naming"), UNKNOWN_REF, ids=[" ".join(a) for a, _ in UNKNOWN_REF])
def test_an_unknown_ref_or_branch_is_refused(cli, repo_with_refs, args, naming):
    _refused(cli, repo_with_refs, *args, naming=naming)


@pytest.mark.parametrize("name", ["../x", "a..b", "-rf", "x/../../y", "HEAD", "refs/heads/x", "a b", "x.lock"])
@pytest.mark.parametrize("kind", ["branch", "tag", "alias"])
def test_an_invalid_or_path_like_name_is_refused(cli, repo_with_refs, kind, name):
    command = {"branch": ("branch", "--", name), "tag": ("tag", "--", name),
               "alias": ("alias", "set", "--", name, "main")}[kind]
    _refused(cli, repo_with_refs, *command, naming=[f"invalid {kind} name {name!r}"])
    assert not (repo_with_refs.parent / "x").exists() and not (repo_with_refs.parent / "y").exists()


def test_a_dash_name_without_double_dash_is_a_usage_error(cli, repo_with_refs):
    _refused(cli, repo_with_refs, "branch", "-rf", naming=["-r"])


def test_a_tag_that_exists_is_refused(cli, repo_with_refs):
    _refused(cli, repo_with_refs, "tag", "v1", "main", naming=["tag 'v1' already exists", "never move"])


@pytest.mark.parametrize(("kind", "args"), [("branch", ("branch", "exp")), ("tag", ("tag", "exp")),
                                            ("alias", ("alias", "set", "exp", "main"))])
def test_a_name_taken_by_another_kind_of_ref_is_refused(cli, repo_with_refs, kind, args):
    _refused(cli, repo_with_refs, *args, naming=["'exp'"])


def test_deleting_the_current_branch_is_refused(cli, repo_with_refs):
    _refused(cli, repo_with_refs, "branch", "-d", "main", naming=["'main'", "current branch"])


@pytest.mark.parametrize(("gate", "naming"), [
    ("test/accuracy>=0.60", ["test/accuracy", "0.55"]),
    ("test/ece<0.1", ["test/ece"]),  # not stored
    ("test/accuracy>=sixty", ["test/accuracy>=sixty"]),  # malformed
])
def test_a_failing_gate_is_refused(cli, repo_with_refs, gate, naming):
    _refused(cli, repo_with_refs, "alias", "set", "production", "main", "--require", gate, naming=naming)
    _refused(cli, repo_with_refs, "alias", "set", "staging", "main~1", "--require", gate, naming=naming)  # a move too


def _refused(cli, repo, *args, naming=()):
    before = repo_bytes(repo)
    code, out, err = cli(*args)
    assert code == 2, (args, out, err)
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for what in naming:
        assert what in err, (what, err)
    assert repo_bytes(repo) == before, args
    return err


@pytest.mark.parametrize("alone", [True, False])
def test_pickled_weights_are_refused(cli, tmp_path, tiny_model_dir, repo_with_commit, alone):
    """pytorch_model.bin (torch.save: a pickle) is refused as weights, alone or beside model.safetensors."""
    folder = shutil.copytree(tiny_model_dir, tmp_path / "pickled")
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x02}q\x00.")  # a pickle
    if alone:
        (folder / "model.safetensors").unlink()
    _refused(cli, repo_with_commit, "commit", folder, "-m", "pickled",
             naming=[str(folder / "pytorch_model.bin"), "pickled weights are refused", "safetensors only"])
