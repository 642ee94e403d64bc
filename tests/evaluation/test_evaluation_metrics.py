"""Metrics over reward differences: pairwise credit, bootstrap CI, calibration, longer-wins baseline."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rewardkit.evaluation import bootstrap_ci, longer_wins, pairwise_correct, plot_reliability, reliability
from rewardkit.evaluation.metrics import Reliability


def test_pairwise_correct_counts_ties_as_half():
    got = pairwise_correct([2.0, -0.5, 0.0, 1e-9, -0.0, -3])
    assert got.tolist() == [1.0, 0.0, 0.5, 1.0, 0.5, 0.0]
    assert got.dtype == np.float64
    assert pairwise_correct([]).shape == (0,)


def test_longer_wins_by_length_with_ties_half():
    assert longer_wins([10, 5, 7, 0], [5, 10, 7, 1]).tolist() == [1.0, 0.0, 0.5, 0.0]


# ---------------------------------------------------------------- bootstrap
def test_bootstrap_ci_contains_the_mean_and_is_deterministic():
    values = pairwise_correct(np.random.default_rng(0).normal(0.3, 1.0, size=200))
    low, high = bootstrap_ci(values, seed=3)
    assert low < values.mean() < high
    assert 0.0 <= low and high <= 1.0
    assert bootstrap_ci(values, seed=3) == (low, high)
    assert bootstrap_ci(values, seed=4) != (low, high)


def test_bootstrap_ci_narrows_with_more_data():
    rng = np.random.default_rng(1)
    widths = []
    for n in (30, 300, 3000):
        values = (rng.random(n) < 0.7).astype(float)
        low, high = bootstrap_ci(values)
        assert low <= values.mean() <= high
        widths.append(high - low)
    assert widths[0] > 2 * widths[1] > 4 * widths[2]
    # about the normal approximation 2 * 1.96 * sqrt(p (1 - p) / n) for n = 3000
    assert widths[2] == pytest.approx(2 * 1.96 * math.sqrt(0.21 / 3000), rel=0.2)


def test_bootstrap_ci_narrows_with_lower_level_and_handles_edge_cases():
    values = (np.random.default_rng(2).random(100) < 0.6).astype(float)
    low95, high95 = bootstrap_ci(values, level=0.95)
    low50, high50 = bootstrap_ci(values, level=0.5)
    assert low95 <= low50 < high50 <= high95
    assert bootstrap_ci([1.0, 1.0, 1.0]) == (1.0, 1.0)
    low, high = bootstrap_ci([])
    assert math.isnan(low) and math.isnan(high)


def test_group_bootstrap_with_singleton_groups_is_the_iid_bootstrap():
    values = (np.random.default_rng(5).random(300) < 0.65).astype(float)
    for seed in (0, 7):
        iid = bootstrap_ci(values, seed=seed)
        assert bootstrap_ci(values, groups=list(range(300)), seed=seed) == iid
        # distinct keys of any hashable kind, in any order: same draws up to relabelling
        keys = [f"q{i}" for i in np.random.default_rng(seed).permutation(300)]
        low, high = bootstrap_ci(values, groups=keys, seed=seed)
        assert high - low == pytest.approx(iid[1] - iid[0], abs=0.03)


def test_group_bootstrap_is_wider_for_correlated_groups():
    # 50 prompts x 6 identical pairs: effectively 50 observations, not 300
    per_group = (np.random.default_rng(6).random(50) < 0.6).astype(float)
    values = np.repeat(per_group, 6)
    groups = np.repeat(np.arange(50), 6).tolist()
    low_iid, high_iid = bootstrap_ci(values)
    low, high = bootstrap_ci(values, groups=groups)
    assert low <= values.mean() <= high
    assert high - low > 2.0 * (high_iid - low_iid)  # about sqrt(6) = 2.45 times
    # and it matches the i.i.d. interval of the 50 group means
    assert (low, high) == pytest.approx(bootstrap_ci(per_group), abs=0.03)


def test_group_bootstrap_contains_the_mean_is_deterministic_and_handles_unequal_sizes():
    rng = np.random.default_rng(8)
    sizes = rng.integers(1, 12, size=80)
    groups = np.repeat([f"prompt {i}" for i in range(80)], sizes).tolist()
    values = (rng.random(len(groups)) < 0.7).astype(float)
    low, high = bootstrap_ci(values, groups=groups, seed=3)
    assert 0.0 <= low < values.mean() < high <= 1.0
    assert bootstrap_ci(values, groups=groups, seed=3) == (low, high)
    assert bootstrap_ci(values, groups=groups, seed=4) != (low, high)
    # interleaved order of the same clusters gives the same interval
    order = rng.permutation(len(groups))
    shuffled = bootstrap_ci(values[order], groups=[groups[i] for i in order], seed=3)
    assert shuffled == pytest.approx((low, high), abs=0.03)
    assert bootstrap_ci([1.0] * 6, groups=[1, 1, 2, 2, 3, 3]) == (1.0, 1.0)
    empty = bootstrap_ci([], groups=[])
    assert math.isnan(empty[0]) and math.isnan(empty[1])
    with pytest.raises(ValueError, match="groups"):
        bootstrap_ci([1.0, 0.0], groups=["a"])


def test_group_bootstrap_is_fast():
    import time

    rng = np.random.default_rng(9)
    values = (rng.random(3000) < 0.7).astype(float)
    groups = np.repeat(np.arange(500), 6).tolist()
    start = time.perf_counter()
    bootstrap_ci(values, groups=groups)
    assert time.perf_counter() - start < 1.0  # milliseconds in practice; generous for shared CI


# ---------------------------------------------------------------- reliability
def test_reliability_on_hand_made_diffs():
    ln3 = math.log(3.0)  # σ(ln 3) = 0.75
    # 3 of 4 pairs right at confidence 0.75: perfectly calibrated, one bin
    rel = reliability([ln3, ln3, ln3, -ln3])
    assert rel.count == [4]
    assert rel.confidence == pytest.approx([0.75])
    assert rel.accuracy == pytest.approx([0.75])
    assert rel.ece == pytest.approx(0.0, abs=1e-12)

    # half right at 0.75 confidence: |0.5 - 0.75| = 0.25
    assert reliability([ln3, -ln3]).ece == pytest.approx(0.25)

    # two bins: 2 pairs at conf 0.75 (1 right), 2 at conf σ(ln 9) = 0.9 (both right)
    rel = reliability([ln3, -ln3, math.log(9), math.log(9)])
    assert rel.count == [2, 2]
    assert rel.confidence == pytest.approx([0.75, 0.9])
    assert rel.accuracy == pytest.approx([0.5, 1.0])
    assert rel.ece == pytest.approx(0.5 * 0.25 + 0.5 * 0.1)


def test_reliability_equal_rewards_are_half_right_at_half_confidence():
    rel = reliability([0.0, 0.0, 0.0])
    assert rel.count == [3] and rel.confidence == [0.5] and rel.accuracy == [0.5]
    assert rel.ece == 0.0


def test_reliability_extreme_confidence_lands_in_the_last_bin():
    rel = reliability([50.0, -50.0, 0.01], n_bins=10)
    assert rel.count == [1, 2]
    assert rel.confidence[-1] == pytest.approx(1.0)
    assert rel.accuracy == [1.0, 0.5]


def _sampled(n: int, scale: float, truth: float, seed: int = 0) -> np.ndarray:
    """Diffs with |diff| ~ scale * U(0, 3); the chosen one is the higher-scored with prob σ(truth * |diff|)."""
    rng = np.random.default_rng(seed)
    gap = rng.uniform(0, 3, size=n) * scale
    right = rng.random(n) < 1.0 / (1.0 + np.exp(-gap / scale * truth))
    return np.where(right, gap, -gap)


def test_ece_small_when_calibrated_and_large_when_overconfident():
    calibrated = reliability(_sampled(20000, scale=1.0, truth=1.0))
    assert calibrated.ece < 0.02
    for conf, acc in zip(calibrated.confidence, calibrated.accuracy, strict=True):
        assert acc == pytest.approx(conf, abs=0.05)

    overconfident = reliability(_sampled(20000, scale=10.0, truth=1.0))  # 10x too large diffs
    assert overconfident.ece > 0.15
    assert overconfident.accuracy[-1] < overconfident.confidence[-1] - 0.15  # sure, but often wrong

    # hand-made overconfidence: always sure (σ(20) ≈ 1), right 70% of the time
    d = np.array([20.0] * 70 + [-20.0] * 30)
    assert reliability(d).ece == pytest.approx(0.3, abs=1e-6)


def test_reliability_counts_add_up_and_bins_are_in_range():
    d = np.random.default_rng(5).normal(0, 3, size=1000)
    rel = reliability(d, n_bins=7)
    assert sum(rel.count) == 1000
    assert len(rel.count) <= 7
    assert all(0.5 <= c <= 1.0 for c in rel.confidence)
    assert rel.confidence == sorted(rel.confidence)
    assert 0.0 <= rel.ece <= 0.5


def test_reliability_of_nothing():
    rel = reliability([])
    assert rel.count == [] and math.isnan(rel.ece)


# ---------------------------------------------------------------- plot
def test_plot_reliability_writes_a_png(tmp_path):
    rel = reliability(_sampled(500, 1.0, 1.0))
    out = plot_reliability(rel, tmp_path / "reliability.png", title="test")
    assert out == tmp_path / "reliability.png"
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000


def test_plot_reliability_accepts_a_string_path_and_an_empty_diagram(tmp_path):
    out = plot_reliability(Reliability([], [], [], float("nan")), str(tmp_path / "empty.png"))
    assert out.read_bytes().startswith(b"\x89PNG")
