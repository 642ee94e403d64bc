"""The store benchmark: the chain of versions, the model's size, per-process memory, and a tiny end-to-end run."""

import importlib.util
import json
import os
import sys
import time

import pytest
import store_vs_dvc_mlflow as bench
import torch
from transformers import BertForSequenceClassification


def test_the_chain_puts_head_only_versions_first_then_layers_a_full_fine_tune_and_a_head():
    assert bench.version_plan(10) == ["base"] + ["head"] * 5 + ["layers"] * 2 + ["full", "head"]
    assert bench.version_plan(3) == ["base", "head", "full"]
    assert bench.version_plan(4) == ["base", "head", "layers", "full"]
    with pytest.raises(SystemExit, match="at least 3"):
        bench.version_plan(2)


@pytest.mark.parametrize("gib", [0.01, 1.0])
def test_the_scaled_model_has_at_least_the_size_asked_and_not_much_more(gib):
    config = bench.scaled_config(int(gib * 2**30))
    with torch.device("meta"):
        model = BertForSequenceClassification(config)
    size = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    assert gib * 2**30 <= size <= 1.1 * gib * 2**30
    assert config.num_labels == 1 and config.hidden_size % config.num_attention_heads == 0
    if gib == 1.0:
        assert config.hidden_size == 1024  # bert-large's width, as many layers as the size needs


def test_each_kind_of_version_changes_what_it_says():
    config, state = bench.build_base(int(0.002 * 2**30), seed=0)
    layers = config.num_hidden_layers
    before = {n: t.clone() for n, t in state.items()}
    changed = set(bench.apply_change(state, "head", seed=1, num_layers=layers))
    assert changed == {"classifier.weight", "classifier.bias"}
    assert [n for n in state if not torch.equal(state[n], before[n])] == sorted(changed, key=list(state).index)
    top = set(bench.changed_names(state, "layers", layers))
    assert top - changed and all(n.startswith(("classifier.", f"bert.encoder.layer.{layers - 1}.",
                                               f"bert.encoder.layer.{layers - 2}.")) for n in top)
    full = bench.apply_change(state, "full", seed=2, num_layers=layers)
    assert set(full) == {n for n, t in state.items() if t.is_floating_point()}
    assert all(not torch.equal(state[n], before[n]) for n in full)


def test_a_worker_reports_its_own_peak_memory_not_the_parents(tmp_path):
    """Linux carries ``ru_maxrss`` across fork and exec: a child of a big parent would read big."""
    ballast = torch.ones(2**27)  # 512 MiB, touched: this process's high-water mark is at least that
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f").write_bytes(b"x" * 1000)
    argv = [sys.executable, bench.__file__, "--worker", "cp", "cp",
            json.dumps({"from": str(tmp_path / "src"), "to": str(tmp_path / "dst")})]
    op = bench.measure(argv, cwd=tmp_path, env={"PATH": "/usr/bin:/bin"}, logs=tmp_path / "logs")
    assert float(ballast[-1]) == 1.0
    assert (tmp_path / "dst" / "f").read_bytes() == b"x" * 1000
    assert 0 < op.rss_before <= op.peak_rss < 200 * 2**20
    assert op.seconds <= op.process_seconds


def _worker_in_this_process(argv, *, cwd, env, logs):
    """``bench.measure`` without the process boundary (tested above): the worker runs here.

    The tools do their real work (stores, commits, checkouts, bytes); only the start-up of a
    process per operation (several seconds each for torch and MLflow) is saved, and memory
    and process seconds mean nothing.
    """
    logs.mkdir(parents=True, exist_ok=True)
    result = logs / "result.json"
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            if os.environ.get(key) != value:
                patch.setenv(key, value)
        patch.setenv("BENCH_RESULT", str(result))
        patch.chdir(cwd)
        start = time.perf_counter()
        bench.worker(argv[3:])
        return bench.read_result(result, time.perf_counter() - start, None)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # inside DVC and MLflow
