"""The CLI end to end on a tiny model: train, commit, log, show, eval, checkout, score."""

import json

from cli_helpers import write_jsonl
from transformers import AutoModelForSequenceClassification, AutoTokenizer


def _pairs(n: int) -> list[dict]:
    return [{"prompt": f"Question {i}: is the sky blue?", "chosen": f"Yes, it is blue ({i}).",
             "rejected": f"No idea, maybe green {i}.", "subset": "even" if i % 2 == 0 else "odd"} for i in range(n)]


def test_train_commit_log_show_eval_checkout_score(cli, tmp_path, tiny_model_dir):
    data = write_jsonl(tmp_path / "pairs.jsonl", _pairs(40))
    assert cli("init")[0] == 0
    code, out, err = cli("train", "--data", data, "--base-model", tiny_model_dir, "--max-length", "32",
                         "--batch-size", "4", "--output-dir", "run", "--commit", "-m", "first", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["train"]["train/pairs"] == 32  # 80% of 40 prompts, none dropped
    assert (tmp_path / "run" / "curves.csv").is_file() and (tmp_path / "run" / "curves.png").is_file()
    commit_id = result["commit"]

    code, out, _ = cli("log", "--json")
    log = json.loads(out)
    assert [c["id"] for c in log] == [commit_id]
    assert log[0]["params"]["config"]["max_length"] == 32
    assert log[0]["data_fingerprint"] and "validation/accuracy" in log[0]["metrics"]

    code, out, _ = cli("show", commit_id[:8], "--json")
    assert code == 0 and json.loads(out)["id"] == commit_id

    code, out, _ = cli("eval", "--model", "main", "--data", data, "--split", "test", "--json", "--plot", "rel.png")
    report = json.loads(out)
    assert code == 0
    assert report["n_pairs"] == 4 and report["n_ties"] == 0
    assert {"accuracy", "accuracy_ci", "longer_wins_accuracy", "ece", "by_subset"} <= report.keys()
    low, high = report["accuracy_ci"]
    assert low <= report["accuracy"] <= high
    assert sum(v["n_pairs"] for v in report["by_subset"].values()) == 4
    assert (tmp_path / "rel.png").stat().st_size > 0

    code, _, err = cli("checkout", "main", "--to", "out")
    assert code == 0, err
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "out")
    assert model.config.num_labels == 1 and model.config.pad_token_id == tokenizer.pad_token_id

    code, out, _ = cli("score", "main", "Yes, it is blue.", "No idea.", "--json")
    from_ref = [row["reward"] for row in json.loads(out)]
    code, out, _ = cli("score", "out", "Yes, it is blue.", "No idea.", "--json")
    assert [row["reward"] for row in json.loads(out)] == from_ref  # the checkout scores like the commit

    code, out, _ = cli("score", "main", "--data", data, "--json")
    rows = json.loads(out)
    assert len(rows) == 40 and all(abs(r["difference"] - (r["chosen"] - r["rejected"])) < 1e-9 for r in rows)


def test_main_tilde_and_second_commit_dedups_unchanged_tensors(cli, tmp_path, tiny_model_dir):
    assert cli("init")[0] == 0
    assert cli("commit", tiny_model_dir, "-m", "base")[0] == 0
    code, out, _ = cli("commit", tiny_model_dir, "-m", "same weights again")
    assert code == 0 and "(0 new objects)" in out  # same tensors, same files, same manifest
    code, out, _ = cli("show", "main~1", "--json")
    assert json.loads(out)["message"] == "base"


def test_help_for_every_command(cli):
    for command in ("init", "train", "eval", "score", "commit", "log", "show", "checkout", "branch", "switch", "tag",
                    "alias", "reset", "revert", "reflog"):
        code, out, _ = cli(command, "--help")
        assert code == 0 and "Usage" in out
