"""Bad input: a one-line error naming what and where, exit code 2, repository untouched."""

import gzip
import json
import shutil

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


@pytest.mark.parametrize(("flag", "value", "field"), [
    ("--epochs", "inf", "epochs"), ("--lr", "inf", "learning_rate"), ("--lr", "nan", "learning_rate"),
    ("--max-grad-norm", "nan", "max_grad_norm"), ("--weight-decay", "-inf", "weight_decay"),
    ("--warmup-ratio", "nan", "warmup_ratio"), ("--center-rewards", "inf", "center_rewards_coefficient"),
    ("--seed", "-1", "seed"),
])
def test_non_finite_or_out_of_range_hyperparameter_is_refused_before_data_and_weights_load(
    cli, tmp_path, repo_with_commit, flag, value, field
):
    before = repo_snapshot(repo_with_commit)
    # Neither the data nor the backbone exists: the config is refused before either is read.
    code, _, err = cli("train", "--data", tmp_path / "missing.jsonl", "--base-model", tmp_path / "no-model",
                       flag, value, "--commit")
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"error: {field} ({flag}) must be a finite number") or "whole number" in err, err
    assert value in err
    assert repo_snapshot(repo_with_commit) == before


@pytest.mark.parametrize("where", ["file", "inside a file"])
def test_output_dir_that_is_a_file_is_refused_before_any_slow_work(cli, tmp_path, repo_with_commit, where):
    (tmp_path / "run.txt").write_text("not a folder")
    output_dir = "run.txt" if where == "file" else "run.txt/run"
    before = repo_snapshot(repo_with_commit)
    code, _, err = cli("train", "--data", tmp_path / "missing.jsonl", "--base-model", tmp_path / "no-model",
                       "--output-dir", output_dir, "--commit")
    assert code == 2 and err.count("\n") == 1, err
    assert f"output folder {output_dir}" in err and "run.txt is a file" in err and "--output-dir" in err
    assert repo_snapshot(repo_with_commit) == before


def test_base_model_with_a_two_output_head(cli, tmp_path, two_label_model_dir, repo_with_commit):
    data = write_jsonl(tmp_path / "ok.jsonl", [GOOD] * 3)
    before = repo_snapshot(repo_with_commit)
    for args in (["train", "--data", data, "--base-model", two_label_model_dir, "--commit"],
                 ["eval", "--model", two_label_model_dir, "--data", data],
                 ["score", two_label_model_dir, "text"]):
        code, _, err = cli(*args)
        assert code == 2 and err.count("\n") == 1, err
        assert str(two_label_model_dir) in err and "num_labels=2" in err and "one" in err
    assert repo_snapshot(repo_with_commit) == before


def _edit_config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(("case", "expected"), [
    ("no config.json", ["has no config.json"]),
    ("config.json not JSON", ["config.json", "cannot read"]),
    ("unknown model_type", ["config.json", "cannot read", "nope"]),
    ("two outputs", ["sequence-classification model with 2 outputs", "num_labels=2"]),
    ("backbone, no head", ["BertModel", "not a sequence-classification model"]),
    ("no architectures, two outputs", ["num_labels=2"]),
])
def test_commit_of_a_folder_that_is_not_a_one_output_reward_model(cli, tmp_path, tiny_model_dir,
                                                                   repo_with_commit, case, expected):
    import shutil

    folder = shutil.copytree(tiny_model_dir, tmp_path / "candidate")
    config = folder / "config.json"
    if case == "no config.json":
        config.unlink()
    elif case == "config.json not JSON":
        config.write_text('{"model_type": "bert",')
    elif case == "unknown model_type":
        _edit_config(folder, model_type="nope")
    elif case == "two outputs":
        _edit_config(folder, id2label={"0": "NEG", "1": "POS"}, label2id={"NEG": 0, "POS": 1})
    elif case == "backbone, no head":
        _edit_config(folder, architectures=["BertModel"])
    else:
        _edit_config(folder, architectures=None, id2label=None, label2id=None)
    before = repo_snapshot(repo_with_commit)
    code, _, err = cli("commit", folder, "-m", "x")
    assert code == 2 and err.count("\n") == 1, err
    for needle in expected:
        assert needle in err, err
    assert repo_snapshot(repo_with_commit) == before


