"""User and data text is printed as it is: rich markup and emoji codes in it stay literal."""

import json
import shutil

import pytest
from cli_helpers import write_jsonl

MESSAGE = "retrain on [/shared/data] [bold]b[/bold] [main abc] :smile:"


def _pairs(n: int) -> list[dict]:
    return [{"prompt": f"Question {i}?", "chosen": f"Yes ({i}).", "rejected": f"No {i}.",
             "subset": "[/x]" if i % 2 else "[bold]"} for i in range(n)]


def test_markup_in_message_and_path_commits_and_log_and_show_keep_working(cli, tmp_path, tiny_model_dir):
    folder = shutil.copytree(tiny_model_dir, tmp_path / "[bold]models[/x]" / "[main abc]")
    assert cli("init")[0] == 0
    code, out, err = cli("commit", folder, "-m", MESSAGE)
    assert code == 0, err
    commit_id = json.loads(cli("log", "--json")[1])[0]["id"]
    assert out.startswith(f"[main {commit_id[:10]}] {MESSAGE}  (")  # git's "[branch id] message" line

    code, out, err = cli("log")
    assert code == 0, err
    assert "[/shared/data]" in out and "[bold]b[/bold]" in out and ":smile:" in out
    code, out, err = cli("show", "main")
    assert code == 0, err
    assert MESSAGE in out

    code, out, err = cli("checkout", "main", "--to", "[bold]out[/x]")
    assert code == 0, err
    assert "into [bold]out[/x]" in out and (tmp_path / "[bold]out[/x]" / "config.json").is_file()


def test_markup_in_data_path_subset_names_and_model_path(cli, tmp_path, tiny_model_dir):
    (tmp_path / "[main abc]").mkdir()
    write_jsonl(tmp_path / "[main abc]" / "[bold]pairs.jsonl", _pairs(6))
    data = "[main abc]/[bold]pairs.jsonl"  # relative to the working folder, tmp_path
    model = shutil.copytree(tiny_model_dir, tmp_path / "[red]model")
    code, out, err = cli("eval", "--model", model, "--data", data)
    assert code == 0, err
    assert "[bold]pairs.jsonl" in out and "[red]model" in out
    assert "subset: [/x]" in out and "subset: [bold]" in out

    code, out, err = cli("score", model, "--data", data)
    assert code == 0, err
    assert "[main abc]/[bold]pairs.jsonl:1" in out


def test_markup_in_scored_texts(cli, tiny_model_dir):
    code, out, err = cli("score", tiny_model_dir, "[bold]loud[/bold]", "[/x] :smile:")
    assert code == 0, err
    assert "[bold]loud[/bold]" in out and "[/x] :smile:" in out


def test_markup_in_output_dir_and_message_of_train(cli, tmp_path, tiny_model_dir):
    data = write_jsonl(tmp_path / "pairs.jsonl", _pairs(20))
    assert cli("init")[0] == 0
    code, out, err = cli("train", "--data", data, "--base-model", tiny_model_dir, "--max-length", "32",
                         "--output-dir", "[bold]run[/x]", "-m", "[main abc] [/x]")
    assert code == 0, err
    assert "model: [bold]run[/x]/model" in out and "subset: [/x]" in out
    commit_id = json.loads(cli("log", "--json")[1])[0]["id"]
    assert f"committed {commit_id[:10]}: [main abc] [/x]" in out


def test_help_shows_defaults_written_in_brackets(cli):
    code, out, _ = cli("train", "--help")
    assert code == 0 and "runs/<time>" in out


@pytest.mark.parametrize("debug", ["", "1"])
def test_an_unexpected_error_is_one_line_asking_for_a_report(cli, monkeypatch, tiny_model_dir, debug):
    from rewardkit import api

    def broken(*args, **kwargs):
        raise RuntimeError("boom\nsecond line of detail")

    monkeypatch.setattr(api, "score", broken)
    monkeypatch.setenv("REWARDKIT_DEBUG", debug)
    if debug:  # REWARDKIT_DEBUG=1 shows the traceback
        with pytest.raises(RuntimeError, match="boom"):
            cli("score", tiny_model_dir, "text")
        return
    code, out, err = cli("score", tiny_model_dir, "text")
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "RuntimeError: boom" in err and "bug" in err and "REWARDKIT_DEBUG=1" in err


def test_control_characters_in_data_do_not_reach_the_terminal(cli, tiny_model_dir):
    code, out, err = cli("score", tiny_model_dir, "red \x1b[31malert\x1b[0m bell\x07")
    assert code == 0, err
    assert "\x1b" not in out and "\x07" not in out
    assert "red \\x1b[31malert\\x1b[0m bell\\x07" in out


def test_markup_in_ref_names(cli, tiny_model_dir):
    """Branch names cannot hold brackets (as in git); refs typed by the user are echoed literally."""
    assert cli("init")[0] == 0
    code, _, err = cli("commit", tiny_model_dir, "-m", "x", "--branch", "[main abc]")
    assert code == 2 and "invalid branch name '[main abc]'" in err
    assert cli("commit", tiny_model_dir, "-m", "x", "--branch", "exp/lr-1e-5")[0] == 0
    code, out, err = cli("log", "exp/lr-1e-5")
    assert code == 0 and "exp/lr-1e-5" in out, err
    for args in (["show", "[bold]nope[/x]"], ["score", "[/x]", "text"]):
        code, _, err = cli(*args)
        assert code == 2 and args[1] in err and err.count("\n") == 1, err
