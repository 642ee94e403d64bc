"""RewardTrainer on a tiny random BERT: learning, determinism, resume, curves, accumulation, bf16."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from rewardkit.data import PreferencePair
from rewardkit.training import RewardTrainer, TrainResult
from rewardkit.training.curves import COLUMNS
from rewardkit.training.trainer import STATE_FILE


@pytest.fixture
def optimizer_steps():
    """The gradients each real optimizer step (``Optimizer.step`` call) saw during a test."""
    steps: list[list[torch.Tensor]] = []

    def record(opt, args, kwargs):
        steps.append([p.grad.clone() for group in opt.param_groups for p in group["params"] if p.grad is not None])

    handle = register_optimizer_step_pre_hook(record)
    yield steps
    handle.remove()


def train(tiny_model, pairs, config, out, model_seed=0, **kwargs) -> TrainResult:
    return RewardTrainer(config, model=tiny_model(model_seed)).train(pairs, out, progress=False, **kwargs)


def test_training_learns_the_pattern(tiny_model, pairs, make_config, tmp_path):
    model = tiny_model()
    prompts = [p.prompt for p in pairs]
    before = model.score(prompts, [p.chosen for p in pairs]), model.score(prompts, [p.rejected for p in pairs])
    result = RewardTrainer(make_config(), model=model).train(pairs, tmp_path, progress=False)

    rows = result.curves.rows
    assert len(rows) == 4  # 16 steps, logged every 4
    assert rows[-1]["loss"] < rows[0]["loss"] - 0.15
    assert rows[-1]["accuracy"] > rows[0]["accuracy"]
    assert result.final_loss == rows[-1]["loss"] and result.final_accuracy == rows[-1]["accuracy"] >= 0.9
    assert result.model is model and not model.training

    after = model.score(prompts, [p.chosen for p in pairs]), model.score(prompts, [p.rejected for p in pairs])
    acc_before = sum(c > r for c, r in zip(*before, strict=True)) / len(pairs)
    acc_after = sum(c > r for c, r in zip(*after, strict=True)) / len(pairs)
    assert acc_after >= 0.9 > acc_before


def test_result_fields_and_metrics(tiny_model, pairs, make_config, tmp_path):
    result = train(tiny_model, pairs, make_config(epochs=1), tmp_path)
    assert result.steps == 4
    assert result.n_pairs == 32 and result.prompts_truncated == 0 and result.responses_truncated == 0
    assert result.seconds > 0 and result.pairs_per_second == pytest.approx(32 / result.seconds)
    m = result.metrics()
    assert m["train/pairs"] == 32 and m["train/steps"] == 4
    assert set(m) == {"train/pairs", "train/prompts_truncated", "train/responses_truncated", "train/steps",
                      "train/seconds", "train/pairs_per_second", "train/loss", "train/accuracy",
                      "train/shared_prefix"}
    assert m["train/shared_prefix"] == 0  # a BERT takes two rows per pair


def test_same_seed_gives_bit_identical_weights(tiny_model, pairs, make_config, tmp_path, snapshot,
                                               assert_same_weights):
    a = train(tiny_model, pairs, make_config(epochs=2), tmp_path / "a")
    b = train(tiny_model, pairs, make_config(epochs=2), tmp_path / "b")
    assert_same_weights(snapshot(a.model), snapshot(b.model))
    assert a.curves.rows == b.curves.rows
    # ... and the check can fail: another seed (batch order, dropout) gives other weights
    c = train(tiny_model, pairs, make_config(epochs=2, seed=8), tmp_path / "c")
    assert any(not torch.equal(v, snapshot(c.model)[k]) for k, v in snapshot(a.model).items())


@pytest.mark.parametrize("accum", [1, 2])
def test_resume_from_a_checkpoint_equals_the_uninterrupted_run(
    tiny_model, pairs, make_config, tmp_path, snapshot, assert_same_weights, accum
):
    # 4 epochs of 4 batches; checkpoints every 3 optimizer steps, logging every 4 (so some
    # checkpoints fall inside a logging window).
    cfg = make_config(batch_size=8 if accum == 1 else 5, gradient_accumulation_steps=accum, save_steps=3,
                      warmup_ratio=0.2)
    full = train(tiny_model, pairs, cfg, tmp_path / "full")
    expected = snapshot(full.model)
    checkpoints = sorted((tmp_path / "full" / "checkpoints").iterdir(), key=lambda p: int(p.name.split("-")[1]))
    n_steps = full.steps
    assert [p.name for p in checkpoints] == [f"step-{s}" for s in range(3, n_steps + 1, 3)]
    state = json.loads((checkpoints[0] / STATE_FILE).read_text())
    assert state["batches"] == 3 * accum and state["config"]["seed"] == 7

    # mid-epoch (step 6) and at an epoch boundary (accum 1: step 12 = 3 epochs of 4 batches)
    for checkpoint in (checkpoints[1], checkpoints[3]):
        resumed = train(tiny_model, pairs, cfg, tmp_path / f"resumed-{checkpoint.name}", model_seed=1,
                        resume_from=checkpoint)
        assert_same_weights(snapshot(resumed.model), expected)
        assert resumed.curves.rows == full.curves.rows
        assert resumed.steps == n_steps


def test_curves_csv_and_png_are_written(tiny_model, pairs, make_config, tmp_path):
    result = train(tiny_model, pairs, make_config(epochs=3, logging_steps=5), tmp_path)
    with (tmp_path / "curves.csv").open(newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == COLUMNS
        rows = list(reader)
    # 12 steps logged every 5, plus the last step
    assert [int(r["step"]) for r in rows] == [5, 10, 12]
    assert [float(r["epoch"]) for r in rows] == [1.25, 2.5, 3.0]
    assert [float(r["loss"]) for r in rows] == pytest.approx([r["loss"] for r in result.curves.rows])
    assert all(0.0 <= float(r["accuracy"]) <= 1.0 for r in rows)
    assert float(rows[-1]["learning_rate"]) == 0.0  # linear decay ends at zero on the last step
    png = (tmp_path / "curves.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000


@pytest.mark.parametrize(
    "batch_size, accum, epochs, batches",
    [
        (8, 2, 1, 4),  # 4 batches per epoch, even
        (5, 3, 1, 7),  # 7 batches, last group partial
        (5, 3, 2, 14),  # accumulation groups cross the epoch boundary
        (8, 3, 0.5, 2),  # stop mid-epoch inside a group
    ],
)
def test_gradient_accumulation_step_count(
    tiny_model, pairs, make_config, tmp_path, optimizer_steps, batch_size, accum, epochs, batches
):
    cfg = make_config(batch_size=batch_size, gradient_accumulation_steps=accum, epochs=epochs, logging_steps=1,
                      warmup_ratio=0.0)
    result = train(tiny_model, pairs, cfg, tmp_path)
    expected = math.ceil(batches / accum)
    assert result.steps == expected
    assert len(optimizer_steps) == expected  # optimizer really stepped that often
    assert [r["step"] for r in result.curves.rows] == list(range(1, expected + 1))
    assert result.curves.rows[-1]["learning_rate"] == 0.0  # schedule and steps agree
    assert result.curves.rows[-1]["epoch"] == pytest.approx(batches / -(-32 // batch_size), abs=1e-4)


def test_gradient_accumulation_matches_one_big_batch(tiny_model, pairs, make_config, tmp_path, optimizer_steps):
    """Two accumulated batches of 8 give the optimizer the gradient of one batch of 16."""

    def run(batch_size, accum, out):
        cfg = make_config(batch_size=batch_size, gradient_accumulation_steps=accum, epochs=1, max_grad_norm=0.0)
        result = RewardTrainer(cfg, model=tiny_model(dropout=0.0)).train(pairs[:16], out, progress=False)
        assert len(optimizer_steps) == result.steps == 16 // batch_size // accum
        first = optimizer_steps[0]
        optimizer_steps.clear()
        return first

    big = run(16, 1, tmp_path / "big")
    accumulated = run(8, 2, tmp_path / "accumulated")
    assert len(big) == len(accumulated) > 0
    for g_big, g_acc in zip(big, accumulated, strict=True):
        torch.testing.assert_close(g_acc, g_big, atol=1e-7, rtol=1e-4)
    # ... and the check can fail: the first batch of 8 alone has another gradient
    half = run(8, 1, tmp_path / "half")
    assert any(not torch.allclose(a, b, atol=1e-7, rtol=1e-4) for a, b in zip(half, big, strict=True))


def test_bf16_runs_on_cpu_with_autocast(tiny_model, pairs, make_config, tmp_path, snapshot):
    model = tiny_model()
    start = snapshot(model)
    seen = []
    model.backbone.classifier.register_forward_hook(lambda mod, inp, out: seen.append(out.dtype))
    result = RewardTrainer(make_config(bf16=True, epochs=2), model=model).train(pairs, tmp_path, progress=False)
    assert torch.bfloat16 in seen  # the forward really ran under bf16 autocast
    assert all(math.isfinite(r["loss"]) for r in result.curves.rows)
    after = snapshot(result.model)
    assert all(v.dtype == torch.float32 for v in after.values() if v.is_floating_point())  # weights stay fp32
    assert any(not torch.equal(start[k], after[k]) for k in start)
    seen.clear()
    result.model.score(["q"], [" an answer"])
    assert seen == [torch.float32]  # the returned model scores in float32, without the autocast wrapper


def test_no_pair_is_dropped_with_a_tiny_max_length(tiny_model, pairs, make_config, tmp_path):
    result = train(tiny_model, pairs, make_config(max_length=6, epochs=1), tmp_path)
    assert result.n_pairs == len(pairs) == 32
    assert result.prompts_truncated > 0
    assert result.responses_truncated > 0
    assert result.metrics()["train/pairs"] == 32
    assert result.metrics()["train/responses_truncated"] == result.responses_truncated


def test_margin_is_used_only_when_enabled(tiny_model, pairs, make_config, tmp_path, snapshot):
    from dataclasses import replace

    with_margin = [replace(p, margin=5.0) for p in pairs]
    plain = train(tiny_model, pairs, make_config(epochs=1), tmp_path / "plain")
    ignored = train(tiny_model, with_margin, make_config(epochs=1, use_margin=False), tmp_path / "ignored")
    used = train(tiny_model, with_margin, make_config(epochs=1), tmp_path / "used")
    assert ignored.curves.rows == plain.curves.rows
    assert used.curves.rows[0]["loss"] > plain.curves.rows[0]["loss"] + 3  # -log σ(Δ - 5) ≈ 5


def test_empty_pairs_raise(tiny_model, make_config, tmp_path):
    with pytest.raises(ValueError, match="no training pairs"):
        RewardTrainer(make_config(), model=tiny_model()).train([], tmp_path, progress=False)


def test_trainers_with_and_without_bf16_in_one_process(tiny_model, pairs, make_config, tmp_path):
    """accelerate's process-wide state must not pin the first run's precision."""
    for i, bf16 in enumerate([False, True, False]):
        trainer = RewardTrainer(make_config(bf16=bf16, epochs=0.25), model=tiny_model())
        assert trainer.accelerator.mixed_precision == ("bf16" if bf16 else "no")
        result = trainer.train(pairs, tmp_path / str(i), progress=False)
        assert result.steps == 1 and math.isfinite(result.final_loss)


def test_disable_dropout_turns_every_dropout_layer_off(tiny_model, make_config, tmp_path):
    pairs = [PreferencePair("q", "good excellent answer", "bad answer", "t")] * 8
    result = RewardTrainer(make_config(epochs=1, disable_dropout=True), model=tiny_model()).train(
        pairs, tmp_path, progress=False)
    dropouts = [m for m in result.model.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts and all(m.p == 0.0 for m in dropouts)


def test_disable_dropout_also_zeroes_the_attention_dropout_rate_of_llama(tiny_decoder_model, make_config, tmp_path):
    model = tiny_decoder_model("llama")  # attention_dropout=0.1, a float on each attention module
    pairs = [PreferencePair("q", "good excellent answer", "bad answer", "t")] * 8
    result = RewardTrainer(make_config(epochs=1, disable_dropout=True), model=model).train(
        pairs, tmp_path, progress=False)
    rates = [m.attention_dropout for m in result.model.modules() if hasattr(m, "attention_dropout")]
    assert len(rates) == 2 and rates == [0.0, 0.0]


def test_resume_refuses_a_checkpoint_of_other_settings_or_no_checkpoint(tiny_model, pairs, make_config, tmp_path):
    from rewardkit.errors import RewardkitError

    train(tiny_model, pairs, make_config(epochs=1, save_steps=2), tmp_path / "first")
    checkpoint = tmp_path / "first" / "checkpoints" / "step-2"
    with pytest.raises(RewardkitError, match="other settings \\(batch_size\\)"):
        other = make_config(epochs=1, save_steps=2, batch_size=4)
        train(tiny_model, pairs, other, tmp_path / "x", resume_from=checkpoint)
    with pytest.raises(RewardkitError, match="not a rewardkit checkpoint"):
        train(tiny_model, pairs, make_config(epochs=1), tmp_path / "y", resume_from=tmp_path / "nowhere")


def test_max_length_beyond_the_backbone_positions_is_refused(tiny_model, make_config):
    from rewardkit.errors import ModelError

    with pytest.raises(ModelError, match="--max-length 64 or less"):
        RewardTrainer(make_config(max_length=1024), model=tiny_model())
