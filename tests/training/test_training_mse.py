"""MSE regression on rated text through the shared trainer loop; its metrics on hand-made cases."""

from __future__ import annotations

import math
import random
from dataclasses import replace

import numpy as np
import pytest
import torch

from rewardkit.data import RatedDataset, RatedExample
from rewardkit.errors import ConfigError, DataError
from rewardkit.evaluation import evaluate_ratings, rating_report
from rewardkit.training import RewardTrainer
from rewardkit.training.objectives import mse_loss, ranking_agreement

WORDS = "apple banana cherry river mountain cloud stone paper light water".split()


@pytest.fixture
def rated() -> list[RatedExample]:
    """48 examples rated by how often "excellent" occurs (0 to 3), plus 10: ratings 10 to 13."""
    rng = random.Random(0)
    out = []
    for i in range(48):
        n = i % 4
        words = [rng.choice(WORDS) for _ in range(rng.randint(2, 8))] + ["excellent"] * n
        rng.shuffle(words)
        out.append(RatedExample(f"question {i}", " ".join(words), 10.0 + n, "synthetic"))
    return out


def test_mse_loss_and_ranking_agreement_on_a_hand_made_batch():
    rewards = torch.tensor([1.0, 2.0, 4.0])
    ratings = torch.tensor([1.0, 3.0, 3.0])
    assert mse_loss(rewards, ratings).item() == pytest.approx((0 + 1 + 1) / 3)
    # pairs with different ratings: (0,1) agree, (0,2) agree; (1,2) has equal ratings and is left out
    assert ranking_agreement(rewards, ratings) == 1.0
    assert ranking_agreement(torch.tensor([3.0, 2.0, 1.0]), ratings) == 0.0
    assert ranking_agreement(torch.tensor([1.0, 1.0, 0.0]), ratings) == pytest.approx((0.5 + 0.0) / 2)
    assert ranking_agreement(rewards, torch.tensor([2.0, 2.0, 2.0])) == 0.5  # no pair to compare


def test_rating_report_on_a_hand_made_case():
    report = rating_report([1.0, 2.0, 3.0, 4.0], [2.0, 2.0, 3.0, 5.0])
    assert report.n_examples == 4
    assert report.mse == pytest.approx(0.5)
    assert report.pearson == pytest.approx(np.corrcoef([1, 2, 3, 4], [2, 2, 3, 5])[0, 1])
    # Spearman: ranks of the predictions are 1.5, 1.5, 3, 4 against 1, 2, 3, 4
    expected = np.corrcoef([1.5, 1.5, 3, 4], [1, 2, 3, 4])[0, 1]
    assert report.spearman == pytest.approx(expected)
    assert report.mean_rating == 2.5 and report.mean_prediction == 3.0
    constant = rating_report([1.0, 2.0], [0.3, 0.3])
    assert constant.pearson is None and constant.spearman is None
    assert "x/pearson" not in constant.metrics("x")
    assert constant.metrics("x")["x/mse"] == pytest.approx((0.7**2 + 1.7**2) / 2)


def test_mse_training_lowers_the_loss_and_learns_the_ratings(tiny_model, rated, make_config, tmp_path):
    rated = [replace(e, rating=e.rating - 11.5) for e in rated]  # centred: the head's bias need not travel far
    config = make_config(objective="mse", epochs=6, learning_rate=3e-2, logging_steps=1, disable_dropout=True)
    model = tiny_model()
    before = evaluate_ratings(model, RatedDataset(rated), max_length=32, progress=False)
    result = RewardTrainer(config, model).train(rated, tmp_path, progress=False)
    losses = [row["loss"] for row in result.curves.rows]
    assert np.mean(losses[-6:]) < 0.5 * np.mean(losses[:6])  # windows of 6 batches: single batches are noisy
    assert result.objective == "mse" and result.rating_scale is None and result.n_pairs == 48
    assert result.metrics()["train/examples"] == 48 and "train/pairs" not in result.metrics()
    after = evaluate_ratings(result.model, RatedDataset(rated), max_length=32, progress=False)
    assert after.mse < 0.5 * before.mse
    assert after.spearman > 0.5
    assert (tmp_path / "curves.csv").exists() and result.curves.loss_label == "MSE loss"


def test_standardized_ratings_train_on_z_scores_and_report_in_rating_units(tiny_model, rated, make_config, tmp_path):
    config = make_config(objective="mse", standardize_ratings=True, epochs=1)
    result = RewardTrainer(config, tiny_model()).train(rated, tmp_path, progress=False)
    mean, std = result.rating_scale
    assert mean == pytest.approx(11.5) and std == pytest.approx(math.sqrt(1.25))
    rewards = result.model.score([e.prompt for e in rated], [e.response for e in rated], max_length=32)
    report = evaluate_ratings(result.model, RatedDataset(rated), rating_scale=(mean, std), max_length=32,
                              progress=False)
    expected = np.mean([(r * std + mean - e.rating) ** 2 for r, e in zip(rewards, rated, strict=True)])
    assert report.mse == pytest.approx(expected, rel=1e-5)
    same = [RatedExample("p", "r", 3.0, "s"), RatedExample("q", "s", 3.0, "s")]
    with pytest.raises(DataError, match="every training rating is 3.0"):
        RewardTrainer(config, tiny_model()).train(same, tmp_path / "same", progress=False)


def test_objective_and_records_must_agree(tiny_model, rated, pairs, make_config, tmp_path):
    with pytest.raises(ValueError, match="objective mse trains on RatedExample"):
        RewardTrainer(make_config(objective="mse"), tiny_model()).train(pairs, tmp_path, progress=False)
    with pytest.raises(ValueError, match="objective bradley-terry trains on PreferencePair"):
        RewardTrainer(make_config(), tiny_model()).train(rated, tmp_path, progress=False)


def test_freeze_keeps_matching_tensors_bit_identical(tiny_model, pairs, make_config, tmp_path, snapshot):
    model = tiny_model()
    before = snapshot(model.backbone)
    result = RewardTrainer(make_config(freeze=("bert.embeddings.*", "*.layer.0.attention.*")), model).train(
        pairs, tmp_path, progress=False)
    after = snapshot(result.model.backbone)
    frozen = set(result.frozen)
    assert frozen and all(n.startswith("bert.embeddings.") or ".layer.0.attention." in n for n in frozen)
    assert result.metrics()["train/frozen_parameters"] == len(frozen)
    params = {name for name, _ in model.backbone.named_parameters()}
    changed = {name for name in params if not torch.equal(before[name], after[name])}
    # the head's bias cancels in r_chosen - r_rejected: no Bradley-Terry gradient reaches it
    assert changed == params - frozen - {"classifier.bias"}


def test_a_freeze_pattern_matching_nothing_names_real_parameters(tiny_model, make_config):
    with pytest.raises(ConfigError, match=r"--freeze 'encoder\.\*' matches no parameter .* like bert\.embeddings"):
        RewardTrainer(make_config(freeze=("bert.embeddings.*", "encoder.*")), tiny_model())
    with pytest.raises(ConfigError, match="matches all .* parameters; nothing would train"):
        RewardTrainer(make_config(freeze=("*",)), tiny_model())
