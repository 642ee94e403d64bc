"""The main job in miniature: the default backbone on the real data in ../shared/data."""

import json

from transformers import AutoModelForSequenceClassification


def test_main_job_in_miniature(cli, tmp_path, shared_data):
    hh = shared_data / "hh-rlhf-harmless-base-test.jsonl.gz"
    qa = shared_data / "qa-feedback-dev.json.gz"
    assert cli("init")[0] == 0
    code, out, err = cli("train", "--data", hh, "--data", qa, "--max-length", "64", "--limit", "8",
                         "--output-dir", "run", "--commit", "-m", "mini main job", "--json")
    assert code == 0, err
    trained = json.loads(out)
    assert trained["train"]["train/pairs"] == 16  # 8 per source, none dropped
    assert trained["train"]["train/prompts_truncated"] > 0  # hh transcripts are longer than 64 tokens
    assert trained["ties_dropped"] > 0  # qa-feedback's training split has ties
    assert trained["validation"]["by_source"].keys() == {"hh-rlhf:" + hh.name, "qa-feedback:" + qa.name}

    code, out, err = cli("eval", "--model", "main", "--data", hh, "--split", "test", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert 150 < report["n_pairs"] < 320 and report["n_ties"] == 0  # ~10% of 2312 pairs, split by prompt
    assert 0.0 <= report["accuracy"] <= 1.0 and 0.0 <= report["ece"] <= 1.0

    code, out, _ = cli("log", "--json")
    assert json.loads(out)[0]["params"]["config"]["limit"] == 8
    assert cli("checkout", "main", "--to", "checkout")[0] == 0
    assert AutoModelForSequenceClassification.from_pretrained(tmp_path / "checkout").config.num_labels == 1
    code, out, _ = cli("score", "main", "Human: hi\n\nAssistant: hello", "--json")
    assert code == 0 and isinstance(json.loads(out)[0]["reward"], float)
