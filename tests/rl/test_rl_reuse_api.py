"""``rewardkit.api.rl.reuse``: transfer start checks, task selection, nothing written on refusal."""

from __future__ import annotations

import pytest

pytest.importorskip("gymnasium", reason="the rl extra (gymnasium) is not installed")

from rewardkit.api import rl  # noqa: E402
from rewardkit.errors import ConfigError, ModelError  # noqa: E402
from rewardkit.rl.tasks import task_family  # noqa: E402
from rewardkit.store import Repository  # noqa: E402


def test_transfer_start_refuses_a_model_for_other_spaces(tmp_path) -> None:
    repo = Repository.init(tmp_path / "repo")
    data = rl.collect("CartPole-v1", 400, tmp_path / "cartpole.npz", n_envs=2).path
    rl.fit(data, tmp_path / "cartpole", epochs=1, hidden_sizes=(8,), commit_message="cartpole", repo=repo)
    with pytest.raises(ModelError):
        rl.transfer_start(repo, "main", "Pendulum-v1")
    start = rl.transfer_start(repo, "main", "CartPole-v1", ["mlp.0.*"])
    assert start.lineage() == {"base": repo.resolve("main").id, "frozen": ["mlp.0.*"]}
    assert not any(p.requires_grad for n, p in start.model.named_parameters() if n.startswith("mlp.0."))


def test_family_tasks_defaults_to_the_training_split_and_refuses_repeats() -> None:
    family = task_family("pendulum-goal")
    assert rl.reuse.family_tasks(family, None) == family.tasks("train")
    assert [t.index for t in rl.reuse.family_tasks(family, [4, 1])] == [4, 1]
    with pytest.raises(ConfigError, match="named twice"):
        rl.reuse.family_tasks(family, [1, 1])
    with pytest.raises(ConfigError, match="task 12"):
        rl.reuse.family_tasks(family, [12])


def test_fit_tasks_refused_before_anything_is_written(tmp_path) -> None:
    data = rl.collect("Pendulum-v1", 400, tmp_path / "p.npz", n_envs=2).path
    with pytest.raises(ConfigError, match="--labels 100000"):
        rl.fit_tasks(data, tmp_path / "m", family="pendulum-goal", tasks=[0], adapt_task=1, labels=100000)
    assert not (tmp_path / "m").exists()
