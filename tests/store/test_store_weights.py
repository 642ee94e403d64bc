"""Streaming commit and checkout of weights: save_file's bytes, save_pretrained's shards, bounded memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save
from transformers import AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification

import rewardkit
from rewardkit.errors import ModelError, StoreError
from rewardkit.store import Repository
from rewardkit.store.modeldir import WEIGHTS_INDEX_FILE, write_model_dir

SRC = str(Path(rewardkit.__file__).resolve().parents[1])  # the code under test, for child processes


def test_checkout_writes_the_bytes_save_file_writes(repo: Repository, tmp_path: Path) -> None:
    tensors = {
        "b.weight": torch.randn(3, 5),
        "a.weight": torch.randn(4, 2).to(torch.bfloat16),
        "ids": torch.arange(7, dtype=torch.int64),
        "mask": torch.tensor([True, False, True]),
        "half": torch.randn(3).to(torch.float16),
        "scalar": torch.tensor(2.5),
        "empty": torch.empty(0, 3),
        "f8": torch.randn(5).to(torch.float8_e5m2),
        "größe": torch.ones(2, dtype=torch.int8),
    }
    repo.commit_tensors(tensors, {}, "mixed")
    out = repo.checkout("main", tmp_path / "out")
    assert (out / "model.safetensors").read_bytes() == save(tensors, metadata={"format": "pt"})
    assert sorted(p.name for p in out.iterdir()) == ["model.safetensors"]  # no temp file left


def _tiny_bert(tmp_path: Path, **save_kwargs: object) -> tuple[BertForSequenceClassification, Path]:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, num_labels=1)  # fmt: skip
    model = BertForSequenceClassification(config).eval()
    folder = tmp_path / f"saved{len(list(tmp_path.glob('saved*')))}"
    model.save_pretrained(folder, **save_kwargs)
    return model, folder


def test_sharded_checkout_matches_save_pretrained_and_loads_bit_identical(repo: Repository, tmp_path: Path) -> None:
    model, folder = _tiny_bert(tmp_path)
    commit = repo.commit_dir(folder, "tiny bert")
    out = repo.checkout("main", tmp_path / "out", max_shard_size=4000)

    _, reference = _tiny_bert(tmp_path, max_shard_size=4000)  # what transformers writes
    shards = sorted(p.name for p in out.glob("model-*.safetensors"))
    assert len(shards) > 2 and shards == [f"model-{k:05d}-of-{len(shards):05d}.safetensors" for k in
                                          range(1, len(shards) + 1)]  # fmt: skip
    assert not (out / "model.safetensors").exists()
    index, expected = (json.loads((f / WEIGHTS_INDEX_FILE).read_text()) for f in (out, reference))
    # the same index, but split in name order: a folder does not record transformers' module order
    assert index["weight_map"].keys() == expected["weight_map"].keys()
    assert index["metadata"]["total_size"] == expected["metadata"]["total_size"]
    for shard in shards:  # each file holds what the index says, at most max_shard_size unless one tensor
        got = load_file(out / shard)
        assert sorted(got) == sorted(n for n, f in index["weight_map"].items() if f == shard)
        assert len(got) == 1 or sum(t.numel() * t.element_size() for t in got.values()) <= 4000

    loaded = AutoModelForSequenceClassification.from_pretrained(out).eval()
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    # a sharded folder commits to the same manifest as the single file it came from
    assert repo.commit_dir(out, "again").manifest_id == commit.manifest_id
    assert repo.commit_dir(reference, "from save_pretrained").manifest_id == commit.manifest_id


def test_checkout_over_the_other_layout_removes_stale_weights(repo: Repository, tmp_path: Path) -> None:
    _, folder = _tiny_bert(tmp_path)
    repo.commit_dir(folder, "tiny bert")
    out = repo.checkout("main", tmp_path / "out", max_shard_size=4000)
    repo.checkout("main", out, force=True)
    assert sorted(p.name for p in out.glob("model*")) == ["model.safetensors"]
    repo.checkout("main", out, force=True, max_shard_size=4000)
    assert not (out / "model.safetensors").exists() and (out / WEIGHTS_INDEX_FILE).is_file()


@pytest.mark.parametrize("damage", ["missing shard", "index disagrees", "outside path"])
def test_a_bad_sharded_folder_changes_nothing(
    repo: Repository, tmp_path: Path, tiny_tensors, snapshot, damage: str
) -> None:
    repo.commit_tensors(tiny_tensors(), {}, "existing")
    before = snapshot(repo)
    _, folder = _tiny_bert(tmp_path, max_shard_size=4000)
    index = json.loads((folder / WEIGHTS_INDEX_FILE).read_text())
    if damage == "missing shard":
        (folder / "model-00002-of-00008.safetensors").unlink()
        match = "shard model-00002-of-00008.safetensors of tensor .* is missing"
    elif damage == "index disagrees":
        name = next(iter(index["weight_map"]))
        index["weight_map"][name] = "model-00008-of-00008.safetensors"
        match = "disagree about tensor"
    else:
        index["weight_map"][next(iter(index["weight_map"]))] = "../model.safetensors"
        match = "not a file in the same folder"
    (folder / WEIGHTS_INDEX_FILE).write_text(json.dumps(index))
    with pytest.raises(ModelError, match=match):
        repo.commit_dir(folder, "bad")
    assert snapshot(repo) == before


def test_a_corrupt_object_leaves_no_weights_file(repo: Repository, tmp_path: Path) -> None:
    tensors = {"a": torch.randn(64, 64), "b": torch.randn(64, 64)}
    repo.commit_tensors(tensors, {}, "two")
    path = repo.objects.path(repo.manifest("main").tensors["b"].id)
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="corrupt"):
        repo.checkout("main", tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".tmp-*"))  # nothing written, no stage left
    good = repo.commit_tensors({"a": torch.zeros(3)}, {"config.json": b'{"good": 1}'}, "good", branch="good")
    repo.checkout(good.id, tmp_path / "out")
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    with pytest.raises(StoreError, match="corrupt"):  # --force over a good checkout: it stays as it was
        repo.checkout("main", tmp_path / "out", force=True)
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == before


def test_write_model_dir_from_tensors_shards_too(tmp_path: Path) -> None:
    tensors = {f"w{i}": torch.full((100,), float(i)) for i in range(5)}
    write_model_dir(tmp_path, tensors, {"config.json": b"{}"}, max_shard_size=800)
    index = json.loads((tmp_path / WEIGHTS_INDEX_FILE).read_text())
    assert index["metadata"]["total_size"] == 2000 and len(set(index["weight_map"].values())) == 3


_MEMORY_SCRIPT = textwrap.dedent(
    """
    import sys, torch
    from pathlib import Path
    from rewardkit.store import Repository
    from rewardkit.store.modeldir import write_weights
    from rewardkit.store.objects import tensor_bytes

    folder, n, rows, step = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    def tensor(name):  # made on demand, never all at once
        g = torch.Generator().manual_seed(int(name[1:]))
        return tensor_bytes(torch.randn(rows, 1024, generator=g) * 0.02)
    class Spec:
        dtype, shape = "F32", (rows, 1024)
    def status(field):  # bytes, from /proc/self/status
        line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(field))
        return int(line.split()[1]) * 1024
    if step == "commit":
        (folder / "model").mkdir(parents=True)
        write_weights(folder / "model", {f"w{i}": Spec for i in range(n)}, tensor)
        repo = Repository.init(folder / "repo")
    else:
        repo = Repository.open(folder / "repo")
    Path("/proc/self/clear_refs").write_text("5")  # peak RSS := RSS now (Linux >= 4.0)
    base = status("VmRSS")
    if step == "commit":
        repo.commit_dir(folder / "model", "big")
    else:
        repo.checkout("main", folder / "out")
    print(status("VmHWM") - base)
    """
)


def _clean_env() -> dict[str, str]:
    """A child environment free of what earlier tests in this process may have set (allocator, thread pools)."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
    return {k: os.environ[k] for k in keep if k in os.environ} | {"PYTHONPATH": SRC}


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's peak-RSS reset")
def test_commit_and_checkout_memory_is_bounded_by_the_largest_tensor(tmp_path: Path) -> None:
    n, rows = 40, 1024  # 40 tensors of 4 MiB: a 160 MiB model
    largest, model = rows * 1024 * 4, n * rows * 1024 * 4
    for step in ("commit", "checkout"):  # each in a fresh process: peak RSS above its start, bytes
        run = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, str(tmp_path), str(n), str(rows), step],
                             capture_output=True, text=True, check=True, env=_clean_env())  # fmt: skip
        # loading the whole model would cost at least its size; streaming costs a few tensors
        assert int(run.stdout) < min(8 * largest, model / 4), (step, run.stdout)
    out = load_file(tmp_path / "out" / "model.safetensors")
    assert torch.equal(out["w3"], load_file(tmp_path / "model" / "model.safetensors")["w3"])


def test_commit_leaves_out_trainer_state_and_refuses_other_pickles(repo: Repository, tmp_path: Path) -> None:
    folder = tmp_path / "run"
    write_model_dir(folder, {"w": torch.ones(3)}, {"config.json": b"{}", "tokenizer/vocab.txt": b"a\n"})
    for junk in ("training_args.bin", "optimizer.pt", "rng_state_0.pth", "checkpoint-10/optimizer.pt"):
        (folder / junk).parent.mkdir(parents=True, exist_ok=True)
        (folder / junk).write_bytes(b"\x80\x04pickle")
    commit = repo.commit_dir(folder, "trained")
    assert sorted(repo.manifest(commit).files) == ["config.json", "tokenizer/vocab.txt"]
    (folder / "extra" / "state.pkl").parent.mkdir()
    (folder / "extra" / "state.pkl").write_bytes(b"\x80\x04pickle")
    before = repo.stats()
    with pytest.raises(ModelError, match=r"state.pkl: a pickle file in a model folder is refused"):
        repo.commit_dir(folder, "with a pickle")
    assert repo.stats() == before
