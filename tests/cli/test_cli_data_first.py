"""Data is read and checked before any weights load; commits record the fingerprint of every data set."""

import json
import subprocess
import sys

import pytest
from cli_helpers import write_jsonl
from transformers import AutoTokenizer

from rewardkit.data import load_pairs
from rewardkit.models import TextRewardModel
from rewardkit.store import Repository

GOOD = [{"prompt": f"Question {i}?", "chosen": f"A good answer {i}.", "rejected": f"Bad {i}."} for i in range(20)]
CHAT_TEMPLATE = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}<|end|>{% endfor %}"


@pytest.fixture
def no_weights(monkeypatch):
    """``no_weights()`` makes any load of a model's weights (or checkout of a ref) fail the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("weights were loaded before the data was checked")

    def arm():
        monkeypatch.setattr(TextRewardModel, "load", classmethod(refuse))
        monkeypatch.setattr(Repository, "checkout", refuse)

    return arm


@pytest.fixture
def tokenizer_only_dir(tmp_path, tiny_model_dir):
    """A folder with a tokenizer that has a chat template, and no weights at all."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(tmp_path / "tokenizer-only")
    return tmp_path / "tokenizer-only"


def _bad_files(tmp_path):
    missing = write_jsonl(tmp_path / "missing.jsonl", [*GOOD, {"prompt": "p", "chosen": "only chosen"}])
    nan = tmp_path / "nan.jsonl"
    nan.write_text("".join(json.dumps(r) + "\n" for r in GOOD) + '{"prompt": "q", "chosen": "a", "rejected": "b", '
                   '"margin": NaN}\n')
    chat = write_jsonl(tmp_path / "chat.jsonl", [
        {"chosen": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
         "rejected": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "go away"}]},
        {"chosen": [{"role": "user", "content": "hi"}, {"role": "assistant"}],
         "rejected": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "no"}]},
    ])
    return {"missing field": (missing, "missing.jsonl:21: missing field 'rejected'"),
            "NaN margin": (nan, "nan.jsonl:21: field 'margin' must be a finite number"),
            "bad chat message": (chat, "chat.jsonl:2: field 'chosen' must be a list of messages")}


@pytest.mark.parametrize("case", ["missing field", "NaN margin", "bad chat message"])
@pytest.mark.parametrize("where", ["--data", "--eval-data"])
def test_train_data_error_comes_before_any_weights_load(cli, tmp_path, tokenizer_only_dir, no_weights, case, where):
    # Old code: the backbone was loaded first, so every data error paid for the model (about 5 s).
    no_weights()
    bad, message = _bad_files(tmp_path)[case]
    good = write_jsonl(tmp_path / "good.jsonl", GOOD)
    data, eval_data = (bad, good) if where == "--data" else (good, bad)
    code, out, err = cli("train", "--data", data, "--eval-data", eval_data, "--base-model", tokenizer_only_dir,
                         "--output-dir", "run")
    assert code == 2, out + err
    assert message in err and "\n" not in err.strip()
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("case", ["missing field", "NaN margin"])
def test_train_data_error_comes_before_torch_is_imported(tmp_path, case):
    # Old code: the CLI imported torch (about 1.5 s) before it read a line of the data.
    bad, message = _bad_files(tmp_path)[case]
    script = ("import sys; from rewardkit.cli.main import main; "
              f"code = main(['train', '--data', {str(bad)!r}, '--output-dir', {str(tmp_path / 'run')!r}]); "
              "print(code, sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.stdout.split("\n")[0] == "2 []", done.stdout + done.stderr
    assert message in done.stderr


@pytest.mark.parametrize("command", ["eval", "score"])
@pytest.mark.parametrize("case", ["missing field", "NaN margin"])
def test_eval_and_score_data_errors_come_before_the_model_loads(cli, tmp_path, tiny_model_dir, no_weights, command,
                                                                 case):
    assert cli("init")[0] == 0 and cli("commit", tiny_model_dir, "-m", "base")[0] == 0
    bad, message = _bad_files(tmp_path)[case]
    no_weights()
    for model in ("main", tiny_model_dir):
        args = ["eval", "--model", model, "--data", bad] if command == "eval" else ["score", model, "--data", bad]
        code, out, err = cli(*args)
        assert code == 2 and message in err, out + err


def test_commit_records_the_fingerprint_of_every_data_set(cli, tmp_path, tiny_model_dir):
    pairs = [{**r, "subset": "s"} for r in GOOD * 2]
    pairs = [{**r, "prompt": f"{r['prompt']} ({i // 20})"} for i, r in enumerate(pairs)]
    data = write_jsonl(tmp_path / "pairs.jsonl", pairs)
    extra = write_jsonl(tmp_path / "extra.jsonl", GOOD)
    assert cli("init")[0] == 0
    code, out, err = cli("train", "--data", data, "--eval-data", extra, "--base-model", tiny_model_dir,
                         "--max-length", "32", "--batch-size", "8", "--output-dir", "run", "-m", "first", "--json")
    assert code == 0, err
    [commit] = json.loads(cli("log", "--json")[1])
    fingerprints = commit["params"]["fingerprints"]
    parts = load_pairs(data).split(seed=42)
    assert fingerprints == {"train": parts["train"].fingerprint, "validation": parts["validation"].fingerprint,
                            "test": parts["test"].fingerprint, "extra.jsonl": load_pairs(extra).fingerprint}
    assert commit["data_fingerprint"] == fingerprints["train"]
    as_csv = tmp_path / "renamed.csv"
    as_csv.write_text("prompt,chosen,rejected\n" + "".join(f"{r['prompt']},{r['chosen']},{r['rejected']}\n"
                                                           for r in reversed(GOOD)))
    assert load_pairs(as_csv).fingerprint == fingerprints["extra.jsonl"]  # same data, other file and order
