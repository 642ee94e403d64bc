"""Loading a ref writes no weights anywhere; a damaged repository is a one-line error, exit 2."""

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import rewardkit
from rewardkit import api
from rewardkit.models import TextRewardModel
from rewardkit.store import Repository

TEXTS = ["Yes, it is blue.", "No idea.", "The sky is blue because of Rayleigh scattering of sunlight."]
MANY = [f"Answer {i}: " + "the sky is blue " * (i % 7) + "because of scattering." for i in range(64)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_ref_loads_from_the_objects_bit_identical_to_a_checkout(tmp_path, tiny_model_dir, monkeypatch, dtype):
    model = TextRewardModel.load(tiny_model_dir)
    model.backbone.to(dtype)
    folder = model.save(tmp_path / "model")
    with Repository.init(tmp_path / "repo") as repo:
        repo.commit_dir(folder, "first")
        checkout = TextRewardModel.load(repo.checkout("main", tmp_path / "out"))

        def no_weights_file(*args, **kwargs):
            raise AssertionError("loading a ref wrote a model.safetensors")

        monkeypatch.setattr("rewardkit.store.repository.write_weights", no_weights_file)
        from_ref, config = api.load_model("main", repo)

    assert config is None  # committed without a training config
    assert next(from_ref.parameters()).dtype == next(checkout.parameters()).dtype == dtype
    assert from_ref.backbone.config.pad_token_id == checkout.backbone.config.pad_token_id is not None
    assert from_ref.tokenizer.padding_side == "right" and from_ref.max_length == checkout.max_length
    mapped = dict(from_ref.named_parameters())
    for name, tensor in checkout.named_parameters():
        assert torch.equal(mapped[name], tensor), name
        assert mapped[name].data_ptr() % 64 == tensor.data_ptr() % 64, name  # same alignment as the file's
    # bit-identical, not merely close: kernels round by alignment, so the layout must match the file's too
    assert from_ref.score([""] * 64, MANY, batch_size=8) == checkout.score([""] * 64, MANY, batch_size=8)


# `rewardkit score main ...`, pausing while the model loads so the test can terminate it there.
_SLOW_SCORE = """
import sys, time
from rewardkit.cli.main import main
from rewardkit.models import TextRewardModel

def slow_load(cls, *args, **kwargs):
    print("loading", flush=True)
    time.sleep(60)
TextRewardModel.load = classmethod(slow_load)
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.skipif(os.name != "posix", reason="needs POSIX signals")
def test_a_terminated_score_of_a_ref_leaves_nothing_behind(cli, tmp_path, tiny_model_dir):
    assert cli("init")[0] == 0
    assert cli("commit", tiny_model_dir, "-m", "first")[0] == 0
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "PYTHONPATH": str(Path(rewardkit.__file__).parents[1]), "TMPDIR": str(scratch)}
    child = subprocess.Popen([sys.executable, "-c", _SLOW_SCORE, "score", "main", "hi"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    assert child.stdout.readline() == "loading\n"
    on_disk = sum(p.stat().st_size for p in scratch.rglob("*") if p.is_file())
    assert 0 < on_disk < 2_000_000  # config and tokenizer files only, no weights
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 128 + signal.SIGTERM, err
    assert list(scratch.iterdir()) == []


def _edit_manifest(repo_path):
    with Repository.open(repo_path) as repo:
        commit = repo.resolve("main")
        path = repo.objects.path(commit.manifest_id)
    path.chmod(0o644)
    data = path.read_bytes()
    name = b'"classifier.bias"'
    assert name in data
    path.write_bytes(data.replace(name, b'"classifier.biaz"'))
    return commit.manifest_id


def _empty_db(repo_path):
    for name in ("meta.db-wal", "meta.db-shm"):
        (repo_path / name).unlink(missing_ok=True)
    (repo_path / "meta.db").write_bytes(b"")
    return "meta.db is empty but .*holds .* objects: the commit history is lost"


def _truncated_db(repo_path):
    data = (repo_path / "meta.db").read_bytes()
    (repo_path / "meta.db").write_bytes(data[: len(data) // 2])
    return "meta.db is damaged"


@pytest.mark.parametrize(
    ("damage", "commands"),
    [
        ("manifest", [("show", "main"), ("checkout", "main", "--to", "out"), ("score", "main", "hi")]),
        ("empty db", [("log",), ("commit", "MODEL", "-m", "second")]),
        ("truncated db", [("log",), ("show", "main")]),
    ],
)
def test_a_damaged_repository_is_a_one_line_error(cli, tmp_path, tiny_model_dir, damage, commands):
    assert cli("init")[0] == 0
    assert cli("commit", tiny_model_dir, "-m", "first")[0] == 0
    repo_path = tmp_path / ".rewardkit"
    if damage == "manifest":
        match = f"manifest {_edit_manifest(repo_path)}: .* is corrupt"
    elif damage == "empty db":
        match = _empty_db(repo_path)
    else:
        shutil.copy(repo_path / "meta.db", tmp_path / "backup.db")
        match = _truncated_db(repo_path)
    for command in commands:
        code, out, err = cli(*(tiny_model_dir if a == "MODEL" else a for a in command))
        assert code == 2, (command, err)
        assert err.startswith("error: ") and err.count("\n") == 1, err
        assert pytest.importorskip("re").search(match, err), err
    assert not (tmp_path / "out").exists()


def test_commit_verify_existing_repairs_a_damaged_large_object(cli, tmp_path, tiny_model_dir):
    assert cli("init")[0] == 0
    assert cli("commit", tiny_model_dir, "-m", "first")[0] == 0
    with Repository.open(tmp_path / ".rewardkit") as repo:
        largest = max(repo.objects.ids(), key=lambda id: repo.objects.path(id).stat().st_size)
        path = repo.objects.path(largest)
    assert path.stat().st_size > 1 << 20  # beyond the size up to which every commit compares bytes
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # same size: only comparing the bytes finds it
    path.write_bytes(bytes(data))
    assert cli("commit", tiny_model_dir, "-m", "again")[0] == 0
    assert cli("checkout", "main", "--to", "broken")[0] == 2
    code, _, err = cli("commit", tiny_model_dir, "-m", "again, checked", "--verify-existing")
    assert code == 0 and f"object {largest}" in err and "was damaged" in err
    assert cli("checkout", "main~2", "--to", "repaired")[0] == 0
