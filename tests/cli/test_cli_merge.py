"""``rewardkit merge`` on a tiny reward model: fast-forward, merge with --eval, already up to date, refusals."""

import json

import pytest
import torch
from cli_helpers import repo_snapshot, variant, write_jsonl

from rewardkit.store import Repository


@pytest.fixture
def forked(cli, tmp_path, tiny_model_dir):
    """A repository with main = the tiny model, and branches a, b (each one commit ahead) forked from it."""
    assert cli("init")[0] == 0
    with Repository.open(tmp_path / ".rewardkit") as repo:
        base = repo.commit_dir(tiny_model_dir, "base", branch="main").id
        for branch, shift in (("a", 0.01), ("b", -0.03)):
            repo.create_branch(branch, base)
            repo.commit_dir(variant(tiny_model_dir, tmp_path / branch, shift), branch, branch=branch)
    return tmp_path / ".rewardkit", base


def test_fast_forward_merge_with_eval_and_up_to_date(cli, tmp_path, forked):
    repo_path, base = forked
    code, out, err = cli("merge", "a")
    assert code == 0, err
    assert "Fast-forward main" in out
    data = write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": f"q{i}", "chosen": "yes", "rejected": f"no {i}"}
                                                  for i in range(6)])
    code, out, err = cli("merge", "b", "--eval", data, "-m", "WARM of a and b")
    assert code == 0, err
    assert "Merge made by the 'average' strategy" in out and "merged model on pairs.jsonl" in out
    with Repository.open(repo_path) as repo:
        merged = repo.resolve("main")
        a, b = repo.resolve("a"), repo.resolve("b")
        assert merged.parents == [a.id, b.id] and merged.message == "WARM of a and b"
        assert merged.metrics["pairs.jsonl/n_pairs"] == 6 and "pairs.jsonl/accuracy" in merged.metrics
        name = "bert.embeddings.word_embeddings.weight"
        got, ta, tb = (repo.load_tensors(c.id)[name] for c in (merged, a, b))
        assert torch.allclose(got, (ta + tb) / 2, atol=1e-6)
    before = repo_snapshot(repo_path)
    code, out, _ = cli("merge", "b")
    assert code == 0 and out.strip() == "Already up to date."
    assert repo_snapshot(repo_path) == before


def test_merge_json_records_the_recipe(cli, forked):
    code, out, err = cli("merge", "a", "b", "--strategy", "ties", "--density", "0.5", "--lambda", "0.8",
                         "--weights", "1,2,1", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["kind"] == "merge"
    recipe = result["recipe"]
    assert (recipe["strategy"], recipe["density"], recipe["lambda"], recipe["weights"]) == ("ties", 0.5, 0.8, [1, 2, 1])
    assert [s["ref"] for s in recipe["sides"]] == ["main", "a", "b"]


def _one_line_error(cli, repo_path, *args) -> str:
    before = repo_snapshot(repo_path)
    code, out, err = cli("merge", *args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert repo_snapshot(repo_path) == before
    return err


def test_refusals_are_one_line_exit_2_and_change_nothing(cli, tmp_path, tiny_model_dir, forked):
    repo_path, base = forked
    with Repository.open(repo_path) as repo:
        repo.commit_dir(variant(tiny_model_dir, tmp_path / "other", 0.5), "unrelated", branch="other")
        repo.commit_dir(variant(tiny_model_dir, tmp_path / "wide", 0.0, {"hidden_size": 32}), "wide", branch="b")
    assert "unknown ref 'nope'" in _one_line_error(cli, repo_path, "nope")
    assert "refusing to merge unrelated histories" in _one_line_error(cli, repo_path, "other")
    assert cli("merge", "a")[0] == 0  # fast-forward, so the next merge is a real one
    err = _one_line_error(cli, repo_path, "b")
    assert "different architectures: config.json has hidden_size=32 on b but 16" in err
    assert "not a comma-separated list" in _one_line_error(cli, repo_path, "b", "--weights", "1,x")
    assert "unknown merge strategy 'slerp'" in _one_line_error(cli, repo_path, "b", "--strategy", "slerp")


def test_a_merge_with_eval_stores_the_probe_so_diff_needs_no_data(cli, tmp_path, tiny_model_dir):
    """Two trained branches (each with a probe set), merged with --eval: diff against a parent compares behaviour."""
    rows = [{"prompt": f"Question {i}?", "chosen": f"A helpful answer {i}.", "rejected": f"No {i}."} for i in range(60)]
    data = write_jsonl(tmp_path / "pairs.jsonl", rows)
    assert cli("init")[0] == 0
    assert cli("commit", tiny_model_dir, "-m", "base")[0] == 0
    for branch, lr in (("a", "1e-3"), ("b", "3e-3")):  # one seed: the same held-out split, so the same probe
        assert cli("branch", branch, "main")[0] == 0 and cli("switch", branch)[0] == 0
        code, _, err = cli("train", "--data", data, "--base-model", "main", "--max-length", "32", "--seed", "42",
                           "--lr", lr, "--output-dir", f"run-{branch}", "-m", branch, "--json",
                           "--eval-data", data, "--threads", "1")
        assert code == 0, err
    code, _, err = cli("merge", "a", "--eval", data, "-m", "b + a")
    assert code == 0, err
    with Repository.open(tmp_path / ".rewardkit") as repo:
        merged, b = repo.resolve("b"), repo.resolve("b~1")
        assert merged.params["probe"]["pairs"] == b.params["probe"]["pairs"]  # HEAD's probe pairs, new rewards
        assert merged.params["probe"]["rewards"] != b.params["probe"]["rewards"]
    code, out, err = cli("diff", "b~1", "b", "--json")
    assert code == 0, err
    behaviour = json.loads(out)["behaviour"]
    assert behaviour["source"] == "stored probe" and behaviour["missing"] is None, behaviour
    assert behaviour["n_pairs"] == 6 and behaviour["agreement"]["spearman"] is not None
