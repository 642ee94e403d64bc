"""train --objective mse on rated text; train --init-from REF --freeze PATTERN with lineage in show/log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_helpers import repo_snapshot, write_jsonl
from safetensors.torch import load_file

from rewardkit.store import Repository

FROZEN = "bert.embeddings.*"


def _rated(n: int) -> list[dict]:
    return [{"prompt": f"Question {i}: rate this.", "response": " good" * (i % 4) + f" answer {i}",
             "rating": float(i % 4)} for i in range(n)]


def _pairs(n: int) -> list[dict]:
    return [{"prompt": f"Question {i}: is the sky blue?", "chosen": f"Yes, it is blue ({i}).",
             "rejected": f"No idea, maybe green {i}."} for i in range(n)]


def _train(cli, *args: str) -> tuple[int, str, str]:
    return cli("train", "--max-length", "32", "--batch-size", "8", "--lr", "1e-2", "--epochs", "1", "--json", *args)


@pytest.fixture
def repo(cli, tmp_path) -> Path:
    assert cli("init")[0] == 0
    return tmp_path / ".rewardkit"


def _commit_base(repo: Path, model_dir: Path, message: str = "base model") -> str:
    with Repository.open(repo) as r:
        return r.commit_dir(model_dir, message).id


def test_train_mse_commits_objective_scale_and_rating_metrics(cli, tmp_path, tiny_model_dir, repo):
    data = write_jsonl(tmp_path / "rated.jsonl", _rated(40))
    code, out, err = _train(cli, "--objective", "mse", "--standardize-ratings", "--data", data, "--base-model",
                            tiny_model_dir, "--output-dir", "run", "-m", "mse on ratings")
    assert code == 0, err
    result = json.loads(out)
    assert 20 < result["train"]["train/examples"] < 40  # the training split, grouped by prompt
    test = result["evaluations"]["test"]
    assert set(test) == {"n_examples", "mse", "pearson", "spearman", "mean_rating", "mean_prediction"}
    code, out, _ = cli("show", result["commit"], "--json")
    commit = json.loads(out)
    assert commit["params"]["objective"] == "mse" and commit["params"]["config"]["objective"] == "mse"
    assert 0 < commit["params"]["ratings"]["std"] and 0 <= commit["params"]["ratings"]["mean"] <= 3
    assert commit["metrics"]["test/mse"] == pytest.approx(test["mse"], abs=1e-5)
    assert "probe" not in commit["params"]  # a probe set is made of pairs
    code, out, _ = cli("train", "--objective", "mse", "--data", data, "--base-model", tiny_model_dir,
                       "--max-length", "32", "--epochs", "1", "--output-dir", "run2")
    assert code == 0 and "MSE" in out and "Pearson" in out and "rated examples" in out


@pytest.mark.parametrize(
    ("objective", "rows", "expected"),
    [
        ("bradley-terry", _rated(8), "holds rated examples (response and rating), not preference pairs"),
        ("mse", _pairs(8), "missing field 'response' (or 'completion')"),
    ],
)
def test_data_of_the_other_objective_exits_2_before_loading_weights(cli, tmp_path, repo, objective, rows,
                                                                    expected):
    data = write_jsonl(tmp_path / "data.jsonl", rows)
    before = repo_snapshot(repo)
    code, _, err = _train(cli, "--objective", objective, "--data", data, "--base-model", "no/such-model",
                          "--output-dir", "run", "-m", "x")
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1, err
    assert repo_snapshot(repo) == before and not (tmp_path / "run").exists()


def test_init_from_starts_from_the_stored_weights_freezes_and_records_lineage(cli, tmp_path, tiny_model_dir, repo):
    base = _commit_base(repo, tiny_model_dir)
    head = _commit_base(repo, tiny_model_dir, "the branch head, not the base")
    r = Repository.open(repo)
    base_manifest = r.manifest(r.resolve(base))
    objects_before = r.stats().objects

    data = write_jsonl(tmp_path / "pairs.jsonl", _pairs(40))
    code, out, err = _train(cli, "--data", data, "--init-from", base[:12], "--freeze", FROZEN,
                            "--output-dir", "run", "-m", "transfer")
    assert code == 0, err
    new = json.loads(out)["commit"]
    commit = r.commits.get(new)
    assert commit.params["base"] == base and commit.params["frozen"] == [FROZEN]
    assert commit.base_commits() == [base]  # the lineage gc, fsck and push follow
    assert commit.parents == [head]  # the branch head, as usual; the lineage is the init-from commit
    assert commit.params["config"]["init_from"] == base[:12]

    # frozen tensors keep their objects; every other tensor got a new one
    manifest = r.manifest(commit)
    same = {name for name, t in manifest.tensors.items() if base_manifest.tensors[name].id == t.id}
    frozen = {name for name in manifest.tensors if name.startswith("bert.embeddings.")}
    assert same == frozen | {"classifier.bias"}  # the head's bias gets no Bradley-Terry gradient
    new_tensor_objects = {t.id for name, t in manifest.tensors.items() if name not in same}
    # new objects: the changed tensors, the manifest, the probe's pairs and rewards, and any changed small file
    # (config.json, tokenizer files); nothing for the frozen tensors
    n_files = len({f for name, f in manifest.files.items() if base_manifest.files.get(name) != f})
    assert r.stats().objects - objects_before == len(new_tensor_objects) + 1 + 2 + n_files

    # lineage shown by show and log --graph
    code, out, _ = cli("show", new)
    assert code == 0 and "lineage" in out and f"from {base[:10]}" in out and FROZEN in out
    code, out, _ = cli("log", "--graph")
    assert code == 0 and "[from" in out and out.count(base[:10]) == 2  # its own row and the lineage label
    assert out.count(head[:10]) == 1


def test_init_from_loads_the_stored_weights_bit_for_bit(tmp_path, tiny_model_dir):
    import contextlib

    from rewardkit.api.training import _stored_base
    from rewardkit.training import RewardConfig

    repo = Repository.init(tmp_path / "repo")
    commit = repo.commit_dir(tiny_model_dir, "base")
    with contextlib.ExitStack() as stack:
        source = _stored_base(RewardConfig(init_from=commit.id[:8]), repo, stack)
        model = source.load()
    stored = load_file(tiny_model_dir / "model.safetensors")
    state = model.backbone.state_dict()
    assert stored.keys() <= state.keys()
    assert all(torch.equal(stored[k], state[k]) for k in stored)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--init-from", "no-such-ref"), "no-such-ref"),
        (("--init-from", "BASE", "--freeze", "encoder.*"), "--freeze 'encoder.*' matches no parameter"),
        (("--init-from", "BASE", "--base-model", "x"), "give either init_from (--init-from)"),
        (("--freeze", "bert.*", "--lora-r", "4"), "do not combine"),
    ],
)
def test_bad_transfer_options_exit_2_with_nothing_written(cli, tmp_path, tiny_model_dir, repo, args, expected):
    base = _commit_base(repo, tiny_model_dir)
    data = write_jsonl(tmp_path / "pairs.jsonl", _pairs(12))
    before = repo_snapshot(repo)
    code, _, err = _train(cli, "--data", data, *[base if a == "BASE" else a for a in args],
                          "--output-dir", "run", "-m", "x")
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1, err
    assert repo_snapshot(repo) == before and not (tmp_path / "run").exists()


def test_init_from_outside_a_repository_exits_2(cli, tmp_path):
    data = write_jsonl(tmp_path / "pairs.jsonl", _pairs(12))
    code, _, err = _train(cli, "--data", data, "--init-from", "main", "--output-dir", "run")
    assert code == 2 and len(err.strip().splitlines()) == 1 and not (tmp_path / "run").exists(), err


def test_init_from_a_state_action_model_exits_2_before_loading_weights(cli, tmp_path, repo):
    from rewardkit.models.state_action import StateActionConfig, StateActionRewardModel

    folder = StateActionRewardModel(StateActionConfig(obs_dim=3, action_kind="discrete", action_dim=2,
                                                      hidden_sizes=(8,))).save(tmp_path / "sa")
    _commit_base(repo, folder)
    data = write_jsonl(tmp_path / "pairs.jsonl", _pairs(12))
    before = repo_snapshot(repo)
    code, _, err = _train(cli, "--data", data, "--init-from", "main", "--output-dir", "run", "-m", "x")
    assert code == 2 and "--init-from main is a state-action reward model" in err, err
    assert repo_snapshot(repo) == before and not (tmp_path / "run").exists()


def test_a_rated_data_error_comes_before_torch_is_imported(tmp_path):
    import subprocess
    import sys

    bad = write_jsonl(tmp_path / "bad.jsonl", [*_rated(5), {"response": "r", "rating": "nan"}])
    script = ("import sys; from rewardkit.cli.main import main; "
              f"code = main(['train', '--objective', 'mse', '--data', {str(bad)!r}, '--output-dir', "
              f"{str(tmp_path / 'run')!r}]); "
              "print(code, sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.stdout.split("\n")[0] == "2 []", done.stdout + done.stderr
    assert "bad.jsonl:6: field 'rating' must be a finite number" in done.stderr


def test_format_with_rated_data_and_standardize_without_mse_exit_2(cli, tmp_path):
    data = write_jsonl(tmp_path / "rated.jsonl", _rated(8))
    code, _, err = _train(cli, "--objective", "mse", "--format", "trl", "--data", data, "--output-dir", "run")
    assert code == 2 and "rated data (--objective mse) has one format" in err
    code, _, err = _train(cli, "--standardize-ratings", "--data", data, "--output-dir", "run")
    assert code == 2 and "needs --objective mse" in err
    code, _, err = _train(cli, "--objective", "ranking", "--data", data, "--output-dir", "run")
    assert code == 2 and "must be one of bradley-terry, mse" in err and not (tmp_path / "run").exists()
