"""The ref verbs from the command line: branch, switch, tag, alias, reset, revert, reflog, log --graph."""

import json

import pytest
from cli_helpers import repo_snapshot
from safetensors.torch import load_file, save_file


@pytest.fixture
def history(cli, tmp_path, tiny_model_dir):
    """main: base -> tuned (metrics test/accuracy 0.5 and 0.7); branch exp from base with one commit."""
    from rewardkit.store import Repository

    assert cli("init")[0] == 0
    tensors = load_file(tiny_model_dir / "model.safetensors")
    with Repository.open(tmp_path / ".rewardkit") as repo:
        repo.commit_dir(tiny_model_dir, "base", metrics={"test/accuracy": 0.5})
        tuned = tmp_path / "tuned"
        tuned.mkdir()
        for f in tiny_model_dir.iterdir():
            (tuned / f.name).write_bytes(f.read_bytes())
        head = next(n for n in tensors if "classifier" in n or "score" in n)
        save_file(tensors | {head: tensors[head] + 1}, tuned / "model.safetensors", metadata={"format": "pt"})
        repo.commit_dir(tuned, "tuned", metrics={"test/accuracy": 0.7})
    return tmp_path / ".rewardkit"


def test_branch_switch_commit_and_graph(cli, history, tiny_model_dir):
    assert cli("branch", "exp", "main~1")[0] == 0
    code, out, _ = cli("switch", "exp")
    assert code == 0 and "Switched to branch exp" in out
    code, out, _ = cli("commit", tiny_model_dir, "-m", "on exp [bold]x[/bold]")
    assert code == 0 and "[exp " in out and "[bold]x[/bold]" in out
    code, out, _ = cli("branch", "--json")
    listed = json.loads(out)
    assert listed["current"] == "exp" and set(listed["branches"]) == {"exp", "main"}
    code, out, _ = cli("log", "--all", "--graph")
    assert code == 0 and "|/" in out and "HEAD -> exp" in out and "on exp [bold]x[/bold]" in out
    code, out, _ = cli("log", "--json")
    assert [c["message"] for c in json.loads(out)] == ["on exp [bold]x[/bold]", "base"]


def test_tag_alias_gates_reset_revert_reflog(cli, history):
    assert cli("tag", "v1", "main")[0] == 0
    before = repo_snapshot(history)
    code, _, err = cli("tag", "v1", "main~1")
    assert code == 2 and "tag 'v1' already exists" in err and err.count("\n") == 1
    code, _, err = cli("alias", "set", "production", "main~1", "--require", "test/accuracy>=0.60")
    assert code == 2 and "test/accuracy is 0.5, the gate needs >= 0.6" in err and err.count("\n") == 1
    assert repo_snapshot(history) == before
    code, out, _ = cli("alias", "set", "production", "v1", "--require", "test/accuracy>=0.60")
    assert code == 0 and "passed 1 gate" in out
    code, out, _ = cli("alias", "list", "--json")
    assert set(json.loads(out)) == {"production"}
    assert cli("reset", "--to", "main~1")[0] == 0
    code, out, _ = cli("revert", "production")  # undo the tuned commit's change, on top of main
    assert code == 0 and 'Revert "tuned"' in out
    code, out, _ = cli("reflog", "main", "--json")
    assert [e["message"].split(":")[0] for e in json.loads(out)] == ["commit", "commit", "reset", "revert"]
    code, out, _ = cli("reflog")
    assert "aliases/production" in out and "tags/v1" in out
    assert cli("alias", "rm", "production")[0] == 0


@pytest.mark.parametrize("args,message", [
    (("branch", "../x"), "invalid branch name '../x'"),
    (("branch", "a..b"), "invalid branch name 'a..b'"),
    (("branch", "--", "-rf"), "invalid branch name '-rf'"),
    (("tag", "x y"), "invalid tag name 'x y'"),
    (("alias", "set", "../prod", "main"), "invalid alias name '../prod'"),
    (("branch", "-d", "main"), "cannot delete branch 'main': it is the current branch"),
    (("switch", "nope"), "no branch named 'nope'"),
    (("branch", "x", "nope"), "unknown ref 'nope'"),
    (("reset", "nope"), "unknown ref 'nope'"),
    (("alias", "set", "production", "main", "--require", "accuracy"), "invalid gate 'accuracy'"),
    (("alias", "rm", "nope"), "no alias named 'nope'"),
    (("reflog", "nope"), "no ref named 'nope' has ever existed"),
])
def test_bad_ref_input_is_one_line_and_changes_nothing(cli, history, args, message):
    before = repo_snapshot(history)
    head = (history / "HEAD").read_bytes()
    code, out, err = cli(*args)
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert repo_snapshot(history) == before and (history / "HEAD").read_bytes() == head


def test_graph_rows_draw_branches_merges_and_octopus_like_git():
    from rewardkit.cli.render import graph_rows
    from rewardkit.store.commits import Commit

    def c(id, parents, t):
        return Commit(id=id, manifest_id="", parents=parents, message=id, author="a", created_at=t)

    def drawn(commits):
        return [(g, x.id if x else None) for g, x in graph_rows(commits)]

    merge = [c("M", ["m1", "b1"], "5"), c("m1", ["base"], "4"), c("b1", ["base"], "3"), c("base", [], "1")]
    assert drawn(merge) == [("*", "M"), ("|\\", None), ("* |", "m1"), ("| *", "b1"), ("|/", None), ("*", "base")]
    octopus = [c("M", ["a", "b", "c"], "9"), *(c(x, ["o"], t) for x, t in zip("abc", "432", strict=True)),
               c("o", [], "1")]
    assert [g for g, _ in drawn(octopus)] == ["*", "|\\__", "* | |", "| * |", "|/ /", "| *", "|/", "*"]
    assert drawn([c("x", [], "2"), c("y", [], "1")]) == [("*", "x"), ("*", "y")]
