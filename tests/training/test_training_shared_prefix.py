"""RewardTrainer on tiny decoders: the shared-prefix path is used by default and trains as two rows do."""

from __future__ import annotations

import math

import pytest
import torch

from rewardkit.data import PreferencePair
from rewardkit.training import RewardTrainer, TrainResult


def train(model, pairs, config, out, **kwargs) -> TrainResult:  # noqa: ANN001
    return RewardTrainer(config, model=model).train(pairs, out, progress=False, **kwargs)


def token_counter(model) -> list[int]:  # noqa: ANN001
    """Tokens that go through the backbone's embedding, per forward (padding included)."""
    seen: list[int] = []
    model.backbone.get_input_embeddings().register_forward_hook(lambda mod, inp, out: seen.append(inp[0].numel()))
    return seen


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_decoders_use_shared_prefix_by_default_and_it_can_be_turned_off(
    kind, tiny_decoder_model, tiny_model, pairs, make_config, tmp_path
):
    cfg = make_config(epochs=1, group_by_length=False)
    model = tiny_decoder_model(kind)
    packed_tokens = token_counter(model)
    on = train(model, pairs, cfg, tmp_path / "on")
    model = tiny_decoder_model(kind)
    two_row_tokens = token_counter(model)
    off = train(model, pairs, make_config(epochs=1, group_by_length=False, shared_prefix=False), tmp_path / "off")
    assert on.shared_prefix and on.metrics()["train/shared_prefix"] == 1
    assert not off.shared_prefix and off.metrics()["train/shared_prefix"] == 0
    assert sum(packed_tokens) < 0.8 * sum(two_row_tokens)  # the prompt really is computed once
    assert not train(tiny_model(), pairs, cfg, tmp_path / "bert").shared_prefix  # encoders: two rows


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
@pytest.mark.parametrize("responses", ["rejected is a prefix", "differ from the start"])
def test_loss_curves_and_weights_match_the_two_row_path(
    kind, responses, tiny_decoder_model, pairs, make_config, tmp_path
):
    if responses == "differ from the start":
        pairs = [PreferencePair(p.prompt, "excellent " + p.rejected, p.rejected, source=p.source) for p in pairs]
    results = {}
    for shared in (True, False):
        cfg = make_config(epochs=2, disable_dropout=True, group_by_length=False, logging_steps=1,
                          learning_rate=1e-3, shared_prefix=shared)
        results[shared] = train(tiny_decoder_model(kind), pairs, cfg, tmp_path / str(shared))
    on, off = results[True], results[False]
    assert on.shared_prefix and not off.shared_prefix
    assert len(on.curves.rows) == len(off.curves.rows) == 8
    for a, b in zip(on.curves.rows, off.curves.rows, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4, abs=1e-6)
        # a near-tie (|r_chosen - r_rejected| ~ 1e-7 at random init) may flip one pair of the 8
        assert a["accuracy"] == pytest.approx(b["accuracy"], abs=1 / 8)
    assert on.curves.rows[-1]["loss"] < on.curves.rows[0]["loss"]  # it learns
    # The trained models agree on every margin. (Not weight by weight: a bias that shifts both
    # rewards alike, such as GPT-2's final LayerNorm bias, has a zero Bradley-Terry gradient up
    # to float noise, and AdamW turns that noise into steps of about lr either way.)
    prompts = [p.prompt for p in pairs]
    margins = {}
    for name, result in (("on", on), ("off", off)):
        chosen = result.model.score(prompts, [p.chosen for p in pairs])
        rejected = result.model.score(prompts, [p.rejected for p in pairs])
        margins[name] = torch.tensor(chosen) - torch.tensor(rejected)
    torch.testing.assert_close(margins["on"], margins["off"], rtol=1e-3, atol=1e-4)


def test_resume_with_shared_prefix_equals_the_uninterrupted_run(
    tiny_decoder_model, pairs, make_config, tmp_path, snapshot, assert_same_weights
):
    cfg = make_config(save_steps=3, warmup_ratio=0.2)  # GPT-2 with dropout on: RNG state matters
    full = train(tiny_decoder_model("gpt2"), pairs, cfg, tmp_path / "full")
    assert full.shared_prefix
    checkpoint = tmp_path / "full" / "checkpoints" / "step-6"  # mid-epoch
    resumed = train(tiny_decoder_model("gpt2", seed=1), pairs, cfg, tmp_path / "resumed", resume_from=checkpoint)
    assert_same_weights(snapshot(resumed.model), snapshot(full.model))
    assert resumed.curves.rows == full.curves.rows


def test_bf16_shared_prefix_runs_under_autocast_and_returns_a_float32_model(
    tiny_decoder_model, pairs, make_config, tmp_path, snapshot
):
    model = tiny_decoder_model("llama")
    start = snapshot(model)
    seen = []
    model.backbone.score.register_forward_hook(lambda mod, inp, out: seen.append(out.dtype))
    result = train(model, pairs, make_config(bf16=True, epochs=2), tmp_path)
    assert result.shared_prefix and torch.bfloat16 in seen
    assert all(math.isfinite(r["loss"]) for r in result.curves.rows)
    after = snapshot(result.model)
    assert all(v.dtype == torch.float32 for v in after.values() if v.is_floating_point())
    assert any(not torch.equal(start[k], after[k]) for k in start)
    seen.clear()
    result.model.score(["q"], [" an answer"])
    assert seen == [torch.float32]
