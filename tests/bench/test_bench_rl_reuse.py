"""bench/rl_reuse.py: accuracies and normalised returns of every approach, labels-to-target counts."""

import json
import math

import numpy as np
import pytest

pytest.importorskip("gymnasium", reason="the rl extra (gymnasium) is not installed")
pytest.importorskip("stable_baselines3", reason="the rl extra (stable-baselines3) is not installed")

from rl_reuse import (  # noqa: E402
    APPROACHES,
    REFERENCES,
    OneTask,
    SeedResult,
    Settings,
    bootstrap,
    labels_needed,
    main,
    normalised_returns,
    summarise,
    task_env_id,
)

from rewardkit.rl.envs import make_env  # noqa: E402
from rewardkit.rl.tasks import PendulumGoal  # noqa: E402

#: Pendulum-v1's reward is at least -(π² + 0.1·8² + 0.001·2²) per step, 200 steps per episode.
PENDULUM_WORST = -200 * (math.pi**2 + 6.4 + 0.004)


def test_smoke_run_reports_every_approach(tmp_path, capsys) -> None:
    out = tmp_path / "reuse.json"
    summary = main(["--smoke", "--seeds", "1", "--json", str(out)])
    assert set(summary["accuracy"]) == set(APPROACHES)
    for row in summary["accuracy"].values():
        assert list(row["score"]) == [5, 20]
        assert all(0 <= m <= 1 and lo <= m <= hi for m, lo, hi in row["score"].values())
        assert len(row["labels_needed"]) == 1
    ret = summary["return"]
    assert set(ret["approaches"]) == set(APPROACHES) and set(ret["references"]) == set(REFERENCES)
    returns = [r for ref in ret["references"].values() for r in ref["returns"]]
    returns += [r for row in ret["approaches"].values() for rs in row["returns"].values() for r in rs]
    assert len(returns) == 3 + 4 and all(PENDULUM_WORST <= r <= 0 for r in returns)  # 1 seed, budget 20
    references = {name: ref["returns"][0] for name, ref in ret["references"].items()}
    assert ret["r_true"] == max(references["true"], references["true+norm"])
    assert ret["r_random"] == references["random"]
    if ret["r_true"] > ret["r_random"]:  # 1024 PPO steps rarely beat random actions; then there is no scale
        assert ret["references"]["random"]["score"][0] == 0.0
        assert max(ret["references"][n]["score"][0] for n in ("true", "true+norm")) == pytest.approx(1.0)
    else:
        assert all(math.isnan(ref["score"][0]) for ref in ret["references"].values())
    assert json.loads(out.read_text())["return"]["r_true"] == ret["r_true"]
    printed = capsys.readouterr().out
    assert "| approach | acc@5 | acc@20 |" in printed and "| approach | norm@20 |" in printed
    assert "wall time" in printed


def test_accuracy_only_runs_no_ppo_and_a_budget_does_not_depend_on_the_others(capsys) -> None:
    alone = main(["--smoke", "--seeds", "1", "--budgets", "5", "--return-target", "0"])
    assert alone["return"] is None and list(alone["accuracy"]["scratch"]["score"]) == [5]
    assert "norm@" not in capsys.readouterr().out
    more = main(["--smoke", "--seeds", "1", "--budgets", "5,20", "--return-target", "0"])
    for a in APPROACHES:  # the same first 5 pairs of each goal, whatever the largest budget
        assert more["accuracy"][a]["score"][5] == alone["accuracy"][a]["score"][5]
    with pytest.raises(SystemExit) as exit_info:
        main(["--smoke", "--budgets", "5,40"])  # the smoke run draws 20 pairs per held-out goal
    assert exit_info.value.code == 2
    assert "budget 40 is above --support-pairs 20" in capsys.readouterr().err


