"""LoRA through the CLI: train --lora-r commits an adapter on a base commit; checkout as adapter or --merged; eval."""

import json
from pathlib import Path

import pytest
import torch
from cli_helpers import repo_snapshot, write_jsonl
from peft import AutoPeftModelForSequenceClassification, PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

from rewardkit.models import TextRewardModel, default_backbone
from rewardkit.models.text import set_pad_token

TEXTS = ["Question 1: is the sky blue? Yes, it is blue (1).", "Question 1: is the sky blue? No idea, maybe green."]


def _pairs(n: int) -> list[dict]:
    return [{"prompt": f"Question {i}: is the sky blue?", "chosen": f"Yes, it is blue ({i}).",
             "rejected": f"No idea, maybe green {i}."} for i in range(n)]


@pytest.fixture(scope="module")
def tiny_llama_dir(tmp_path_factory) -> Path:
    """A tiny random 2-layer Llama reward model with the MiniLM tokenizer, saved as a folder."""
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(default_backbone())
    config = LlamaConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=64, max_position_embeddings=128, num_labels=1)
    backbone = LlamaForSequenceClassification(config)
    set_pad_token(tokenizer, backbone)
    return TextRewardModel(backbone, tokenizer).save(tmp_path_factory.mktemp("llama") / "model")


@pytest.fixture(params=["bert", "llama"])
def family(request, tiny_model_dir, tiny_llama_dir) -> tuple[str, Path]:
    return request.param, {"bert": tiny_model_dir, "llama": tiny_llama_dir}[request.param]


def _logits(model, folder: Path) -> torch.Tensor:
    tokenizer = AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        return model.eval()(**tokenizer(TEXTS, return_tensors="pt", padding=True)).logits.squeeze(-1)


def _store_bytes(repo: Path) -> int:
    return sum(p.stat().st_size for p in (repo / "objects").rglob("*") if p.is_file())


def _train_lora(cli, data, base, out, *extra) -> dict:
    code, stdout, err = cli("train", "--data", data, "--base-model", base, "--max-length", "32", "--batch-size", "4",
                            "--lr", "1e-2", "--epochs", "2", "--lora-r", "4", "--output-dir", out,
                            "-m", f"lora {out}", "--json", *extra)
    assert code == 0, err
    return json.loads(stdout)


def test_lora_commit_checkout_adapter_and_merged_eval(cli, tmp_path, family):
    name, base_dir = family
    data = write_jsonl(tmp_path / "pairs.jsonl", _pairs(40))
    assert cli("init")[0] == 0
    adapter_id = _train_lora(cli, data, base_dir, "run")["commit"]

    (adapter,) = json.loads(cli("log", "--json")[1])  # the base is stored on no branch: lineage, not history
    base = json.loads(cli("show", adapter["params"]["adapter"]["base"], "--json")[1])
    assert adapter["id"] == adapter_id and adapter["parents"] == [] and base["parents"] == []
    assert base["message"].startswith("LoRA base")
    head = "classifier" if name == "bert" else "score"
    assert adapter["params"]["adapter"] | {"base": None} == {
        "base": None, "peft_type": "LORA", "r": 4, "lora_alpha": 8,
        "target_modules": ["query", "value"] if name == "bert" else ["q_proj", "v_proj"], "modules_to_save": [head]}
    assert adapter["params"]["adapter"]["base"] == base["id"]
    shown = json.loads(cli("show", "main", "--json")[1])
    n_layers = 1 if name == "bert" else 2
    # 2 targets x (lora_A, lora_B) per layer, plus the head's weight (and BERT's head bias)
    assert shown["tensors"] == 4 * n_layers + (2 if name == "bert" else 1)
    assert "adapter_config.json" in shown["files"] and "config.json" not in shown["files"]
    assert "[LoRA r=4]" in cli("log")[1]
    assert f"LoRA r=4 on base {base['id'][:10]}" in cli("show", "main")[1]

    # the trained model, as the run folder holds it: the adapter beside its base
    trained = PeftModel.from_pretrained(AutoModelForSequenceClassification.from_pretrained(tmp_path / "run" / "base"),
                                        tmp_path / "run" / "model")
    expected = _logits(trained, tmp_path / "run" / "model")
    untrained = _logits(AutoModelForSequenceClassification.from_pretrained(tmp_path / "run" / "base"),
                        tmp_path / "run" / "base")
    assert (expected - untrained).abs().max() > 1e-3  # the adapter and head changed the rewards

    assert cli("checkout", "main", "--to", "adapter")[0] == 0
    assert not (tmp_path / "adapter" / "model.safetensors").exists()
    base_model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "adapter" / "base")
    loaded = PeftModel.from_pretrained(base_model, tmp_path / "adapter")
    assert torch.equal(_logits(loaded, tmp_path / "adapter"), expected)  # same tensors, same code: same bits
    auto = AutoPeftModelForSequenceClassification.from_pretrained(tmp_path / "adapter")  # finds base/ by itself
    assert torch.equal(_logits(auto, tmp_path / "adapter"), expected)

    assert cli("checkout", "main", "--to", "merged", "--merged")[0] == 0
    merged = AutoModelForSequenceClassification.from_pretrained(tmp_path / "merged")
    torch.testing.assert_close(_logits(merged, tmp_path / "merged"), expected, atol=1e-5, rtol=1e-4)
    # bit-identical to peft's own merge
    reference = trained.merge_and_unload().state_dict()
    written = load_file(tmp_path / "merged" / "model.safetensors")
    assert written.keys() == reference.keys()
    assert all(torch.equal(written[k], reference[k]) for k in written)

    # eval and score on the commit read the merged weights straight from the store
    reports = [json.loads(cli("eval", "--model", model, "--data", data, "--json")[1]) for model in ("main", "merged")]
    assert reports[0]["accuracy"] == reports[1]["accuracy"] and reports[0]["n_pairs"] == 40
    scores = [json.loads(cli("score", model, *TEXTS, "--json")[1]) for model in ("main", "merged")]
    assert [r["reward"] for r in scores[0]] == [r["reward"] for r in scores[1]]


