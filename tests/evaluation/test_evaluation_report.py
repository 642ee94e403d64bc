"""report_from_rewards, EvalReport and evaluate_model on hand-made pairs."""

from __future__ import annotations

import json
import math

import pytest

from rewardkit.data import PreferenceDataset, PreferencePair
from rewardkit.evaluation import EvalReport, GroupStats, bootstrap_ci, evaluate_model, report_from_rewards


def pair(prompt, chosen, rejected, source="a", subset=None, tie=False, group=None):
    return PreferencePair(prompt=prompt, chosen=chosen, rejected=rejected, source=source, subset=subset, tie=tie,
                          group=group)


# rewards by response text; lengths chosen so the longer-wins baseline is known
REWARD = {
    "good answer": 2.0, "bad": 1.0,  # right, chosen longer
    "ok": 0.5, "worse reply": 1.5,  # wrong, chosen shorter
    "same": 1.0, "also same": 1.0,  # equal rewards -> 0.5, chosen shorter
    "yes!": 3.0, "no..": -1.0,  # right, equal length
    "tie one": 0.2, "tie two": 0.5, "tie three": -1.0, "tie four": -1.0,
}
PAIRS = [
    pair("p1", "good answer", "bad", source="a", subset="x"),
    pair("p2", "ok", "worse reply", source="a", subset="x"),
    pair("p3", "same", "also same", source="b", subset=None),
    pair("p4", "yes!", "no..", source="b", subset="y"),
]
TIES = [
    pair("t1", "tie one", "tie two", source="a", tie=True),
    pair("t2", "tie three", "tie four", source="b", tie=True),
]


def reward(p, response):
    return REWARD[response]


@pytest.fixture
def report() -> EvalReport:
    return report_from_rewards(PAIRS, TIES, reward, seed=0)


def test_report_numbers(report):
    assert report.n_pairs == 4 and report.n_ties == 2
    assert report.accuracy == pytest.approx((1 + 0 + 0.5 + 1) / 4)
    assert report.mean_margin == pytest.approx((1.0 - 1.0 + 0.0 + 4.0) / 4)
    assert report.longer_wins_accuracy == pytest.approx((1 + 0 + 0 + 0.5) / 4)
    assert report.tie_mean_abs_diff == pytest.approx((0.3 + 0.0) / 2)
    low, high = report.accuracy_ci
    assert 0.0 <= low <= report.accuracy <= high <= 1.0
    assert report.reliability is not None and sum(report.reliability.count) == 4
    assert report.ece == report.reliability.ece


def test_report_by_source_and_subset(report):
    assert list(report.by_source) == ["a", "b"]
    assert report.by_source["a"] == GroupStats(n_pairs=2, accuracy=0.5, longer_wins_accuracy=0.5, mean_margin=0.0)
    assert report.by_source["b"] == GroupStats(n_pairs=2, accuracy=0.75, longer_wins_accuracy=0.25, mean_margin=2.0)
    # the pair without a subset is left out of the subset table
    assert list(report.by_subset) == ["x", "y"]
    assert report.by_subset["x"].n_pairs == 2 and report.by_subset["x"].accuracy == 0.5
    assert report.by_subset["y"].n_pairs == 1 and report.by_subset["y"].accuracy == 1.0
    assert sum(s.n_pairs for s in report.by_subset.values()) == 3


def test_report_without_ties_has_no_tie_gap():
    report = report_from_rewards(PAIRS, [], reward)
    assert report.n_ties == 0 and report.tie_mean_abs_diff is None


def test_ties_do_not_change_accuracy(report):
    without = report_from_rewards(PAIRS, [], reward, seed=0)
    assert without.accuracy == report.accuracy and without.accuracy_ci == report.accuracy_ci


def test_to_dict_shape_and_json(report):
    d = report.to_dict()
    for key in ("accuracy", "accuracy_ci", "n_pairs", "n_ties", "longer_wins_accuracy", "ece", "by_subset",
                "by_source", "mean_margin", "tie_mean_abs_diff", "reliability"):
        assert key in d
    assert isinstance(d["accuracy_ci"], list) and len(d["accuracy_ci"]) == 2
    assert d["accuracy"] == report.accuracy and d["n_pairs"] == 4 and d["n_ties"] == 2
    assert set(d["by_subset"]) == {"x", "y"}
    for name, stats in d["by_subset"].items():
        assert stats["accuracy"] == report.by_subset[name].accuracy
        assert stats["n_pairs"] == report.by_subset[name].n_pairs
    assert d["by_source"]["b"]["accuracy"] == 0.75
    assert set(d["reliability"]) == {"confidence", "accuracy", "count", "ece"}
    text = json.dumps(d, allow_nan=False)  # strict JSON
    assert json.loads(text) == d


