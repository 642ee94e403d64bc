"""``rewardkit diff`` end to end on tiny models: stored probe sets, --probe DATA, text and JSON."""

import json
import shutil

import numpy as np
import pytest
import torch
from cli_helpers import repo_snapshot, write_jsonl
from safetensors.torch import load_file, save_file

from rewardkit.evaluation.agreement import agreement

MESSAGE = "[bold]second[/bold] [main abc] :smile:"


def _pairs(n: int) -> list[dict]:
    return [{"prompt": f"Question {i}: is the sky blue?", "chosen": f"Yes, it is blue ({i})." + " really" * (i % 3),
             "rejected": f"No idea, maybe green {i}.", "subset": "even" if i % 2 == 0 else "odd"} for i in range(n)]


def _train(cli, data, tiny_model_dir, *extra):
    code, out, err = cli("train", "--data", data, "--base-model", tiny_model_dir, "--max-length", "32",
                         "--batch-size", "4", "--output-dir", "run", "--json", *extra)
    assert code == 0, err
    return json.loads(out)


@pytest.fixture
def two_trained(cli, tmp_path, tiny_model_dir):
    """Two commits trained on the same data and split (seed 0), with different learning rates."""
    data = write_jsonl(tmp_path / "pairs.jsonl", _pairs(40))
    assert cli("init")[0] == 0
    _train(cli, data, tiny_model_dir, "-m", "first")
    _train(cli, data, tiny_model_dir, "--lr", "1e-3", "-m", MESSAGE)
    return data


def _scored(cli, ref, data) -> dict[str, tuple[float, float]]:
    code, out, err = cli("score", ref, "--data", data, "--json")
    assert code == 0, err
    return {int(row["location"].rpartition(":")[2]): (row["chosen"], row["rejected"]) for row in json.loads(out)}


def test_train_stores_the_test_split_as_probe_with_the_evaluations_rewards(cli, two_trained, tmp_path):
    from rewardkit.store import Repository
    from rewardkit.store.probe import load_probe

    log = json.loads(cli("log", "--json")[1])
    probe_param = log[0]["params"]["probe"]
    assert probe_param["split"] == "test" and probe_param["n"] == log[0]["metrics"]["test/n_pairs"] == 4
    assert probe_param["pairs"] == log[1]["params"]["probe"]["pairs"]  # same data and seed: same pairs object
    assert probe_param["rewards"] != log[1]["params"]["probe"]["rewards"]
    with Repository.open(tmp_path / ".rewardkit") as repo:
        probe = load_probe(repo.objects, repo.resolve("main"))
    rows = {row["prompt"]: row for row in _pairs(40)}
    fresh = _scored(cli, "main", two_trained)
    assert probe.rewards.dtype == torch.float32 and probe.rewards.shape == (4, 2)
    for pair, rewards in zip(probe.pairs, probe.rewards.tolist(), strict=True):
        assert pair == {k: rows[pair["prompt"]][k] for k in ("prompt", "chosen", "rejected")}
        assert fresh[_location(pair["prompt"])] == pytest.approx(tuple(rewards), abs=1e-5)


def _location(prompt: str) -> int:
    """The line of ``pairs.jsonl`` holding the pair of ``prompt``."""
    return int(prompt.split(":")[0].removeprefix("Question ")) + 1


def test_diff_compares_the_stored_probe_without_scoring(cli, two_trained, tmp_path, monkeypatch):
    from rewardkit.models import TextRewardModel
    from rewardkit.store import Repository
    from rewardkit.store.probe import load_probe

    scored_a, scored_b = _scored(cli, "main~1", two_trained), _scored(cli, "main", two_trained)
    with Repository.open(tmp_path / ".rewardkit") as repo:
        pairs = load_probe(repo.objects, repo.resolve("main")).pairs
    keys = [_location(p["prompt"]) for p in pairs]
    lengths = [[len(p["chosen"]), len(p["rejected"])] for p in pairs]
    expected = agreement([scored_a[k] for k in keys], [scored_b[k] for k in keys], lengths).to_dict()

    monkeypatch.setattr(TextRewardModel, "load", lambda *a, **k: pytest.fail("diff of two probed commits scored"))
    code, out, err = cli("diff", "main~1", "main", "--json")
    assert code == 0, err
    d = json.loads(out)
    b = d["behaviour"]
    assert b["source"] == "stored probe" and b["n_pairs"] == 4 and b["missing"] is None
    for key, value in expected.items():  # the stored rewards are what scoring the probe pairs gives
        assert b["agreement"][key] == pytest.approx(value, abs=1e-5), key

    log = json.loads(cli("log", "--json")[1])
    assert [c["key"] for c in d["params"]] == ["config.learning_rate"]
    rows = {(r["set"], r["metric"]): r for r in d["metrics"]}
    val = rows["validation", "accuracy"]
    assert val["a"] == log[1]["metrics"]["validation/accuracy"] and val["b"] == log[0]["metrics"]["validation/accuracy"]
    assert val["change"] == pytest.approx(val["b"] - val["a"])
    assert rows["train", "loss"]["b"] == log[0]["metrics"]["train/loss"]
    counts = d["summary"]["counts"]
    assert len(d["top"]) == min(10, counts["changed"]) and counts["changed"] > 0 and d["summary"]["bytes_differ"] > 0


