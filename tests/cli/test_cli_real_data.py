"""The main job in miniature: the default backbone on the real data in ../shared/data."""

import json

from transformers import AutoModelForSequenceClassification


def test_main_job_in_miniature(cli, tmp_path, shared_data):
    hh = shared_data / "hh-rlhf-harmless-base-test.jsonl.gz"
    qa = shared_data / "qa-feedback-dev.json.gz"
    pandalm = shared_data / "pandalm-testset-v1.json.gz"
    assert cli("init")[0] == 0
    code, out, err = cli("train", "--data", hh, "--data", qa, "--eval-data", pandalm, "--max-length", "48",
                         "--limit", "8", "--output-dir", "run", "--commit", "-m", "mini main job", "--json")
    assert code == 0, err
    trained = json.loads(out)
    assert trained["train"]["train/pairs"] == 16  # 8 per source, none dropped
    assert trained["train"]["train/prompts_truncated"] > 0  # hh transcripts are longer than 48 tokens
    assert trained["ties_dropped"] > 0  # qa-feedback's training split has ties
    evaluations = trained["evaluations"]
    assert list(evaluations) == ["validation", "test", pandalm.name]
    assert evaluations["test"]["by_source"].keys() == {"hh-rlhf:" + hh.name, "qa-feedback:" + qa.name}
    assert (evaluations[pandalm.name]["n_pairs"], evaluations[pandalm.name]["n_ties"]) == (894, 105)

    code, out, _ = cli("log", "--json")
    metrics = json.loads(out)[0]["metrics"]
    assert metrics[f"{pandalm.name}/n_pairs"] == 894 and "test/accuracy" in metrics
    assert metrics["test/accuracy"] == round(evaluations["test"]["accuracy"], 5)

    code, out, err = cli("eval", "--model", "main", "--data", hh, "--data", qa, "--split", "test", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["n_pairs"] == evaluations["test"]["n_pairs"]  # the same seeded split as training
    assert abs(report["accuracy"] - evaluations["test"]["accuracy"]) < 1e-9

    assert cli("checkout", "main", "--to", "checkout")[0] == 0
    assert AutoModelForSequenceClassification.from_pretrained(tmp_path / "checkout").config.num_labels == 1
    long_text = "Human: " + "please tell me a long story about a river " * 20 + "Assistant: no."
    _, from_ref, _ = cli("score", "main", long_text, "--json")
    _, from_folder, _ = cli("score", "checkout", long_text, "--json")
    assert json.loads(from_ref) == json.loads(from_folder)  # same truncation: the folder knows max_length
