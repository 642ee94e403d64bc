from __future__ import annotations

import pytest

from rewardkit.data import DatasetSplit, PreferenceDataset, PreferencePair, load_pairs, split_pairs
from rewardkit.errors import DataError


def make_pairs(n_groups=100, per_group=lambda g: 1 + g % 4, source="s", tie_every=0):
    pairs = []
    for g in range(n_groups):
        for k in range(per_group(g)):
            tie = bool(tie_every) and k % tie_every == 1
            pairs.append(
                PreferencePair(f"prompt {g}", f"c{k}", f"r{k}", source, tie=tie, group=f"g{g}")
            )
    return pairs


def groups(pairs):
    return {p.group_key for p in pairs}


def test_split_is_deterministic_and_seed_dependent():
    pairs = make_pairs()
    assert split_pairs(pairs, seed=3) == split_pairs(pairs, seed=3)
    assert split_pairs(pairs, seed=3) != split_pairs(pairs, seed=4)


def test_no_group_crosses_splits_and_nothing_is_lost():
    pairs = make_pairs()
    parts = split_pairs(pairs, (0.8, 0.1, 0.1), seed=0)
    assert isinstance(parts, DatasetSplit)
    assert sum(len(part) for part in parts) == len(pairs)
    assert not groups(parts.train) & groups(parts.validation)
    assert not groups(parts.train) & groups(parts.test)
    assert not groups(parts.validation) & groups(parts.test)


@pytest.mark.parametrize("fractions", [(0.8, 0.1, 0.1), (0.5, 0.25, 0.25), (0.9, 0.1, 0.0)])
def test_fractions_are_roughly_respected(fractions):
    pairs = make_pairs(n_groups=400)
    parts = split_pairs(pairs, fractions, seed=1)
    for part, fraction in zip(parts, fractions, strict=True):
        assert abs(len(part) / len(pairs) - fraction) < 0.02
    if fractions[2] == 0:
        assert parts.test == []


def test_group_defaults_to_prompt():
    pairs = [PreferencePair(f"p{i % 10}", "c", "r", "s") for i in range(50)]
    parts = split_pairs(pairs, seed=0)
    assert not groups(parts.train) & groups(parts.test)


@pytest.mark.parametrize("fractions", [(0.8, 0.1), (0.8, 0.3, 0.1), (1.2, -0.1, -0.1)])
def test_bad_fractions(fractions):
    with pytest.raises(DataError, match="split fractions must be three non-negative numbers"):
        split_pairs(make_pairs(), fractions)


def test_dataset_split_keeps_ties_with_their_group_and_every_source_held_out():
    items = make_pairs(60, source="a", tie_every=2) + make_pairs(40, source="b", tie_every=3)
    data = PreferenceDataset(
        pairs=[p for p in items if not p.tie],
        ties=[p for p in items if p.tie],
        n_records=100,
        formats={"a": "x", "b": "y"},
    )
    parts = data.split((0.8, 0.1, 0.1), seed=0)
    assert list(parts) == ["train", "validation", "test"]
    assert sum(len(part.pairs) for part in parts.values()) == len(data.pairs)
    assert sum(len(part.ties) for part in parts.values()) == len(data.ties)
    seen: set[str] = set()
    for part in parts.values():
        keys = groups(part.pairs + part.ties)
        assert not keys & seen
        seen |= keys
        assert {p.source for p in part.pairs} == {"a", "b"}
        assert all(not p.tie for p in part.pairs) and all(p.tie for p in part.ties)
    assert parts == data.split((0.8, 0.1, 0.1), seed=0)


def test_group_shared_by_two_sources_stays_in_one_split():
    first = make_pairs(30, source="a")
    second = make_pairs(30, source="b")  # same groups g0..g29
    data = PreferenceDataset(pairs=first + second)
    parts = data.split(seed=5)
    seen: set[str] = set()
    for part in parts.values():
        assert not groups(part.pairs) & seen
        seen |= groups(part.pairs)


def test_real_qa_feedback_split_by_question(shared_data):
    data = load_pairs(shared_data / "qa-feedback-dev.json.gz")
    parts = data.split((0.8, 0.1, 0.1), seed=0)
    questions = [groups(part.pairs + part.ties) for part in parts.values()]
    assert sum(len(q) for q in questions) == 500
    assert [part.n_records for part in parts.values()] == [len(q) for q in questions]
    assert abs(len(parts["train"].pairs) / len(data.pairs) - 0.8) < 0.03
