"""Bad input: a one-line error naming what and where, exit code 2, repository untouched."""

import gzip
import json

import pytest
from cli_helpers import repo_snapshot, write_jsonl

GOOD = {"prompt": "p", "chosen": "good answer", "rejected": "bad answer"}


@pytest.fixture
def repo_with_commit(cli, tmp_path, tiny_model_dir):
    assert cli("init")[0] == 0
    assert cli("commit", tiny_model_dir, "-m", "base")[0] == 0
    return tmp_path / ".rewardkit"


def _bad_files(tmp_path):
    malformed = tmp_path / "malformed.jsonl"
    malformed.write_text(json.dumps(GOOD) + "\n" + '{"prompt": "p", "chosen": "x",\n')
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    missing = write_jsonl(tmp_path / "missing.jsonl", [GOOD, {"prompt": "p", "chosen": "only chosen"}])
    ties = tmp_path / "ties.json"
    ties.write_text(json.dumps([{"idx": 0, "motivation_app": "x", "cmp_key": "a_b", "instruction": "say hi",
                                 "input": "", "response1": "hi", "response2": "hello",
                                 "annotator1": 0, "annotator2": 0, "annotator3": 1}]))
    non_utf8 = tmp_path / "latin1.jsonl.gz"
    with gzip.open(non_utf8, "wb") as fh:
        fh.write(json.dumps(GOOD).encode() + b"\n" + b'{"prompt": "caf\xe9", "chosen": "a", "rejected": "b"}\n')
    bad_label = tmp_path / "qa.json"
    bad_label.write_text(json.dumps([{"question": "q", "passages": [], "prediction 1": "a", "prediction 2": "b",
                                      "prediction 3": "c", "prediction 4": "d",
                                      "preference": [1, 2, 3, 0, 1, 2]}]))
    return {
        "malformed JSON line": (malformed, [], ["malformed.jsonl:2"]),
        "empty file": (empty, [], ["empty.jsonl", "empty"]),
        "missing field": (missing, [], ["missing.jsonl:2", "rejected"]),
        "unknown format": (write_jsonl(tmp_path / "ok.jsonl", [GOOD]), ["--format", "nope"], ["nope", "hh-rlhf"]),
        "ties only": (ties, [], ["ties.json", "tie"]),
        "non-UTF-8 bytes": (non_utf8, [], ["latin1.jsonl.gz", "UTF-8"]),
        "label outside convention": (bad_label, [], ["qa.json", "preference"]),
    }


@pytest.mark.parametrize("case", ["malformed JSON line", "empty file", "missing field", "unknown format",
                                  "ties only", "non-UTF-8 bytes", "label outside convention"])
@pytest.mark.parametrize("command", ["train", "eval"])
def test_bad_data_exits_2_and_leaves_repo_unchanged(cli, tmp_path, tiny_model_dir, repo_with_commit, case, command):
    path, extra, expected = _bad_files(tmp_path)[case]
    before = repo_snapshot(repo_with_commit)
    if command == "train":
        args = ["train", "--data", path, "--base-model", tiny_model_dir, "--commit", "-m", "x", *extra]
    else:
        args = ["eval", "--model", "main", "--data", path, *extra]
    code, out, err = cli(*args)
    assert code == 2, out + err
    line = err.strip()
    assert line.startswith("error: ") and "\n" not in line
    for needle in expected:
        assert needle.lower() in line.lower(), line
    assert repo_snapshot(repo_with_commit) == before


@pytest.mark.parametrize("ref", ["nope", "main~5", "0000"])
def test_unknown_ref(cli, repo_with_commit, ref):
    before = repo_snapshot(repo_with_commit)
    for args in (["show", ref], ["checkout", ref, "--to", "out"], ["score", ref, "text"]):
        code, _, err = cli(*args)
        assert code == 2 and ref.split("~")[0] in err and err.startswith("error: ")
    assert repo_snapshot(repo_with_commit) == before


def test_backbone_that_does_not_exist(cli, tmp_path, repo_with_commit):
    data = write_jsonl(tmp_path / "ok.jsonl", [GOOD] * 3)
    before = repo_snapshot(repo_with_commit)
    code, _, err = cli("train", "--data", data, "--base-model", tmp_path / "no" / "such" / "model", "--commit")
    assert code == 2 and "no/such/model" in err and "does not exist" in err
    assert repo_snapshot(repo_with_commit) == before


def test_commit_of_a_folder_without_weights(cli, tmp_path, repo_with_commit):
    (tmp_path / "empty_model").mkdir()
    before = repo_snapshot(repo_with_commit)
    code, _, err = cli("commit", tmp_path / "empty_model", "-m", "x")
    assert code == 2 and "model.safetensors" in err
    assert repo_snapshot(repo_with_commit) == before


def test_no_repository(cli):
    code, _, err = cli("log")
    assert code == 2 and "rewardkit init" in err


def test_usage_error_exits_2(cli):
    code, _, _ = cli("train")  # --data is required
    assert code == 2


def test_split_of_a_folder_without_training_config(cli, tmp_path, tiny_model_dir):
    data = write_jsonl(tmp_path / "ok.jsonl", [GOOD] * 3)
    code, _, err = cli("eval", "--model", tiny_model_dir, "--data", data, "--split", "test")
    assert code == 2 and "--split test needs the seed" in err


@pytest.mark.parametrize(("flag", "value"), [("--batch-size", "0"), ("--epochs", "0"), ("--max-length", "2")])
def test_out_of_range_hyperparameter(cli, tmp_path, tiny_model_dir, repo_with_commit, flag, value):
    data = write_jsonl(tmp_path / "ok.jsonl", [GOOD] * 3)
    before = repo_snapshot(repo_with_commit)
    code, _, err = cli("train", "--data", data, "--base-model", tiny_model_dir, flag, value, "--commit")
    assert code == 2 and flag.lstrip("-").replace("-", "_") in err and err.count("\n") == 1
    assert repo_snapshot(repo_with_commit) == before


def test_usage_errors_are_one_line_too(cli):
    code, _, err = cli("train")
    assert code == 2 and err == "error: Missing option '--data'. (see `rewardkit train --help`)\n"