def test_commit_of_a_folder_naming_no_architecture_but_a_one_output_config(cli, tmp_path, tiny_model_dir,
                                                                           repo_with_commit):
    import shutil

    folder = shutil.copytree(tiny_model_dir, tmp_path / "candidate")
    _edit_config(folder, architectures=None)  # model_type bert maps to BertForSequenceClassification
    code, out, err = cli("commit", folder, "-m", "no architectures")
    assert code == 0, err
    code, out, err = cli("score", "main", "text", "--json")
    assert code == 0, err


@pytest.mark.parametrize(("plot", "expected"), [
    ("afile/rel.png", "afile is a file"), ("folder", "is a folder"), ("rel.xyz", "no image suffix"),
])
def test_unwritable_plot_is_refused_before_evaluating(cli, tmp_path, tiny_model_dir, plot, expected):
    (tmp_path / "afile").write_text("")
    (tmp_path / "folder").mkdir()
    # The data does not exist: the plot path is refused before anything is read.
    code, _, err = cli("eval", "--model", tiny_model_dir, "--data", tmp_path / "missing.jsonl", "--plot", plot)
    assert code == 2 and err.count("\n") == 1, err
    assert f"plot file {plot}" in err and expected in err and "--plot" in err


def test_plot_folder_is_created(cli, tmp_path, tiny_model_dir):
    data = write_jsonl(tmp_path / "ok.jsonl", [GOOD, {**GOOD, "prompt": "q"}])
    code, out, err = cli("eval", "--model", tiny_model_dir, "--data", data, "--plot", "reports/rel.png")
    assert code == 0, err
    assert (tmp_path / "reports" / "rel.png").stat().st_size > 0 and "reliability diagram: reports/rel.png" in out


@pytest.mark.parametrize(("args", "expected"), [
    (["--max-length", "2"], "max_length (--max-length) must be at least 4 and at most 512"),
    (["--max-length", "100000"], "max_length (--max-length) must be at least 4 and at most 512"),
    (["--batch-size", "0"], "--batch-size"),
])
def test_eval_token_budget_and_batch_size_out_of_range(cli, tmp_path, tiny_model_dir, args, expected):
    data = write_jsonl(tmp_path / "ok.jsonl", [{**GOOD, "prompt": "long " * 600}])
    code, _, err = cli("eval", "--model", tiny_model_dir, "--data", data, *args)
    assert code == 2 and err.count("\n") == 1 and expected in err, err


def test_a_stored_two_output_model_names_the_commit_not_a_temporary_folder(cli, tmp_path, two_label_model_dir,
                                                                          repo_with_commit):
    from rewardkit.store import Repository

    with Repository.discover(repo_with_commit) as repo:  # as an older rewardkit let it in
        commit = repo.commit_dir(two_label_model_dir, "two outputs", branch="sentiment")
    code, _, err = cli("score", "sentiment", "text")
    assert code == 2 and err.count("\n") == 1, err
    assert f"commit {commit.id[:10]} (sentiment)" in err and "num_labels=2" in err and "/tmp" not in err.replace(
        str(tmp_path), "")


@pytest.fixture
def no_tokenizer_dir(tmp_path, tiny_model_dir):
    """The tiny reward model with its weights and config but none of its tokenizer files."""
    folder = tmp_path / "no-tokenizer"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_model_dir / name, folder / name)
    return folder


def test_a_model_folder_without_tokenizer_is_refused(cli, tmp_path, no_tokenizer_dir, repo_with_commit):
    # Old code: transformers built a 5-token vocabulary from config.json, so the folder was
    # committed and scored every text alike ([UNK] for every word).
    for args in (["commit", no_tokenizer_dir, "-m", "no tokenizer"], ["score", no_tokenizer_dir, "a", "b"]):
        code, _, err = cli(*args)
        assert code == 2 and err.count("\n") == 1 and "has no tokenizer" in err, err


def test_a_stored_model_without_tokenizer_names_the_commit_when_rendering_chats(cli, tmp_path, no_tokenizer_dir,
                                                                               repo_with_commit):
    from rewardkit.store import Repository

    with Repository.discover(repo_with_commit) as repo:  # as an older rewardkit let it in
        commit = repo.commit_dir(no_tokenizer_dir, "no tokenizer", branch="bare")
    chat = write_jsonl(tmp_path / "chat.jsonl", [
        {"chosen": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
         "rejected": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "go away"}]}])
    for args in (["score", "bare", "--data", chat], ["score", "bare", "text"]):
        code, _, err = cli(*args)
        assert code == 2 and err.count("\n") == 1, err
        assert f"commit {commit.id[:10]} (bare)" in err and "has no tokenizer" in err, err
        assert "/tmp" not in err.replace(str(tmp_path), ""), err