@pytest.mark.skipif(importlib.util.find_spec("dvc") is None, reason="dvc is not installed (the bench extra)")
@pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason="mlflow is not installed (the bench extra)")
def test_a_tiny_run_stores_and_checks_out_every_version_with_every_tool(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bench, "measure", _worker_in_this_process)
    out = tmp_path / "out.json"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    assert bench.main(["--size-gib", "0.005", "--versions", "3", "--scratch", str(scratch), "--json", str(out)]) == 0
    assert list(scratch.iterdir()) == []  # the scratch stores are gone
    printed = capsys.readouterr().out
    for text in ("rewardkit", "DVC", "MLflow", "cp", "head-only commit", "checkout, rewardkit's seconds / cp's"):
        assert text in printed
    result = json.loads(out.read_text())
    assert result["plan"] == ["base", "head", "full"]
    model = result["summary"]["model_bytes"]
    tools = result["summary"]["tools"]
    assert set(tools) == {"rewardkit", "dvc", "mlflow", "cp"}
    for name, s in tools.items():
        assert s["checkouts_identical"], name
        assert all(c["seconds"] > 0 and c["peak_rss"] > 0 for c in result["runs"][name]["commits"])
    # dedup per tensor: a head-only version costs rewardkit almost nothing, every other tool a whole model
    assert tools["rewardkit"]["bytes_after_head_prefix"] < 1.2 * model
    for peer in ("dvc", "mlflow", "cp"):
        assert tools[peer]["bytes_after_head_prefix"] > 1.9 * model, peer
    ratios = result["summary"]["ratios"]
    assert set(ratios["checkout_vs_cp"]) == {"last", "base"}
    assert ratios["head_commit_speedup_vs_dvc"] > 0 and ratios["head_commit_speedup_vs_mlflow"] > 0


def test_a_missing_tool_is_refused_with_the_fix(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(SystemExit, match=r"mlflow is not installed.*--tools rewardkit,dvc,cp"):
        bench.check_tools(list(bench.TOOLS))
    with pytest.raises(SystemExit, match="unknown tool 'git'"):
        bench.check_tools(["git"])



def test_merge_is_measured_when_the_cli_has_it_else_skipped_with_the_reason(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bench, "measure", _worker_in_this_process)
    out = tmp_path / "out.json"
    assert bench.main(["--size-gib", "0.005", "--versions", "3", "--tools", "rewardkit", "--merge",
                       "--scratch", str(tmp_path), "--json", str(out)]) == 0
    merge = json.loads(out.read_text())["runs"]["rewardkit"]["merge"]
    if "merge" in bench.RewardkitTool.commands():
        assert merge["max_abs_error_vs_mean"] < 1e-6  # average of two full fine-tunes of one base
        assert "merge of two" in capsys.readouterr().out
    else:
        assert merge == {"skipped": "this rewardkit CLI has no `merge` command"}
        assert "merge: skipped (this rewardkit CLI has no `merge` command)" in capsys.readouterr().out


def _runs(seconds: dict[str, list[float]], allocated: list[int]) -> dict:
    plan = ["base", "head", "head", "full"]
    op = {"process_seconds": 1.0, "peak_rss": 100, "rss_before": 50, "other_cpu": None}
    commits = [op | {"seconds": s, "kind": k} for s, k in zip(seconds["commit"], plan, strict=True)]
    checkouts = {k: op | {"seconds": s, "identical": True} for k, s in zip(("last", "base"), seconds["checkout"],
                                                                          strict=True)}
    return {"commits": commits, "checkouts": checkouts,
            "bytes_after": [{"allocated": b, "apparent": b} for b in allocated]}


def test_summary_ratios_are_the_peers_seconds_over_rewardkits_and_bytes_over_one_model():
    results = {
        "rewardkit": _runs({"commit": [4.0, 0.5, 0.3, 4.0], "checkout": [3.0, 2.0]}, [1000, 1010, 1020, 2000]),
        "dvc": _runs({"commit": [5.0, 10.0, 12.0, 5.0], "checkout": [3.0, 3.0]}, [1000, 2000, 3000, 4000]),
        "cp": _runs({"commit": [1.0, 1.0, 1.0, 1.0], "checkout": [1.0, 4.0]}, [1000, 2000, 3000, 4000]),
    }
    summary = bench.summarize(results, ["base", "head", "head", "full"], model_bytes=1000)
    assert summary["head_prefix_versions"] == 3
    assert summary["tools"]["rewardkit"]["commit_seconds"]["head"] == {"median": 0.4, "min": 0.3, "max": 0.5, "n": 2}
    ratios = summary["ratios"]
    assert ratios["head_commit_speedup_vs_dvc"] == pytest.approx(11.0 / 0.4)
    assert ratios["head_prefix_bytes_vs_model"] == pytest.approx(1.02)
    assert ratios["head_10_projected_bytes_vs_model"] == pytest.approx(1.09)  # 1000 + 9 x 10
    assert ratios["checkout_vs_cp"] == {"last": 3.0, "base": 0.5}
    assert summary["targets"] == {"head_commit_20x_faster": True, "head_only_disk_1_05x": False,
                                  "checkout_within_2x_cp": False}
