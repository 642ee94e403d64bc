"""LoRA training (peft): only the adapter and the head train, it learns, resumes exactly; bad settings refused."""

from __future__ import annotations

import math

import pytest
import torch

from rewardkit.errors import ConfigError
from rewardkit.training import RewardConfig, RewardTrainer


def accuracy(model, pairs) -> float:
    prompts = [p.prompt for p in pairs]
    chosen = model.score(prompts, [p.chosen for p in pairs])
    rejected = model.score(prompts, [p.rejected for p in pairs])
    return sum(c > r for c, r in zip(chosen, rejected, strict=True)) / len(pairs)


def test_lora_trains_only_the_adapter_and_the_head(tiny_model, pairs, make_config, tmp_path, snapshot):
    model = tiny_model()
    before = snapshot(model.backbone)
    result = RewardTrainer(make_config(lora_r=4, learning_rate=3e-2), model=model).train(pairs, tmp_path,
                                                                                         progress=False)
    assert result.model is model and model.peft_model is not None
    trainable = {n for n, p in model.backbone.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n or n.startswith("classifier.modules_to_save.") for n in trainable)
    after = model.backbone.state_dict()
    # every base weight is bit-identical (the frozen copy of the head too); LoRA B started at 0 and moved
    for name, value in before.items():
        stored = name.replace("query.", "query.base_layer.").replace("value.", "value.base_layer.")
        stored = stored.replace("classifier.", "classifier.original_module.")
        assert torch.equal(after[stored], value), name
    assert any(after[n].abs().sum() > 0 for n in after if ".lora_B." in n)
    assert accuracy(model, pairs) >= 0.9


def test_lora_on_a_decoder_keeps_the_shared_prefix_rows(tiny_decoder_model, pairs, make_config, tmp_path):
    model = tiny_decoder_model("llama")
    result = RewardTrainer(make_config(lora_r=4, lora_target_modules=("q_proj", "v_proj", "o_proj")),
                           model=model).train(pairs, tmp_path, progress=False)
    assert result.shared_prefix  # the head in peft's wrapper still packs a pair in one row
    assert {n.split(".")[-4] for n, p in model.backbone.named_parameters() if ".lora_A." in n} == {
        "q_proj", "v_proj", "o_proj"}
    assert math.isfinite(result.final_loss)


def test_lora_resume_equals_the_uninterrupted_run(tiny_model, pairs, make_config, tmp_path, snapshot,
                                                  assert_same_weights):
    cfg = make_config(lora_r=2, save_steps=3)
    full = RewardTrainer(cfg, model=tiny_model()).train(pairs, tmp_path / "full", progress=False)
    resumed = RewardTrainer(cfg, model=tiny_model(seed=1)).train(
        pairs, tmp_path / "resumed", progress=False, resume_from=tmp_path / "full" / "checkpoints" / "step-6")
    assert_same_weights(snapshot(resumed.model), snapshot(full.model))
    # a checkpoint of a LoRA run does not resume a full fine-tune (or another rank)
    for other in (make_config(save_steps=3), make_config(lora_r=4, save_steps=3)):
        with pytest.raises(Exception, match="other settings"):
            RewardTrainer(other, model=tiny_model()).train(
                pairs, tmp_path / "x", progress=False, resume_from=tmp_path / "full" / "checkpoints" / "step-6")


@pytest.mark.parametrize(("values", "message"), [
    ({"lora_r": -1}, r"lora_r \(--lora-r\) must be a whole number >= 0"),
    ({"lora_r": 2.5}, r"lora_r \(--lora-r\) must be a whole number"),
    ({"lora_r": 4, "lora_alpha": float("nan")}, r"lora_alpha \(--lora-alpha\) must be a finite number > 0"),
    ({"lora_r": 4, "lora_alpha": 0}, r"lora_alpha \(--lora-alpha\) must be a finite number > 0"),
    ({"lora_r": 4, "lora_dropout": 1.0}, r"lora_dropout \(--lora-dropout\) must be a finite number in \[0, 1\)"),
    ({"lora_r": 4, "lora_target_modules": ("query", "")}, r"--lora-target\) must be one or more module names"),
    ({"lora_alpha": 16}, r"lora_alpha \(--lora-alpha\) need a LoRA rank: add --lora-r"),
])
def test_bad_lora_settings_are_refused(values, message):
    with pytest.raises(ConfigError, match=message):
        RewardConfig(**values)


def test_lora_off_and_round_trip():
    assert not RewardConfig().lora and not RewardConfig(lora_r=0).lora and RewardConfig(lora_r=1).lora
    config = RewardConfig(lora_r=8, lora_alpha=32, lora_target_modules=["query", "key"])
    assert config.lora_target_modules == ("query", "key")
    assert RewardConfig.from_dict(config.to_dict()) == config


def test_unknown_target_module_is_refused(tiny_model, make_config):
    with pytest.raises(ConfigError, match="--lora-target q_proj: no such linear layer in this bert model; it has "
                                          ".*query.*value"):
        RewardTrainer(make_config(lora_r=4, lora_target_modules=("query", "q_proj")), model=tiny_model())


def test_disable_dropout_keeps_the_lora_dropout(tiny_model, pairs, make_config, tmp_path):
    model = tiny_model(dropout=0.1)
    RewardTrainer(make_config(lora_r=2, lora_dropout=0.25, disable_dropout=True, epochs=1), model=model).train(
        pairs, tmp_path, progress=False)
    rates = {name: m.p for name, m in model.backbone.named_modules() if isinstance(m, torch.nn.Dropout)}
    lora = {name: p for name, p in rates.items() if ".lora_dropout." in name}
    assert lora and set(lora.values()) == {0.25}  # used to be 0.0: --lora-dropout was silently off
    assert {p for name, p in rates.items() if name not in lora} == {0.0}
