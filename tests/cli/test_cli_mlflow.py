"""``train --mlflow`` against a local MLflow store (SQLite backend, artifacts in the test folder)."""

import csv
import json
import sys

import pytest
from cli_helpers import repo_snapshot, write_jsonl


def _pairs(n: int) -> list[dict]:
    return [{"prompt": f"Question {i}: is the sky blue?", "chosen": f"Yes, it is blue ({i}).",
             "rejected": f"No idea, maybe green {i}."} for i in range(n)]


def test_train_mlflow_logs_config_metrics_curves_and_links_the_commit(cli, tmp_path, tiny_model_dir, monkeypatch):
    mlflow = pytest.importorskip("mlflow", reason="mlflow is not installed (pip install mlflow, or the bench extra)")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"  # artifacts go to ./mlruns, the test folder (cli chdirs there)
    data = write_jsonl(tmp_path / "pairs.jsonl", _pairs(40))
    assert cli("init")[0] == 0
    train = ("train", "--data", data, "--base-model", tiny_model_dir, "--max-length", "32", "--batch-size", "4",
             "--logging-steps", "2", "--json")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    code, out, err = cli(*train, "--mlflow", "--output-dir", "run", "-m", "first")
    assert code == 0, err
    result = json.loads(out)
    commit = json.loads(cli("show", result["commit"], "--json")[1])
    reference = commit["params"]["mlflow"]
    assert reference == result["mlflow"] and reference["tracking_uri"] == uri

    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.get_run(reference["run_id"])
    assert run.info.status == "FINISHED" and run.info.experiment_id == reference["experiment_id"]
    assert client.get_experiment(reference["experiment_id"]).name == "rewardkit"
    assert run.data.tags["rewardkit.commit"] == result["commit"]
    assert run.data.params["max_length"] == "32" and run.data.params["batch_size"] == "4"
    assert set(run.data.params) == set(commit["params"]["config"])
    # every metric of the commit, with its value (a source's "trl:" prefix named MLflow's way); the curves beside them
    metrics = {k.replace(":", "_"): v for k, v in commit["metrics"].items()}
    assert "validation/trl_pairs.jsonl/accuracy" in metrics
    curve_keys = {"curve/loss", "curve/accuracy", "curve/learning_rate", "curve/epoch"}
    assert set(run.data.metrics) == set(metrics) | curve_keys
    assert {k: run.data.metrics[k] for k in metrics} == pytest.approx(metrics)
    with (tmp_path / "run" / "curves.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) > 1
    history = client.get_metric_history(run.info.run_id, "curve/loss")
    assert len(history) == len(rows)
    assert {m.step: m.value for m in history} == pytest.approx({int(r["step"]): float(r["loss"]) for r in rows})
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"curves.csv", "curves.png"}

    # MLFLOW_TRACKING_URI alone turns logging on; a refused commit ends the run FAILED, untagged, nothing committed
    before = repo_snapshot(tmp_path / ".rewardkit")
    code, _, err = cli(*train, "--output-dir", "run2", "--mlflow-experiment", "other", "-m", " ")
    assert code == 2 and "commit message is empty" in err
    assert repo_snapshot(tmp_path / ".rewardkit") == before
    (failed,) = client.search_runs([client.get_experiment_by_name("other").experiment_id])
    assert failed.info.status == "FAILED" and "rewardkit.commit" not in failed.data.tags
    assert "validation/accuracy" in failed.data.metrics  # logged before the commit was refused

    # a tracking URI MLflow cannot use: one line naming it, after the data and model checks, before training
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "bogus://nowhere")
    code, _, err = cli(*train, "--output-dir", "run4")
    assert code == 2 and "MLflow at bogus://nowhere:" in err and err.count("\n") == 1
    assert not (tmp_path / "run4" / "model").exists()

    # --no-mlflow wins over the variable
    code, out, err = cli(*train, "--no-mlflow", "--output-dir", "run3")
    assert code == 0, err
    assert json.loads(out)["mlflow"] is None
    assert len(client.search_runs([reference["experiment_id"], failed.info.experiment_id])) == 2


def test_train_mlflow_without_mlflow_installed_is_refused_before_training(cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if not installed: find_spec and import both fail
    data = write_jsonl(tmp_path / "pairs.jsonl", _pairs(10))
    code, _, err = cli("train", "--data", data, "--mlflow", "--output-dir", "run")
    assert code == 2 and "pip install mlflow" in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()
