"""``rewardkit rl collect|fit|train|learn``, commit and diff of state-action models, refusals (tiny budgets)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("gymnasium", reason="the rl extra (gymnasium) is not installed")
pytest.importorskip("stable_baselines3", reason="the rl extra (stable-baselines3) is not installed")

from cli_helpers import repo_snapshot  # noqa: E402

from rewardkit.data.transitions import load_transitions  # noqa: E402

FIT = ("--epochs", "30", "--hidden", "64,64")


def _fitted(cli, name: str, *extra: str) -> Path:
    """Collect 2000 random Pendulum steps and fit a small reward model on them into folder ``name``."""
    if not Path("pendulum.npz").exists():
        assert cli("rl", "collect", "--env", "Pendulum-v1", "--steps", "2000", "--out", "pendulum.npz")[0] == 0
    code, out, err = cli("rl", "fit", "--data", "pendulum.npz", *FIT, "--out", name, *extra)
    assert code == 0, err
    return Path(name)


def test_collect_fit_commit_train_flow(cli, tmp_path) -> None:
    assert cli("init")[0] == 0
    code, out, _ = cli("rl", "collect", "--env", "Pendulum-v1", "--steps", "2000", "--seed", "1",
                       "--out", "pendulum.parquet")
    assert code == 0 and "2000 steps, 12 episodes in Pendulum-v1, mean true return" in out
    assert load_transitions("pendulum.parquet").env_id == "Pendulum-v1"
    code, out, err = cli("rl", "fit", "--data", "pendulum.parquet", *FIT, "--out", "model", "-m", "fit pendulum",
                         "--json")
    assert code == 0, err
    fitted = json.loads(out)
    assert fitted["objective"] == "mse" and fitted["commit"] and fitted["metrics"]["validation/reward_correlation"] > 0
    code, out, _ = cli("show", "main", "--json")
    shown = json.loads(out)
    assert shown["params"]["env_id"] == "Pendulum-v1" and shown["params"]["objective"] == "mse"
    assert shown["data_fingerprint"] == fitted["params"]["data_fingerprint"]
    assert "validation/mse" in shown["metrics"]
    code, out, err = cli("rl", "train", "--env", "Pendulum-v1", "--reward", "main", "--steps", "512", "--seeds", "2",
                         "--eval-episodes", "1", "--out", "run")
    assert code == 0, err
    assert "true return" in out and "95% CI over seeds" in out
    rows = list(csv.DictReader(Path("run/curves.csv").open()))
    assert {r["seed"] for r in rows} == {"0", "1"}
    assert all(Path(f"run/{name}").is_file() for name in ("curves.png", "policy-seed0.zip", "policy-seed1.zip"))
    code, out, err = cli("rl", "collect", "--env", "Pendulum-v1", "--steps", "300", "--policy", "run/policy-seed0.zip",
                         "--out", "policy.npz", "--json")
    assert code == 0, err
    assert json.loads(out)["steps"] == 300


def test_commit_and_diff_of_state_action_models_show_epic(cli) -> None:
    assert cli("init")[0] == 0
    first, second = _fitted(cli, "a"), _fitted(cli, "b", "--seed", "1")
    assert cli("commit", str(first), "-m", "first")[0] == 0
    code, out, err = cli("commit", str(second), "-m", "second")
    assert code == 0, err
    shutil.rmtree("out", ignore_errors=True)
    assert cli("checkout", "main", "--to", "out")[0] == 0
    assert (Path("out") / "model.safetensors").read_bytes() == (second / "model.safetensors").read_bytes()
    code, out, err = cli("diff", "main~1", "main", "--probe", "pendulum.npz", "--json")
    assert code == 0, err
    epic = json.loads(out)["epic"]
    assert epic["source"] == "pendulum.npz" and epic["epic"]["n_samples"] == 2000
    distance = epic["epic"]
    assert 0 <= distance["ci_low"] <= distance["distance"] <= distance["ci_high"] <= 1
    assert distance["distance"] < 0.2  # both fit the same true reward: measured 0.05 (0.63 with 3 epochs of 32x32)
    code, out, err = cli("diff", "main", "main", "--probe", "pendulum.npz")
    assert code == 0 and "EPIC distance 0.0000" in out and "2000 transitions" in out
    code, out, err = cli("diff", "main~1", "main")  # no env id recorded by a plain commit
    assert code == 0 and "EPIC distance: none (neither commit records its environment" in out


def test_fit_commit_records_env_so_diff_samples_it(cli) -> None:
    assert cli("init")[0] == 0
    _fitted(cli, "a", "--commit")
    _fitted(cli, "b", "--seed", "1", "--commit")
    code, out, err = cli("diff", "main~1", "main", "--json")
    assert code == 0, err
    epic = json.loads(out)["epic"]
    assert epic["source"] == "1000 random steps of Pendulum-v1" and epic["epic"]["n_mean_samples"] == 256


def test_learn_commits_the_reward_model_with_its_query_count(cli) -> None:
    assert cli("init")[0] == 0
    code, out, err = cli("rl", "learn", "--env", "Pendulum-v1", "--queries", "20", "--segment-length", "10",
                         "--steps", "1024", "--iterations", "2", "--eval-episodes", "1", "--out", "run", "--commit")
    assert code == 0, err
    assert "learned from 20 labelled pairs" in out and "committed" in out
    shown = json.loads(cli("show", "main", "--json")[1])
    assert shown["params"]["queries"] == 20 and shown["params"]["objective"] == "preferences"
    assert "rl/true_return" in shown["metrics"] and shown["message"] == "rl learn on Pendulum-v1 from 20 queries"
    assert all(Path("run", name).exists() for name in ("reward_model", "preferences.npz", "curves.csv", "curves.png"))
    code, out, err = cli("rl", "fit", "--data", "run/preferences.npz", "--epochs", "2", "--hidden", "16", "--out", "m")
    assert code == 0 and "(preferences)" in out and "validation/preference_accuracy" in out


def _refused(cli, args: list[str], message: str, *, written: str) -> None:
    before = repo_snapshot(Path(".rewardkit"))
    code, out, err = cli(*args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (code, err)
    assert repo_snapshot(Path(".rewardkit")) == before and not Path(written).exists()


def test_train_refusals_write_nothing(cli, tiny_model_dir) -> None:
    assert cli("init")[0] == 0
    _fitted(cli, "pendulum_model")
    assert cli("commit", str(tiny_model_dir), "-m", "a text model")[0] == 0
    train = ["rl", "train", "--steps", "64", "--seeds", "1", "--out", "run"]
    _refused(cli, [*train, "--env", "NoSuchEnv-v0", "--reward", "pendulum_model"], "unknown environment 'NoSuchEnv-v0'",
             written="run")
    _refused(cli, [*train, "--env", "Pendulum-v1", "--reward", str(tiny_model_dir)], "a text reward model",
             written="run")
    _refused(cli, [*train, "--env", "Pendulum-v1", "--reward", "main"], "holds a text reward model", written="run")
    _refused(cli, [*train, "--env", "CartPole-v1", "--reward", "pendulum_model"], "trained on another environment",
             written="run")
    _refused(cli, ["rl", "collect", "--env", "NoSuchEnv-v0", "--steps", "10", "--out", "x.npz"], "unknown environment",
             written="x.npz")
    _refused(cli, ["rl", "learn", "--env", "Pendulum-v1", "--queries", "5", "--query-selection", "disagreement",
                   "--out", "run", "--commit"], "ensemble of at least 2", written="run")


def test_fit_refuses_bad_data_before_building_a_model(cli) -> None:
    assert cli("init")[0] == 0
    import numpy as np

    from rewardkit.data.transitions import write_npz

    n = 40
    arrays = {"obs": np.zeros((n, 3), np.float32), "acts": np.zeros((n, 1), np.float32),
              "rews": np.zeros(n, np.float32), "next_obs": np.zeros((n, 3), np.float32),
              "terminated": np.zeros(n, bool), "truncated": np.arange(n) % 10 == 9}
    arrays["rews"][7] = np.nan
    write_npz(Path("nan.npz"), arrays, {"format": "rewardkit-transitions/1", "env_id": "Pendulum-v1"})
    _refused(cli, ["rl", "fit", "--data", "nan.npz", "--out", "m", "--commit"], "nan.npz: field 'rews' row 7",
             written="m")
    arrays["rews"][7] = 0
    write_npz(Path("cartpole_sized.npz"), arrays, {"format": "rewardkit-transitions/1", "env_id": "CartPole-v1"})
    _refused(cli, ["rl", "fit", "--data", "cartpole_sized.npz", "--out", "m", "--commit"],
             "field 'obs' row 0: 3 values per observation", written="m")


def test_commit_refuses_a_damaged_state_action_folder(cli) -> None:
    assert cli("init")[0] == 0
    folder = _fitted(cli, "model")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"obs_dim": 5}))
    _refused(cli, ["commit", str(folder), "-m", "damaged"], "does not match", written="nothing")
