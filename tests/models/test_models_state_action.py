"""State-action, task-conditioned and ensemble reward models: shapes, encoding, saving, the store, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from rewardkit.errors import DataError, ModelError
from rewardkit.models import (
    RewardEnsemble,
    StateActionConfig,
    StateActionRewardModel,
    TaskConditionedConfig,
    TaskConditionedRewardModel,
    load_reward_model,
    reward_model_kind,
)
from rewardkit.models.normalization import RunningNormalizer
from rewardkit.models.spaces import encode_actions
from rewardkit.store import Repository
from rewardkit.store.diff import diff_commits

SMALL = {"hidden_sizes": (8, 8)}


def discrete_model(seed: int = 0, **kw) -> StateActionRewardModel:
    torch.manual_seed(seed)
    return StateActionRewardModel(StateActionConfig(obs_dim=3, action_kind="discrete", action_dim=4, **SMALL, **kw))


def continuous_model(seed: int = 0, **kw) -> StateActionRewardModel:
    torch.manual_seed(seed)
    return StateActionRewardModel(StateActionConfig(obs_dim=5, action_kind="continuous", action_dim=6, **SMALL, **kw))


def tensors_of(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def assert_bit_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype and torch.equal(a[name], b[name]), name


# -- forward and encoding --------------------------------------------------------------------------------------


def test_one_hot_encoding_of_discrete_actions():
    encoded = encode_actions(torch.tensor([2, 0, 3]), "discrete", 4)
    assert torch.equal(encoded, torch.tensor([[0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=torch.float32))
    assert torch.equal(encode_actions(torch.tensor([[1]]), "discrete", 2), torch.tensor([[0.0, 1.0]]))


def test_continuous_actions_are_flattened_and_concatenated():
    model = continuous_model(use_next_obs=True)
    obs, acts, next_obs = torch.randn(7, 5), torch.randn(7, 2, 3), torch.randn(7, 5)
    features = model.features(obs, acts, next_obs)
    assert features.shape == (7, 5 + 6 + 5) and model.input_dim == 16
    assert torch.equal(features[:, 5:11], acts.reshape(7, 6))
    assert model(obs, acts, next_obs).shape == (7,)


def test_forward_and_score_shapes():
    model = discrete_model()
    obs, acts = np.random.default_rng(0).normal(size=(9, 3)).astype(np.float32), np.arange(9) % 4
    out = model.score(obs, acts)
    assert out.shape == (9,) and out.dtype == np.float32
    with torch.no_grad():
        assert np.array_equal(out, model(torch.as_tensor(obs), torch.as_tensor(acts)).numpy())


def test_observation_normaliser_matches_numpy_and_is_a_buffer():
    rng = np.random.default_rng(1)
    data = rng.normal(3.0, 2.0, size=(1000, 3))
    norm = RunningNormalizer((3,))
    for chunk in np.array_split(data, 7):  # batched updates give the full-data statistics
        norm.update(torch.as_tensor(chunk))
    np.testing.assert_allclose(norm.mean.numpy(), data.mean(0), rtol=1e-10)
    np.testing.assert_allclose(norm.var.numpy(), data.var(0), rtol=1e-10)
    assert float(norm.count) == 1000
    rewards = RunningNormalizer(())  # scalar statistics, as the reward normaliser keeps them
    rewards.update(torch.tensor([1.0, 3.0]))
    assert torch.allclose(rewards(torch.tensor([1.0, 2.0, 3.0])), torch.tensor([-1.0, 0.0, 1.0]))
    model = discrete_model()
    model.update_obs_normalizer(data)
    assert {"obs_norm.mean", "obs_norm.var", "obs_norm.count"} <= set(model.state_dict())
    normalised = model.obs_norm(torch.as_tensor(data, dtype=torch.float32))
    np.testing.assert_allclose(normalised.mean(0).numpy(), 0, atol=1e-5)
    np.testing.assert_allclose(normalised.std(0, correction=0).numpy(), 1, atol=1e-4)


def test_next_obs_required_when_configured():
    with pytest.raises(ModelError, match="next_obs is missing"):
        continuous_model(use_next_obs=True).score(np.zeros((2, 5)), np.zeros((2, 6)))


# -- bad input ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["obs", "acts", "next_obs"])
def test_nan_inputs_refused_naming_field_and_row(field):
    model = continuous_model(use_next_obs=True)
    inputs = {"obs": np.zeros((4, 5)), "acts": np.zeros((4, 6)), "next_obs": np.zeros((4, 5))}
    inputs[field][2, 1] = np.nan
    with pytest.raises(DataError, match=rf"{field}: row 2 holds NaN"):
        model.score(**inputs)


def test_shape_mismatch_refused():
    model = discrete_model()
    with pytest.raises(ModelError, match=r"obs has shape \(2, 4\).*\(batch, 3\)"):
        model.score(np.zeros((2, 4)), np.zeros(2, dtype=np.int64))
    with pytest.raises(ModelError, match="outside the model's Discrete"):
        model.score(np.zeros((2, 3)), np.array([0, 4]))
    with pytest.raises(ModelError, match="integer discrete actions"):
        model.score(np.zeros((2, 3)), np.array([0.0, 1.0]))
    with pytest.raises(ModelError, match="different batch sizes"):
        model.score(np.zeros((2, 3)), np.array([0, 1, 2]))
    with pytest.raises(ModelError, match=r"acts has shape \(2, 5\)"):
        continuous_model().score(np.zeros((2, 5)), np.zeros((2, 5)))


def test_bad_config_refused():
    with pytest.raises(ModelError, match="action_kind"):
        StateActionConfig(obs_dim=3, action_kind="multi", action_dim=2)
    with pytest.raises(ModelError, match="obs_dim"):
        StateActionConfig(obs_dim=0, action_kind="discrete", action_dim=2)
    with pytest.raises(ModelError, match="exactly one of n_tasks"):
        TaskConditionedConfig(obs_dim=3, action_kind="discrete", action_dim=2)


# -- Gymnasium spaces ---------------------------------------------------------------------------------------------


def test_for_spaces():
    spaces = pytest.importorskip("gymnasium.spaces", reason="gymnasium is not installed")
    model = StateActionRewardModel.for_spaces(spaces.Box(-1, 1, (4,)), spaces.Discrete(2), **SMALL)
    assert (model.config.obs_dim, model.config.action_kind, model.config.action_dim) == (4, "discrete", 2)
    model = StateActionRewardModel.for_spaces(spaces.Box(-1, 1, (2, 3)), spaces.Box(-1, 1, (2,)), use_next_obs=True)
    assert (model.config.obs_dim, model.config.action_kind, model.config.action_dim) == (6, "continuous", 2)
    with pytest.raises(ModelError, match="MultiDiscrete"):
        StateActionRewardModel.for_spaces(spaces.Box(-1, 1, (4,)), spaces.MultiDiscrete([2, 2]))
    with pytest.raises(ModelError, match="observation space"):
        StateActionRewardModel.for_spaces(spaces.Discrete(3), spaces.Discrete(2))
    model.check_spaces(spaces.Box(-1, 1, (6,)), spaces.Box(-1, 1, (2,)))
    with pytest.raises(ModelError, match=r"observation space .* has 4 values, but the reward model takes 6"):
        model.check_spaces(spaces.Box(-1, 1, (4,)), spaces.Box(-1, 1, (2,)))
    with pytest.raises(ModelError, match="is discrete with 2 actions, but the reward model takes continuous"):
        model.check_spaces(spaces.Box(-1, 1, (6,)), spaces.Discrete(2))


# -- saving, loading, the store ----------------------------------------------------------------------------------


def test_save_load_round_trip_is_bit_identical(tmp_path):
    model = continuous_model(use_next_obs=True)
    model.update_obs_normalizer(np.random.default_rng(0).normal(size=(50, 5)))
    folder = model.save(tmp_path / "m")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    assert json.loads((folder / "config.json").read_text())["model_type"] == "rewardkit-state-action"
    loaded = StateActionRewardModel.load(folder)
    assert loaded.config == model.config
    assert_bit_identical(model.state_dict(), loaded.state_dict())
    x = np.random.default_rng(1).normal(size=(6, 5)).astype(np.float32)
    assert np.array_equal(model.score(x, np.ones((6, 6)), x), loaded.score(x, np.ones((6, 6)), x))


def test_commit_and_checkout_give_bit_identical_tensors(tmp_path):
    model = discrete_model()
    model.update_obs_normalizer(np.random.default_rng(0).normal(size=(20, 3)))
    folder = model.save(tmp_path / "m")
    with Repository.init(tmp_path / "repo") as repo:
        commit = repo.commit_dir(folder, "state-action reward model")
        out = repo.checkout(commit.id, tmp_path / "out")
    assert (out / "model.safetensors").read_bytes() == (folder / "model.safetensors").read_bytes()
    assert (out / "config.json").read_bytes() == (folder / "config.json").read_bytes()
    loaded = load_reward_model(out)
    assert isinstance(loaded, StateActionRewardModel)
    assert_bit_identical(model.state_dict(), loaded.state_dict())


def test_diff_compares_two_versions_tensor_by_tensor(tmp_path):
    """A trained version against its start: weights and normaliser buffers changed, the reward buffers not."""
    from rewardkit.training.regression import fit_regression

    model = discrete_model()
    with Repository.init(tmp_path / "repo") as repo:
        first = repo.commit_dir(model.save(tmp_path / "v1"), "fresh")
        obs = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
        fit_regression(model, obs, np.arange(64) % 4, obs[:, 0], epochs=1, batch_size=16, lr=1e-2, seed=0)
        second = repo.commit_dir(model.save(tmp_path / "v2"), "trained")
        status = {t.name: t.status for t in diff_commits(repo, first, second).tensors}
    assert status["mlp.0.weight"] == status["obs_norm.mean"] == status["obs_norm.count"] == "changed"
    assert status["reward_norm.mean"] == "unchanged"


def test_load_reward_model_dispatches_on_model_type(tmp_path):
    single = discrete_model().save(tmp_path / "single")
    task = TaskConditionedRewardModel(TaskConditionedConfig(obs_dim=3, action_kind="discrete", action_dim=4,
                                                            n_tasks=3, **SMALL)).save(tmp_path / "task")
    ensemble = RewardEnsemble([discrete_model(0), discrete_model(1)]).save(tmp_path / "ens")
    assert type(load_reward_model(single)) is StateActionRewardModel
    assert type(load_reward_model(task)) is TaskConditionedRewardModel
    assert type(load_reward_model(ensemble)) is RewardEnsemble
    assert [reward_model_kind(f) for f in (single, task, ensemble)] == ["state-action", "task-conditioned",
                                                                       "state-action"]
    with pytest.raises(ModelError, match="holds a task-conditioned reward model.*state-action reward model is needed"):
        load_reward_model(task, kind="state-action")
    with pytest.raises(ModelError, match="model_type is 'rewardkit-ensemble', not 'rewardkit-state-action'"):
        StateActionRewardModel.load(ensemble)


def test_load_reward_model_still_loads_text_models_and_refuses_them_for_rl(tmp_path, minilm):
    folder = minilm.save(tmp_path / "text")
    assert reward_model_kind(folder) == "text"
    loaded = load_reward_model(folder)
    assert type(loaded).__name__ == "TextRewardModel"
    with pytest.raises(ModelError, match=r"holds a text reward model \(model_type 'bert'\), but a state-action"):
        load_reward_model(folder, kind="state-action")


def test_load_refuses_damaged_or_mismatched_folders(tmp_path):
    folder = discrete_model().save(tmp_path / "m")
    with pytest.raises(ModelError, match="does not exist"):
        load_reward_model(tmp_path / "missing")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "obs_dim": 4}))
    with pytest.raises(ModelError, match="model.safetensors does not match .*config.json"):
        load_reward_model(folder)
    (folder / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "action_dim"}))
    with pytest.raises(ModelError, match="config.json: field action_dim is missing"):
        load_reward_model(folder)


# -- task-conditioned ---------------------------------------------------------------------------------------------


def test_task_embedding_model():
    torch.manual_seed(0)
    model = TaskConditionedRewardModel(TaskConditionedConfig(obs_dim=3, action_kind="discrete", action_dim=4,
                                                             n_tasks=3, task_embedding_dim=5, **SMALL))
    assert model.task_embedding.weight.shape == (3, 5) and model.input_dim == 3 + 4 + 5
    obs, acts = np.zeros((4, 3), np.float32), np.array([0, 1, 2, 3])
    by_task = [model.score(obs, acts, task=t) for t in range(3)]
    assert all(r.shape == (4,) for r in by_task)
    assert not np.allclose(by_task[0], by_task[1])  # the task changes the reward
    assert np.array_equal(model.score(obs, acts, task=np.full(4, 2)), by_task[2])
    with pytest.raises(ModelError, match=r"task ids must lie in \[0, 3\)"):
        model.score(obs, acts, task=3)


def test_task_parameter_model_round_trip(tmp_path):
    torch.manual_seed(0)
    model = TaskConditionedRewardModel(TaskConditionedConfig(obs_dim=3, action_kind="continuous", action_dim=2,
                                                             task_param_dim=2, **SMALL))
    assert model.task_embedding is None and model.input_dim == 3 + 2 + 2
    obs, acts = np.ones((4, 3), np.float32), np.ones((4, 2), np.float32)
    one = model.score(obs, acts, task=np.array([0.5, -1.0]))
    assert np.array_equal(one, model.score(obs, acts, task=np.tile([0.5, -1.0], (4, 1))))
    loaded = load_reward_model(model.save(tmp_path / "m"))
    assert loaded.config == model.config
    assert np.array_equal(one, loaded.score(obs, acts, task=np.array([0.5, -1.0])))


# -- ensembles ----------------------------------------------------------------------------------------------------


def test_ensemble_mean_and_std(tmp_path):
    members = [discrete_model(seed) for seed in range(3)]
    ensemble = RewardEnsemble(members)
    obs, acts = torch.randn(6, 3), torch.tensor([0, 1, 2, 3, 0, 1])
    with torch.no_grad():
        each = torch.stack([m(obs, acts) for m in members])
        mean, std = ensemble.mean_std(obs, acts)
        assert torch.allclose(ensemble(obs, acts), each.mean(0))
    assert torch.allclose(mean, each.mean(0)) and torch.allclose(std, each.std(0))
    assert bool((std > 0).all())  # differently initialised members disagree
    np_mean, np_std = ensemble.score_mean_std(obs.numpy(), acts.numpy())
    np.testing.assert_allclose(np_mean, mean.numpy(), rtol=1e-6)
    np.testing.assert_allclose(np_std, std.numpy(), rtol=1e-5)


def test_ensemble_saved_as_one_file_with_member_prefixes(tmp_path):
    ensemble = RewardEnsemble.from_config(discrete_model().config, 3, seed=0)
    folder = ensemble.save(tmp_path / "ens")
    names = set(tensors_of(folder))
    assert {"members.0.mlp.0.weight", "members.2.obs_norm.mean"} <= names
    assert all(name.startswith(("members.0.", "members.1.", "members.2.")) for name in names)
    config = json.loads((folder / "config.json").read_text())
    assert (config["model_type"], config["n_members"], config["member"]["model_type"]) == (
        "rewardkit-ensemble", 3, "rewardkit-state-action")
    loaded = load_reward_model(folder)
    assert_bit_identical(ensemble.state_dict(), loaded.state_dict())


def test_ensemble_of_task_conditioned_members(tmp_path):
    config = TaskConditionedConfig(obs_dim=3, action_kind="discrete", action_dim=4, n_tasks=2, **SMALL)
    state = torch.random.get_rng_state()
    ensemble = RewardEnsemble.from_config(config, 2, seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)  # seeding members leaves the global RNG alone
    assert torch.equal(ensemble.state_dict()["members.0.mlp.0.weight"],
                       RewardEnsemble.from_config(config, 2, seed=5).state_dict()["members.0.mlp.0.weight"])
    loaded = load_reward_model(ensemble.save(tmp_path / "ens"))
    assert isinstance(loaded.members[1], TaskConditionedRewardModel)
    obs, acts = np.zeros((3, 3), np.float32), np.array([0, 1, 2])
    mean, std = loaded.score_mean_std(obs, acts, task=1)
    assert mean.shape == std.shape == (3,)
    assert np.array_equal(mean, ensemble.score(obs, acts, task=1))


def test_ensemble_refuses_mixed_members():
    with pytest.raises(ModelError, match="at least 2 members"):
        RewardEnsemble([discrete_model()])
    with pytest.raises(ModelError, match="member 1 differs"):
        RewardEnsemble([discrete_model(), continuous_model()])