def test_normalised_returns_and_returns_to_target() -> None:
    s = Settings(seeds=2, budgets=(5,), return_budgets=(10, 20))
    runs = [
        {"random": -1000.0, "true": -900.0, "true+norm": -200.0,
         "scratch@10": -1000.0, "scratch@20": -600.0, "transfer@10": -300.0, "transfer@20": -150.0,
         "multi-task@10": -180.0, "multi-task@20": -160.0, "maml@10": -1100.0, "maml@20": -1050.0},
        {"random": -1200.0, "true": -950.0, "true+norm": -150.0,
         "scratch@10": -700.0, "scratch@20": -250.0, "transfer@10": -250.0, "transfer@20": -200.0,
         "multi-task@10": -175.0, "multi-task@20": -170.0, "maml@10": -1000.0, "maml@20": -900.0},
    ]
    results = [SeedResult({a: np.full((4, 1), 0.8) for a in APPROACHES}, r) for r in runs]
    scores, r_true, r_random = normalised_returns(results)
    assert (r_true, r_random) == (-175.0, -1100.0)  # the better reference (true+norm) and random, means over seeds
    assert scores["true+norm"].mean() == pytest.approx(1.0) and scores["random"].mean() == pytest.approx(0.0)
    assert scores["scratch@20"] == pytest.approx([500 / 925, 850 / 925])
    assert all(np.isfinite(v).all() for v in scores.values())
    ret = summarise(results, s)["return"]
    assert ret["goal"] == "goal=+0.52"  # the first held-out goal of 12
    assert ret["approaches"]["multi-task"]["labels_needed"] == [10, 10]  # 0.99 and 1.00 at 10 pairs
    assert ret["approaches"]["transfer"]["labels_needed"] == [20, 10]  # 0.86 then 1.03; 0.92 at 10
    assert ret["approaches"]["transfer"]["labels_needed_ci"][0] == 15.0
    assert ret["approaches"]["maml"]["labels_needed"] == [math.inf, math.inf]
    assert ret["approaches"]["maml"]["labels_needed_ci"] is None
    assert ret["references"]["true+norm"]["score"][0] == pytest.approx(1.0)
    flat = [SeedResult(r.accuracy, {**r.returns, "true": -1100.0, "true+norm": -1100.0}) for r in results]
    assert all(np.isnan(v).all() for v in normalised_returns(flat)[0].values())  # R_true == R_random: no scale


def test_goal_environment_returns_the_goal_reward_and_one_task_scores_its_row() -> None:
    family = PendulumGoal(n_tasks=12)
    goal = family.tasks("held-out")[0]
    env_id = task_env_id(family, goal)
    assert task_env_id(family, goal) == env_id  # registered once
    assert task_env_id(PendulumGoal(n_tasks=6), PendulumGoal(n_tasks=6).task(goal.index)) != env_id  # another goal
    venv = make_env(env_id, n_envs=2, seed=3)
    obs = venv.reset()
    acts = np.array([[1.5], [-0.5]], dtype=np.float32)
    next_obs, rewards, _, _ = venv.step(acts)
    assert rewards == pytest.approx(family.reward(goal, obs, acts, next_obs), rel=1e-5)
    assert not np.allclose(rewards, family.reward(family.task(0), obs, acts, next_obs))  # not Pendulum-v1's own
    venv.close()

    from rewardkit.models.task_conditioned import TaskConditionedConfig, TaskConditionedRewardModel

    model = TaskConditionedRewardModel(TaskConditionedConfig(obs_dim=3, action_kind="continuous", action_dim=1,
                                                             hidden_sizes=(8,), n_tasks=12, task_embedding_dim=2))
    fixed = OneTask(model, goal)
    assert fixed.config is model.config
    assert fixed.score(obs, acts, next_obs) == pytest.approx(model.score(obs, acts, next_obs, task=goal.index))
    assert not np.allclose(fixed.score(obs, acts, next_obs), model.score(obs, acts, next_obs, task=0))


def test_labels_needed_and_bootstrap() -> None:
    assert labels_needed(np.array([0.5, 0.85, 0.95]), (5, 10, 20), 0.8) == 10
    assert labels_needed(np.array([0.5, 0.6]), (5, 10), 0.8) == math.inf
    mean, lo, hi = bootstrap(np.array([1.0, 2.0, 3.0]))
    assert mean == 2.0 and 1.0 <= lo <= mean <= hi <= 3.0