def test_metrics_are_flat_and_prefixed(report):
    m = report.metrics("validation")
    assert m["validation/accuracy"] == round(report.accuracy, 5)
    assert m["validation/n_pairs"] == 4 and m["validation/n_ties"] == 2
    assert m["validation/accuracy_ci_low"] <= m["validation/accuracy"] <= m["validation/accuracy_ci_high"]
    assert m["validation/a/accuracy"] == 0.5 and m["validation/b/accuracy"] == 0.75
    assert all(k.startswith("validation/") for k in m)


def test_report_is_deterministic_per_seed():
    pairs = [pair(f"p{i}", "good answer" if i % 3 else "ok", "bad" if i % 3 else "worse reply") for i in range(30)]
    a = report_from_rewards(pairs, [], reward, seed=0)
    b = report_from_rewards(pairs, [], reward, seed=0)
    assert a.to_dict() == b.to_dict()
    assert a.accuracy == pytest.approx(20 / 30)
    assert a.accuracy_ci[0] < 20 / 30 < a.accuracy_ci[1]


def test_accuracy_ci_is_a_cluster_bootstrap_over_prompt_groups():
    # 40 prompts x 6 pairs; the model is right on every pair of a prompt or on none
    pairs = [
        pair(f"q{q}", *(("good answer", "bad") if q % 5 < 3 else ("ok", "worse reply")))
        for q in range(40) for _ in range(6)
    ]
    report = report_from_rewards(pairs, [], reward, seed=1)
    correct = [1.0 if q % 5 < 3 else 0.0 for q in range(40) for _ in range(6)]
    assert report.accuracy == pytest.approx(0.6)
    assert report.accuracy_ci == bootstrap_ci(correct, groups=[p.prompt for p in pairs], seed=1)
    low, high = report.accuracy_ci
    low_iid, high_iid = bootstrap_ci(correct, seed=1)
    assert low < 0.6 < high
    assert high - low > 2.0 * (high_iid - low_iid)


def test_accuracy_ci_groups_by_group_field_over_prompt():
    # distinct prompts, but the `group` field ties each run of 6 pairs together
    pairs = [
        pair(f"q{q}-{k}", *(("good answer", "bad") if q % 2 else ("ok", "worse reply")), group=f"g{q}")
        for q in range(30) for k in range(6)
    ]
    correct = [1.0 if q % 2 else 0.0 for q in range(30) for _ in range(6)]
    report = report_from_rewards(pairs, [], reward)
    assert report.accuracy_ci == bootstrap_ci(correct, groups=[f"g{q}" for q in range(30) for _ in range(6)])
    assert report.accuracy_ci != bootstrap_ci(correct)


# ---------------------------------------------------------------- evaluate_model
class LengthScorer:
    """Stands in for TextRewardModel.score: reward = number of characters of prompt + response."""

    def __init__(self):
        self.calls = []

    def score(self, prompts, responses, *, max_length, batch_size, progress):
        self.calls.append((list(prompts), list(responses), max_length, batch_size))
        return [float(len(p) + len(r)) for p, r in zip(prompts, responses, strict=True)]


def test_evaluate_model_scores_each_text_once_and_matches_report_from_rewards():
    pairs = [
        pair("q1", "a long answer", "short", subset="s1"),
        pair("q1", "a long answer", "tiny", subset="s1"),  # repeats (q1, "a long answer")
        pair("q2", "x", "longer one", source="b"),
    ]
    ties = [pair("q3", "same", "sama", tie=True)]
    scorer = LengthScorer()
    report = evaluate_model(scorer, PreferenceDataset(pairs=pairs, ties=ties), max_length=64, batch_size=4,
                            progress=False)
    assert len(scorer.calls) == 1
    prompts, responses, max_length, batch_size = scorer.calls[0]
    assert (max_length, batch_size) == (64, 4)
    texts = list(zip(prompts, responses, strict=True))
    assert len(texts) == len(set(texts)) == 7  # 8 texts, one repeated

    expected = report_from_rewards(pairs, ties, lambda p, r: float(len(p.prompt) + len(r)))
    assert report.to_dict() == expected.to_dict()
    assert report.accuracy == pytest.approx(2 / 3)
    assert report.tie_mean_abs_diff == 0.0
    assert report.by_subset["s1"].accuracy == 1.0 and report.by_source["b"].accuracy == 0.0


def test_empty_report_is_nan_not_an_error():
    report = report_from_rewards([], [], reward)
    assert report.n_pairs == 0 and math.isnan(report.accuracy) and math.isnan(report.accuracy_ci[0])
    assert report.by_source == {} and report.by_subset == {}


def test_report_counts_identical_ties_and_empty_responses():
    pairs = [*PAIRS, pair("p5", "", "bad")]
    ties = [*TIES, pair("t3", "same", "same", tie=True)]
    report = report_from_rewards(pairs, ties, lambda p, r: REWARD.get(r, 0.0))
    assert (report.n_ties, report.n_identical, report.n_empty) == (3, 1, 1)
    metrics = report.metrics("test")
    assert (metrics["test/n_identical"], metrics["test/n_empty"]) == (1, 1)
    assert report.to_dict()["n_empty"] == 1
