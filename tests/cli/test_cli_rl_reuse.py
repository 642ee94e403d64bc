"""``rewardkit rl fit --init-from/--family``, ``rl maml`` and ``rl adapt``: reuse across tasks (tiny budgets)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("gymnasium", reason="the rl extra (gymnasium) is not installed")
pytest.importorskip("stable_baselines3", reason="the rl extra (stable-baselines3) is not installed")

from cli_helpers import repo_snapshot  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402

SMALL = ("--hidden", "32,32", "--threads", "1")


@pytest.fixture(scope="module")
def pendulum(tmp_path_factory) -> Path:
    """2000 random Pendulum-v1 transitions (10 episodes)."""
    from rewardkit.api import rl

    return rl.collect("Pendulum-v1", 2000, tmp_path_factory.mktemp("data") / "pendulum.npz", n_envs=2, seed=0).path


def _json(cli, *args: str) -> dict:
    code, out, err = cli(*args, "--json")
    assert code == 0, err
    return json.loads(out)


def _refused(cli, args: list[str], message: str, *, written: str) -> None:
    before = repo_snapshot(Path(".rewardkit"))
    code, out, err = cli(*args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (code, err)
    assert repo_snapshot(Path(".rewardkit")) == before and not Path(written).exists()


def test_fit_init_from_fine_tunes_keeps_frozen_and_normaliser_and_records_lineage(cli, pendulum) -> None:
    assert cli("init")[0] == 0
    base = _json(cli, "rl", "fit", "--data", str(pendulum), "--epochs", "5", *SMALL, "--out", "base", "-m", "base")
    tuned = _json(cli, "rl", "fit", "--data", str(pendulum), "--epochs", "3", "--threads", "1", "--init-from", "main",
                  "--freeze", "mlp.0.*", "--out", "tuned", "--commit")
    assert tuned["params"]["base"] == base["commit"] and tuned["params"]["frozen"] == ["mlp.0.*"]
    before, after = (load_file(Path(d, "model.safetensors")) for d in ("base", "tuned"))
    assert (before["mlp.0.weight"] == after["mlp.0.weight"]).all()  # frozen: bit for bit
    assert not (before["mlp.2.weight"] == after["mlp.2.weight"]).all()  # the rest trained
    normaliser = [k for k in before if "obs" in k and "mlp" not in k]
    assert normaliser and all((before[k] == after[k]).all() for k in normaliser)  # stored normaliser kept
    code, out, _ = cli("show", "HEAD")
    assert code == 0 and f"from {base['commit'][:10]}" in out and "frozen: mlp.0.*" in out
    code, out, _ = cli("log", "--graph")
    assert code == 0 and "[from" in out and out.count(base["commit"][:10]) == 2  # its own row and the lineage


def test_fit_family_trains_one_task_conditioned_model_and_adapts_to_a_held_out_task(cli, pendulum) -> None:
    from rewardkit.models import load_reward_model

    assert cli("init")[0] == 0
    result = _json(cli, "rl", "fit", "--data", str(pendulum), "--family", "pendulum-goal", "--tasks", "0,2,3",
                   "--adapt-task", "1", "--labels", "200", "--epochs", "15", *SMALL, "--out", "mt", "--commit")
    assert result["tasks"] == [0, 2, 3] and result["params"]["adapt_task"] == 1
    assert result["metrics"]["validation/reward_correlation"] > 0.8  # per-task rewards learned, held-out episodes
    assert result["metrics"]["adapted/reward_correlation"] > 0.5  # task 1 from 200 labels, only its embedding
    model = load_reward_model("mt")
    assert type(model).__name__ == "TaskConditionedRewardModel" and model.config.n_tasks == 12
    assert _json(cli, "show", "HEAD")["params"]["family"] == "pendulum-goal"


def test_fit_family_learns_from_synthetic_preferences_per_task(cli, pendulum) -> None:
    result = _json(cli, "rl", "fit", "--data", str(pendulum), "--family", "pendulum-goal", "--tasks", "0,2",
                   "--pairs", "100", "--segment-length", "20", "--adapt-task", "1", "--labels", "20", "--epochs", "10",
                   *SMALL, "--out", "mtp")
    assert result["params"]["objective"] == "preferences" and result["params"]["pairs"] == 100
    assert result["metrics"]["validation/preference_accuracy"] > 0.8  # held-out episodes' pairs, per task
    assert 0 <= result["metrics"]["adapted/preference_accuracy"] <= 1


def test_maml_then_adapt_improves_the_held_out_task_and_records_lineage(cli, pendulum) -> None:
    assert cli("init")[0] == 0
    meta = _json(cli, "rl", "maml", "--data", str(pendulum), "--family", "pendulum-goal", "--meta-steps", "60",
                 "--first-order", "--outer-lr", "3e-3", *SMALL, "--out", "meta", "--commit")
    assert meta["params"]["maml"]["first_order"] is True and meta["params"]["tasks"] == [0, 2, 3, 5, 6, 8, 9, 11]
    adapted = _json(cli, "rl", "adapt", "--reward", "main", "--data", str(pendulum), "--family", "pendulum-goal",
                    "--task", "1", "--labels", "20", "--steps", "5", "--out", "adapted", "--commit")
    assert adapted["after"]["validation/mse"] < adapted["before"]["validation/mse"]
    assert adapted["params"]["base"] == meta["commit"]
    code, out, _ = cli("show", "HEAD")
    assert code == 0 and f"from {meta['commit'][:10]}" in out


def test_reuse_refusals_write_nothing(cli, pendulum, tiny_model_dir) -> None:
    assert cli("init")[0] == 0
    assert cli("commit", str(tiny_model_dir), "-m", "a text model")[0] == 0
    fit = ["rl", "fit", "--data", str(pendulum), "--epochs", "1", *SMALL, "--out", "m", "--commit"]
    _refused(cli, [*fit, "--init-from", "main"], "text", written="m")
    _refused(cli, [*fit, "--init-from", "nosuchref"], "nosuchref", written="m")
    _refused(cli, [*fit, "--freeze", "mlp.0.*"], "--freeze needs --init-from", written="m")
    _refused(cli, [*fit, "--pairs", "10"], "need --family", written="m")
    _refused(cli, [*fit, "--family", "no-such-family"], "unknown task family 'no-such-family'", written="m")
    _refused(cli, [*fit, "--family", "pendulum-goal", "--tasks", "0,99"], "task 99", written="m")
    _refused(cli, [*fit, "--family", "pendulum-goal", "--tasks", "0,1", "--adapt-task", "1"], "--adapt-task 1",
             written="m")
    _refused(cli, ["rl", "maml", "--data", str(pendulum), "--family", "halfcheetah-velocity", "--out", "m"],
             "HalfCheetah", written="m")
    assert cli("rl", "fit", "--data", str(pendulum), "--epochs", "1", *SMALL, "--out", "sa", "-m", "sa")[0] == 0
    _refused(cli, [*fit, "--init-from", "main", "--freeze", "nomatch.*"], "--freeze 'nomatch.*' matches no parameter",
             written="m")
    _refused(cli, ["rl", "adapt", "--reward", "main", "--data", str(pendulum), "--family", "pendulum-goal", "--task",
                   "12", "--out", "m"], "task 12", written="m")
