"""The training benchmark itself: TRL's texts, run order, one scorer in fp32, the summary's arithmetic."""

import pytest
import torch
import transformers

pytest.importorskip("trl")
import train_vs_trl as bench  # noqa: E402 (needs trl)

from rewardkit.data.formats import hh_rlhf  # noqa: E402


def test_trl_sees_the_transcript_without_a_second_space():
    record = {"chosen": "\n\nHuman: Hi?\n\nAssistant: Hello there.",
              "rejected": "\n\nHuman: Hi?\n\nAssistant: Go away."}
    pair = hh_rlhf.to_pairs("x.jsonl:1", record, "x")[0]
    assert pair.chosen.startswith(" ")
    assert bench.trl_text(pair.prompt, pair.chosen) == record["chosen"]
    assert bench.trl_text(pair.prompt, pair.rejected) == record["rejected"]


def test_every_trainer_goes_first_once_in_three_repeats():
    orders = [bench.run_order(r) for r in range(3)]
    assert all(sorted(order) == sorted(bench.TRAINERS) for order in orders)
    for position in range(3):
        assert {order[position] for order in orders} == set(bench.TRAINERS)


def _run(trainer, repeat, pairs_per_second, accuracy=0.6):
    return {"trainer": trainer, "repeat": repeat, "pairs_in": 10, "pairs_kept": 8, "pairs_kept_fraction": 0.8,
            "mean_tokens_per_pair": 100.0, "padding_fraction": 0.1, "pairs_per_second": pairs_per_second,
            "pairs_per_second_end_to_end": pairs_per_second / 2, "tokens_per_second": 100 * pairs_per_second,
            "loop_seconds": 8 / pairs_per_second, "accuracy": accuracy if repeat == 0 else None,
            "accuracy_ci": [0.5, 0.7], "test_pairs": 20, "final_checksum": 1.0,
            "cpu": {"other_share": 0.01 * repeat}, "contaminated": repeat == 2}


def test_summary_reports_medians_min_max_and_per_repeat_ratios():
    speeds = {"rewardkit": [10.0, 12.0, 11.0], "trl-best": [5.0, 4.0, 6.0], "trl-shipped": [2.0, 2.0, 2.0]}
    runs = [_run(name, r, speeds[name][r], accuracy=0.7 if name == "rewardkit" else 0.6)
            for r in range(3) for name in bench.TRAINERS]
    summary = bench.summarize(runs)
    assert summary["rewardkit"]["pairs_per_second"] == {"median": 11.0, "min": 10.0, "max": 12.0}
    assert summary["trl-best"]["contaminated_runs"] == 1
    assert summary["trl-best"]["other_cpu_share_max"] == pytest.approx(0.02)
    best = summary["rewardkit_vs_trl-best"]
    assert best["pairs_per_second"]["of_medians"] == pytest.approx(11.0 / 5.0)
    assert best["pairs_per_second"]["min"] == pytest.approx(11.0 / 6.0)  # repeat 2: 11 vs 6
    assert best["pairs_per_second"]["max"] == pytest.approx(12.0 / 4.0)  # repeat 1: 12 vs 4
    assert best["accuracy_difference"] == pytest.approx(0.1)


def test_trl_model_is_scored_in_float32_after_bf16_training(tmp_path):
    """accelerate wraps a bf16 model's forward in autocast; scoring must not run inside it."""
    import datasets
    import trl

    from rewardkit.models import default_backbone

    tokenizer = transformers.AutoTokenizer.from_pretrained(default_backbone())
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                                     num_labels=1, pad_token_id=tokenizer.pad_token_id)
    model = transformers.BertForSequenceClassification(config)
    ids = [tokenizer(t)["input_ids"] for t in ("a good answer", "a bad answer", "fine", "not fine")]
    data = datasets.Dataset.from_dict({"chosen_ids": [ids[0], ids[2]], "rejected_ids": [ids[1], ids[3]]})
    args = trl.RewardConfig(output_dir=str(tmp_path), per_device_train_batch_size=2, max_steps=1, bf16=True,
                            use_cpu=True, report_to="none", save_strategy="no", disable_tqdm=True,
                            **bench.CHECKPOINTING_OFF)
    trainer = trl.RewardTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
    trainer.train()

    batch = tokenizer(["a good answer", "not fine at all"], padding=True, return_tensors="pt")
    with torch.no_grad():
        in_autocast = trainer.accelerator.unwrap_model(trainer.model).eval()(**batch).logits  # the old way
        scored = bench.scoring_model(trainer)(**batch).logits
        plain = transformers.BertForSequenceClassification(config).eval()
        plain.load_state_dict(trainer.model.state_dict())
        float32 = plain(**batch).logits
    assert torch.equal(scored, float32)
    assert not torch.equal(in_autocast, float32)  # so the test above can tell the two apart
