"""LoRA adapter commits: effective tensors equal peft's merge, ids for diff, merge checks, refusals."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

from rewardkit.errors import StoreError
from rewardkit.models import TextRewardModel, default_backbone
from rewardkit.models.lora import add_lora
from rewardkit.store.adapters import (
    check_mergeable,
    checkout_adapter,
    commit_adapter,
    effective_tensor_ids,
    effective_tensors,
    is_adapter,
)


@pytest.fixture(scope="module")
def tokenizer():
    return transformers.AutoTokenizer.from_pretrained(default_backbone())


def tiny(kind: str, tokenizer, hidden: int = 16) -> TextRewardModel:
    torch.manual_seed(0)
    common = dict(vocab_size=tokenizer.vocab_size, num_labels=1, pad_token_id=tokenizer.pad_token_id)
    if kind == "bert":
        config = transformers.BertConfig(hidden_size=hidden, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=32, **common)
        return TextRewardModel(transformers.BertForSequenceClassification(config), tokenizer)
    config = transformers.GPT2Config(n_embd=hidden, n_layer=1, n_head=2, n_positions=32, **common)
    return TextRewardModel(transformers.GPT2ForSequenceClassification(config), tokenizer)


def adapter_on(model: TextRewardModel, folder: Path, seed: int, **lora) -> TextRewardModel:
    """Save ``model`` to ``folder/base``, add LoRA with random (nonzero) factors, save it to ``folder/adapter``."""
    model.save(folder / "base")
    add_lora(model, **{"r": 2} | lora)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.backbone.parameters():
            if p.requires_grad:  # LoRA factors and the head's trainable copy
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    model.save(folder / "adapter")
    return model


@pytest.mark.parametrize("kind", ["bert", "gpt2"])  # GPT-2's Conv1D stores its weights transposed (fan_in_fan_out)
def test_effective_tensors_equal_peft_merge_and_unload(repo, tmp_path, tokenizer, kind):
    model = adapter_on(tiny(kind, tokenizer), tmp_path, seed=1, alpha=5.0)
    base = repo.commit_dir(tmp_path / "base", "base")
    commit = commit_adapter(repo, tmp_path / "adapter", base, "adapter")
    assert is_adapter(commit) and not is_adapter(base)

    reference = copy.deepcopy(model.peft_model).merge_and_unload().state_dict()
    effective = dict(effective_tensors(repo, commit))
    base_tensors = repo.load_tensors(base.id)
    assert effective.keys() == base_tensors.keys()
    assert all(torch.equal(effective[k], reference[k]) for k in effective)
    changed = {k for k in effective if not torch.equal(effective[k], base_tensors[k])}
    head = "classifier" if kind == "bert" else "score"
    assert {k.split(".")[-2] for k in changed} == ({"query", "value", head} if kind == "bert" else {"c_attn", head})

    ids = effective_tensor_ids(repo, commit)
    base_ids = effective_tensor_ids(repo, base)
    assert ids.keys() == base_ids.keys()
    for name, object_id in ids.items():
        if name.startswith(head):  # stored as is, in the adapter
            assert object_id == repo.manifest(commit).tensors["base_model.model." + name].id
        elif name in changed:  # exists only as W + alpha/r * B @ A
            assert object_id is None
        else:
            assert object_id == base_ids[name]


def test_merge_check_accepts_one_base_and_refuses_two(repo, tmp_path, tokenizer):
    adapter_on(tiny("bert", tokenizer), tmp_path / "a", seed=1)
    adapter_on(tiny("bert", tokenizer), tmp_path / "b", seed=2)
    base = repo.commit_dir(tmp_path / "a" / "base", "base")
    a = commit_adapter(repo, tmp_path / "a" / "adapter", base, "a")
    b = commit_adapter(repo, tmp_path / "b" / "adapter", base, "b")
    check_mergeable(repo, [base, a, b])  # two adapters on one base, and the base: fine

    other = tiny("bert", tokenizer)
    with torch.no_grad():
        other.backbone.bert.pooler.dense.weight.add_(1.0)
    adapter_on(other, tmp_path / "c", seed=3)
    other_base = repo.commit_dir(tmp_path / "c" / "base", "other base")
    c = commit_adapter(repo, tmp_path / "c" / "adapter", other_base, "c")
    with pytest.raises(StoreError, match=f"different base models .*{a.id[:10]} on base weights .*{c.id[:10]} on base"):
        check_mergeable(repo, [a, c])


def test_an_adapter_that_does_not_fit_its_base_is_refused_before_writing(repo, tmp_path, tokenizer, snapshot):
    adapter_on(tiny("bert", tokenizer, hidden=16), tmp_path / "small", seed=1)
    adapter_on(tiny("bert", tokenizer, hidden=32), tmp_path / "large", seed=1)
    large = repo.commit_dir(tmp_path / "large" / "base", "large base")
    adapter = commit_adapter(repo, tmp_path / "large" / "adapter", large, "fits")
    before = snapshot(repo)
    with pytest.raises(StoreError, match=r"does not fit the base: it needs bert\.encoder\.layer\.0\.attention\.self\."
                                         r"(query|value)\.weight of shape \[16, 16\], the base has shape \[32, 32\]"):
        commit_adapter(repo, tmp_path / "small" / "adapter", large, "wrong base")
    with pytest.raises(StoreError, match="must be a full model; .* is an adapter itself"):
        commit_adapter(repo, tmp_path / "large" / "adapter", adapter, "adapter on adapter")
    weights = tmp_path / "large" / "adapter" / "adapter_model.safetensors"  # one lora_B given rank 3, r is 2
    tensors = load_file(weights)
    name = next(n for n in tensors if n.endswith("lora_B.weight"))
    save_file(tensors | {name: torch.cat([tensors[name], tensors[name][:, :1]], dim=1)}, weights)
    with pytest.raises(StoreError, match=r"do not have rank r=\d+ \(lora_A must be \[r, in\], lora_B \[out, r\]\)"):
        commit_adapter(repo, tmp_path / "large" / "adapter", large, "mismatched ranks")
    assert snapshot(repo) == before


def test_checkout_refuses_a_non_empty_folder_and_a_missing_base(repo, tmp_path, tokenizer):
    adapter_on(tiny("bert", tokenizer), tmp_path, seed=1)
    base = repo.commit_dir(tmp_path / "base", "base")
    commit = commit_adapter(repo, tmp_path / "adapter", base, "adapter")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    with pytest.raises(StoreError, match="the folder is not empty"):
        checkout_adapter(repo, commit, tmp_path / "busy")
    assert not (tmp_path / "busy" / "base").exists()
    with repo.engine.begin() as conn:  # the base commit's row is lost (a damaged database)
        conn.exec_driver_sql("DELETE FROM commits WHERE id = ?", (base.id,))
    with pytest.raises(StoreError, match=f"names base commit {base.id[:10]}, which is not in the repository"):
        checkout_adapter(repo, commit, tmp_path / "out", merged=True)