def test_a_second_adapter_on_a_base_commit_stores_only_its_own_bytes(cli, tmp_path, tiny_model_dir):
    data = write_jsonl(tmp_path / "pairs.jsonl", _pairs(40))
    assert cli("init")[0] == 0
    _train_lora(cli, data, tiny_model_dir, "first")
    base_id = json.loads(cli("log", "--json")[1])[0]["params"]["adapter"]["base"]
    before, base_bytes = _store_bytes(tmp_path / ".rewardkit"), (tmp_path / "first" / "base" / "model.safetensors")
    second = _train_lora(cli, data, base_id[:12], "second", "--seed", "1")
    added = _store_bytes(tmp_path / ".rewardkit") - before

    log = json.loads(cli("log", "--json")[1])
    assert len(log) == 2 and log[0]["id"] == second["commit"]  # no second base commit, no base on the branch
    assert log[0]["params"]["adapter"]["base"] == base_id and log[0]["params"]["base"] == base_id
    adapter_bytes = (tmp_path / "second" / "model" / "adapter_model.safetensors").stat().st_size
    # the adapter's tensors and head, its config and the manifest (tokenizer files dedup): about 10 KB
    assert added < adapter_bytes + 8_000
    assert added * 100 < base_bytes.stat().st_size  # the base (~2 MB) is not stored again


@pytest.mark.parametrize(("flags", "message"), [
    (["--lora-r", "-1"], "lora_r (--lora-r) must be a whole number >= 0"),
    (["--lora-r", "4", "--lora-alpha", "nan"], "lora_alpha (--lora-alpha) must be a finite number > 0, got nan"),
    (["--lora-r", "4", "--lora-target", "query", "--lora-target", "q_proj"],
     "--lora-target q_proj: no such linear layer in this bert model"),
    (["--lora-alpha", "8"], "need a LoRA rank: add --lora-r"),
])
def test_bad_lora_flags_exit_2_before_any_weight_loads(cli, tmp_path, tiny_model_dir, flags, message):
    data = write_jsonl(tmp_path / "pairs.jsonl", _pairs(40))
    assert cli("init")[0] == 0
    before = repo_snapshot(tmp_path / ".rewardkit")
    code, _, err = cli("train", "--data", data, "--base-model", tiny_model_dir, "--output-dir", "run", "-m", "x",
                       *flags)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run" / "base").exists()  # refused before the model was loaded and saved
    assert repo_snapshot(tmp_path / ".rewardkit") == before


def test_lora_on_an_adapter_commit_is_refused(cli, tmp_path, tiny_model_dir):
    data = write_jsonl(tmp_path / "pairs.jsonl", _pairs(40))
    assert cli("init")[0] == 0
    _train_lora(cli, data, tiny_model_dir, "first")
    before = repo_snapshot(tmp_path / ".rewardkit")
    code, _, err = cli("train", "--data", data, "--base-model", "main", "--lora-r", "4", "--output-dir", "run",
                       "-m", "x")
    assert code == 2 and "--base-model main is a LoRA adapter" in err and "--merged" in err
    # an adapter folder is not a model folder: `commit` says what it is (it used to ask for save_pretrained)
    code, _, err = cli("commit", tmp_path / "first" / "model", "-m", "adapter folder")
    assert code == 2 and "holds a LoRA adapter (adapter_config.json), not a full model" in err
    assert repo_snapshot(tmp_path / ".rewardkit") == before


def test_full_training_from_a_commit_starts_from_its_weights(cli, tmp_path, tiny_model_dir):
    data = write_jsonl(tmp_path / "pairs.jsonl", _pairs(40))
    assert cli("init")[0] == 0
    assert cli("commit", tiny_model_dir, "-m", "start")[0] == 0
    start = json.loads(cli("log", "--json")[1])[0]
    code, out, err = cli("train", "--data", data, "--base-model", "main", "--max-length", "32", "--lr", "1e-12",
                         "--output-dir", "run", "-m", "from main", "--json")
    assert code == 0, err
    trained = json.loads(cli("show", "main", "--json")[1])
    assert trained["params"]["base"] == start["id"] and trained["parents"] == [start["id"]]
    before = load_file(tiny_model_dir / "model.safetensors")
    after = load_file(tmp_path / "run" / "model" / "model.safetensors")
    assert before.keys() == after.keys()
    for name in before:  # the stored head too: nothing was re-initialised
        torch.testing.assert_close(after[name], before[name], atol=1e-6, rtol=0)
