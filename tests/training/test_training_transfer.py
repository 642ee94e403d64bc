"""Transfer: init_from a stored version, freeze by pattern, lineage recorded and shown."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rewardkit.cli.main import main
from rewardkit.errors import ConfigError, ModelError
from rewardkit.models import StateActionConfig, StateActionRewardModel
from rewardkit.store import Repository
from rewardkit.store.fsck import fsck
from rewardkit.training import fit_regression
from rewardkit.training.freeze import freeze_parameters
from rewardkit.training.transfer import commit_model, init_from


def _model(seed: int = 0) -> StateActionRewardModel:
    torch.manual_seed(seed)
    return StateActionRewardModel(StateActionConfig(obs_dim=3, action_kind="continuous", action_dim=1,
                                                    hidden_sizes=(16, 16)))


def _data(seed: int, n: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, 3)).astype(np.float32)
    acts = rng.uniform(-2, 2, size=(n, 1)).astype(np.float32)
    return obs, acts, (obs[:, 0] - 0.3 * acts[:, 0] ** 2).astype(np.float32)


@pytest.fixture
def repo(tmp_path):
    with Repository.init(tmp_path / ".rewardkit") as r:
        yield r


def test_freeze_leaves_frozen_parameters_bit_identical_after_training() -> None:
    model = _model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    frozen = freeze_parameters(model, ["mlp.0.*", "mlp.4.bias"])
    assert frozen == ["mlp.0.weight", "mlp.0.bias", "mlp.4.bias"]
    fit_regression(model, *_data(0), epochs=3, batch_size=32, lr=1e-2, seed=0, weight_decay=1e-3)
    for name, param in model.named_parameters():
        same = torch.equal(param, before[name])
        assert same == (name in frozen), name


def test_freeze_refuses_a_pattern_matching_nothing_and_names_the_parameters() -> None:
    model = _model()
    with pytest.raises(ConfigError, match=r"'encoder\.\*' matches no parameter of the model; its parameters are "
                                          r"named like mlp\.0\.weight, "):
        freeze_parameters(model, ["mlp.0.*", "encoder.*"])
    assert all(p.requires_grad for p in model.parameters())  # nothing frozen on refusal


def test_init_from_loads_the_stored_version_and_commits_record_and_show_lineage(repo, tmp_path, capsys,
                                                                                 monkeypatch) -> None:
    source = _model()
    fit_regression(source, *_data(0), epochs=2, batch_size=64, lr=1e-2, seed=0)
    base = commit_model(repo, source, "source task")
    transfer = init_from(repo, "main", kind="state-action")
    assert transfer.base.id == base.id
    for (name, a), b in zip(source.state_dict().items(), transfer.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name  # weights and normaliser buffers, bit for bit
    transfer.freeze("mlp.0.*")
    fit_regression(transfer.model, *_data(1), epochs=2, batch_size=64, lr=1e-2, seed=0, update_normalizer=False)
    child = commit_model(repo, transfer.model, "fine-tuned on the target task", transfer=transfer)

    assert transfer.frozen == ["mlp.0.weight", "mlp.0.bias"]
    assert child.params["base"] == base.id and child.params["frozen"] == ["mlp.0.*"]  # as `train --init-from` writes
    assert child.base_commits() == [base.id]
    assert fsck(repo).findings == []

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REWARDKIT_REPO", raising=False)
    monkeypatch.setenv("COLUMNS", "250")
    assert main(["show", "main"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "lineage" in line)
    assert f"from {base.id[:10]}" in row and "frozen: mlp.0.*" in row
    assert main(["log", "--graph"]) == 0
    assert f"[from {base.id[:10]}]" in capsys.readouterr().out
    assert main(["show", "main", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["params"]["base"] == base.id


def test_init_from_refuses_another_kind_of_model(repo) -> None:
    commit_model(repo, _model(), "a state-action model")
    with pytest.raises(ModelError, match="holds a state-action reward model .* but a task-conditioned"):
        init_from(repo, "main", kind="task-conditioned")