def test_diff_text_shows_every_table_and_keeps_markup_literal(cli, two_trained):
    code, out, err = cli("diff", "main~1", "main")
    assert code == 0, err
    assert MESSAGE in out
    for title in ("metrics", "params and config", "tensors: top", "behaviour on 4 pairs (stored probe)"):
        assert title in out
    assert "validation" in out and "config.learning_rate" in out and "Spearman" in out


def test_diff_probe_data_scores_both_versions(cli, two_trained):
    code, out, err = cli("diff", "main~1", "main", "--probe", two_trained, "--json")
    assert code == 0, err
    b = json.loads(out)["behaviour"]
    assert b["source"].endswith("pairs.jsonl") and b["n_pairs"] == 40
    scored_a, scored_b = _scored(cli, "main~1", two_trained), _scored(cli, "main", two_trained)
    keys = range(1, 41)
    lengths = [[len(p["chosen"]), len(p["rejected"])] for p in _pairs(40)]
    expected = agreement([scored_a[k] for k in keys], [scored_b[k] for k in keys], lengths).to_dict()
    for key, value in expected.items():
        assert b["agreement"][key] == pytest.approx(value, abs=1e-6), key


def test_diff_without_probes_says_what_to_pass(cli, tmp_path, tiny_model_dir):
    changed = shutil.copytree(tiny_model_dir, tmp_path / "changed")
    tensors = load_file(changed / "model.safetensors")
    assert not tensors["classifier.bias"].any()  # so doubling the weight doubles every reward
    tensors["classifier.weight"] = tensors["classifier.weight"] * 2
    save_file(tensors, changed / "model.safetensors", metadata={"format": "pt"})
    assert cli("init")[0] == 0
    assert cli("commit", tiny_model_dir, "-m", "base")[0] == 0
    assert cli("commit", changed, "-m", "head doubled")[0] == 0
    code, out, err = cli("diff", "main~1", "main", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["behaviour"]["agreement"] is None and "--probe DATA" in d["behaviour"]["missing"]
    assert d["top"] == ["classifier.weight"] and d["summary"]["counts"]["changed"] == 1
    head = next(t for t in d["tensors"] if t["name"] == "classifier.weight")
    assert head["stats"]["relative_l2"] == pytest.approx(1.0) and head["stats"]["cosine"] == pytest.approx(1.0)
    assert d["summary"]["bytes_differ"] == head["nbytes"] == tensors["classifier.weight"].numel() * 4

    code, out, err = cli("diff", "main~1", "main")
    assert code == 0 and "no comparison" in out and "--probe DATA" in out

    data = write_jsonl(tmp_path / "pairs.jsonl", _pairs(6))
    code, out, err = cli("diff", "main~1", "main", "--probe", data, "--json")
    agreement_json = json.loads(out)["behaviour"]["agreement"]
    assert code == 0, err
    # only the head's scale changed: same order everywhere, rewards exactly doubled
    assert agreement_json["spearman"] == pytest.approx(1.0) and agreement_json["preference_agreement"] == 1.0
    assert agreement_json["mean_b"] == pytest.approx(2 * agreement_json["mean_a"], rel=1e-4, abs=1e-6)


def test_diff_of_commits_probed_on_different_pairs(cli, tmp_path, tiny_model_dir):
    data = write_jsonl(tmp_path / "pairs.jsonl", _pairs(40))
    assert cli("init")[0] == 0
    _train(cli, data, tiny_model_dir, "-m", "seed 0", "--epochs", "0.2")
    _train(cli, data, tiny_model_dir, "-m", "seed 1", "--epochs", "0.2", "--seed", "1")
    code, out, err = cli("diff", "main~1", "main", "--json")
    assert code == 0, err
    behaviour = json.loads(out)["behaviour"]
    assert behaviour["agreement"] is None and "different pairs" in behaviour["missing"]


@pytest.mark.parametrize("refs", [("main", "nope"), ("nope", "main"), ("[bold]x[/x]", "main")])
def test_diff_of_a_bad_ref_is_one_line_exit_2(cli, tmp_path, tiny_model_dir, refs):
    assert cli("init")[0] == 0
    assert cli("commit", tiny_model_dir, "-m", "base")[0] == 0
    before = repo_snapshot(tmp_path / ".rewardkit")
    code, out, err = cli("diff", *refs)
    assert code == 2 and out == "" and err.count("\n") == 1 and err.startswith("error: ")
    assert repo_snapshot(tmp_path / ".rewardkit") == before


def test_diff_probe_data_error_comes_before_any_weights(cli, tmp_path, tiny_model_dir, monkeypatch):
    from rewardkit.models import TextRewardModel

    assert cli("init")[0] == 0
    assert cli("commit", tiny_model_dir, "-m", "base")[0] == 0
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p", "chosen": "a"}\n')
    monkeypatch.setattr(TextRewardModel, "load", lambda *a, **k: pytest.fail("weights loaded before the data"))
    code, out, err = cli("diff", "main", "main", "--probe", bad)
    assert code == 2 and "bad.jsonl:1" in err and err.count("\n") == 1


def _table_rows(text: str, title: str) -> list[list[str]]:
    """The cells of the rows of the rich table titled ``title`` in ``text``, the set carried down."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == title)
    rows, group = [], ""
    for line in lines[start + 4:]:
        if line.startswith("└"):
            break
        if line.startswith("│"):
            cells = [c.strip() for c in line.strip("│").split("│")]
            group = cells[0] or group
            rows.append([group, *cells[1:]])
    return rows


def test_show_groups_metrics_by_evaluation_set(cli, two_trained):
    metrics = json.loads(cli("log", "--json")[1])[0]["metrics"]
    code, out, err = cli("show", "main")
    assert code == 0, err
    rows = _table_rows(out, "metrics")
    assert list(dict.fromkeys(r[0] for r in rows)) == ["train", "validation", "test"]  # one section per set
    train = sorted(k.removeprefix("train/") for k in metrics if k.startswith("train/") and k != "train/accuracy")
    assert [r[1] for r in rows if r[0] == "train"] == ["accuracy", *train]
    shown = {(r[0], r[1]): r[2] for r in rows}
    assert shown["validation", "accuracy"] == f"{metrics['validation/accuracy']:.4f}"
    assert shown["test", "n_pairs"] == "4" and len(rows) == len(metrics)

    code, out, err = cli("diff", "main~1", "main")
    rows = _table_rows(out, "metrics")
    assert len(rows) == len(metrics) and all(len(r) == 5 for r in rows)


def test_zero_tensor_relative_change_reads_inf(cli, tmp_path, tiny_model_dir):
    changed = shutil.copytree(tiny_model_dir, tmp_path / "changed")
    zeroed = shutil.copytree(tiny_model_dir, tmp_path / "zeroed")
    for folder, value in ((zeroed, 0.0), (changed, 1.0)):
        tensors = load_file(folder / "model.safetensors")
        tensors["classifier.weight"] = torch.full_like(tensors["classifier.weight"], value)
        save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    assert cli("init")[0] == 0
    assert cli("commit", zeroed, "-m", "zero head")[0] == 0
    assert cli("commit", changed, "-m", "ones head")[0] == 0
    code, out, err = cli("diff", "main~1", "main")
    assert code == 0 and "inf (‖A‖=0)" in out
    d = json.loads(cli("diff", "main~1", "main", "--json")[1])
    assert np.isfinite(d["summary"]["bytes_differ"])


def test_diff_takes_tags_aliases_and_branches(cli, tmp_path, tiny_model_dir):
    changed = shutil.copytree(tiny_model_dir, tmp_path / "changed")
    tensors = load_file(changed / "model.safetensors")
    tensors["classifier.weight"] = tensors["classifier.weight"] + 1
    save_file(tensors, changed / "model.safetensors", metadata={"format": "pt"})
    assert cli("init")[0] == 0
    assert cli("commit", tiny_model_dir, "-m", "base")[0] == 0
    assert cli("tag", "v1")[0] == 0
    assert cli("alias", "set", "production", "v1")[0] == 0
    assert cli("branch", "feature")[0] == 0
    assert cli("switch", "feature")[0] == 0
    assert cli("commit", changed, "-m", "head +1")[0] == 0
    results = []
    for a, b in (("v1", "feature"), ("production", "feature"), ("main", "HEAD"), ("feature~1", "feature")):
        code, out, err = cli("diff", a, b, "--json")
        assert code == 0, err
        results.append(json.loads(out))
    assert results[0]["behaviour"]["missing"].startswith("v1 (")  # names the ref as the user wrote it
    for r in results:
        assert r | {"behaviour": None} == results[0] | {"behaviour": None}
    assert results[0]["top"] == ["classifier.weight"] and results[0]["summary"]["counts"]["changed"] == 1
