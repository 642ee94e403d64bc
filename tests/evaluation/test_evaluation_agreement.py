"""Behaviour agreement of two reward models: Spearman, preference agreement, drift, length bias."""

import numpy as np
import pytest

from rewardkit.evaluation.agreement import agreement, pearson, rank_average, spearman


def test_rank_average_and_spearman_match_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, size=50).astype(float)  # many ties
    y = x + rng.normal(size=50)
    assert np.array_equal(rank_average(x), stats.rankdata(x, method="average"))
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, rel=1e-12)
    assert pearson(x, y) == pytest.approx(stats.pearsonr(x, y).statistic, rel=1e-12)


def test_rank_average_by_hand():
    assert rank_average(np.array([10.0, 20.0, 10.0, 5.0])).tolist() == [2.5, 4.0, 2.5, 1.0]


def test_agreement_by_hand():
    a = [[2.0, 1.0], [0.0, 1.0], [3.0, 3.0], [5.0, 0.0]]
    b = [[4.0, 2.0], [1.0, 0.0], [3.0, 3.0], [1.0, 1.0]]  # same, flipped, both tied, tied in B only
    lengths = [[10, 5], [20, 5], [7, 7], [30, 1]]
    r = agreement(a, b, lengths)
    assert r.n_pairs == 4
    assert r.preference_agreement == 0.5  # pairs 0 and 2
    assert r.accuracy_a == (1 + 0 + 0.5 + 1) / 4 and r.accuracy_b == (1 + 1 + 0.5 + 0.5) / 4
    flat_a, flat_b = np.array(a).ravel(), np.array(b).ravel()
    assert r.mean_a == pytest.approx(15 / 8) and r.mean_b == pytest.approx(15 / 8)
    assert r.mean_drift == pytest.approx(0.0)
    assert r.std_a == pytest.approx(flat_a.std()) and r.std_drift == pytest.approx(flat_b.std() - flat_a.std())
    assert r.length_corr_a == pytest.approx(np.corrcoef(flat_a, np.array(lengths).ravel())[0, 1])
    assert r.spearman == pytest.approx(np.corrcoef(rank_average(flat_a), rank_average(flat_b))[0, 1])


def test_identical_versions_agree_fully_and_constant_rewards_are_undefined():
    a = np.array([[1.0, 0.0], [0.5, 2.0]])
    r = agreement(a, a, [[1, 2], [3, 4]])
    assert r.spearman == pytest.approx(1.0) and r.preference_agreement == 1.0 and r.std_drift == 0.0
    flat = agreement(a, np.full((2, 2), 0.1), [[1, 2], [3, 4]])
    assert flat.spearman is None and flat.length_corr_b is None and flat.accuracy_b == 0.5


def test_agreement_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        agreement([[1.0, 0.0]], [[1.0, 0.0], [2.0, 1.0]], [[1, 1]])
    with pytest.raises(ValueError):
        agreement(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros((0, 2)))


def test_a_nan_reward_is_refused_naming_the_version():
    b = np.array([[1.0, np.nan], [np.inf, 0.0]])
    with pytest.raises(ValueError, match="version B gives a NaN or infinite reward to 2 of 4"):
        agreement(np.ones((2, 2)), b, np.ones((2, 2)))
