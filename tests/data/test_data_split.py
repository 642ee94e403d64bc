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


def split_signature(parts):
    return {name: sorted((p.source, p.group_key, p.chosen) for p in part.pairs + part.ties)
            for name, part in parts.items()}


def test_split_does_not_depend_on_the_order_of_sources_or_records():
    # Old code: sources were split one after the other, each carrying the groups placed before,
    # and groups were shuffled in first-seen order: reordering changed the split.
    a = make_pairs(80, source="a")
    b = make_pairs(60, source="b", per_group=lambda g: 1 + g % 2)  # shares groups g0..g59 with a
    c = [PreferencePair(f"c{i}", "x", "y", "c") for i in range(50)]
    orders = [a + b + c, c + b + a, b[::-1] + a[::-1] + c, sorted(a + b + c, key=lambda p: p.chosen)]
    signatures = [split_signature(PreferenceDataset(pairs=items).split(seed=7)) for items in orders]
    assert all(signature == signatures[0] for signature in signatures)
    assert [split_pairs(items, seed=7) for items in orders][0] == split_pairs(orders[0], seed=7)


def test_every_source_gets_its_share_and_shared_groups_stay_whole():
    a = make_pairs(300, source="a")
    b = make_pairs(100, source="b", per_group=lambda g: 2)  # shares groups g0..g99 with a
    c = [PreferencePair(f"c{i}", "x", "y", "c") for i in range(200)]
    parts = PreferenceDataset(pairs=a + b + c).split((0.8, 0.1, 0.1), seed=0)
    for source, items in (("a", a), ("b", b), ("c", c)):
        shares = [sum(p.source == source for p in part.pairs) / len(items) for part in parts.values()]
        assert all(abs(share - target) < 0.05 for share, target in zip(shares, (0.8, 0.1, 0.1), strict=True)), shares
    seen: set[str] = set()
    for part in parts.values():
        assert not groups(part.pairs) & seen
        seen |= groups(part.pairs)


def opening(pair):
    """The normalised first human turn of an hh-rlhf pair, read from its prompt (not from its group)."""
    first = pair.prompt.split("\n\nAssistant:")[0].removeprefix("\n\nHuman:")
    return " ".join(first.split()).casefold()


def hh_pairs(part):
    return [p for p in part.pairs + part.ties if p.source.startswith("hh-rlhf")]


@pytest.mark.parametrize("seed", [42, 0])
def test_real_hh_rlhf_conversations_do_not_leak_across_the_split(shared_data, seed):
    # Old code, seed 42: 23 of the 231 hh-rlhf test pairs (21 of 231 validation) opened with the same
    # human turn as a training pair, and 6 test (14 validation) responses of 40+ characters appeared
    # word for word inside a training prompt: the whole prompt was the group, and later turns extend it.
    hh, qa = shared_data / "hh-rlhf-harmless-base-test.jsonl.gz", shared_data / "qa-feedback-dev.json.gz"
    parts = load_pairs([hh, qa]).split((0.8, 0.1, 0.1), seed=seed)
    train = {opening(p) for p in hh_pairs(parts["train"])}
    train_prompts = "\0".join(p.prompt for p in hh_pairs(parts["train"]))
    for name in ("validation", "test"):
        held_out = hh_pairs(parts[name])
        assert len(held_out) > 150
        assert not {opening(p) for p in held_out} & train
        responses = [r.strip() for p in held_out for r in (p.chosen, p.rejected) if len(r.strip()) >= 40]
        assert not [r for r in responses if r in train_prompts]
    reordered = load_pairs([qa, hh]).split((0.8, 0.1, 0.1), seed=seed)
    assert split_signature(reordered) == split_signature(parts)
    assert {k: v.fingerprint for k, v in reordered.items()} == {k: v.fingerprint for k, v in parts.items()}


def test_bootstrap_interval_clusters_hh_rlhf_by_first_human_turn(shared_data):
    import numpy as np

    from rewardkit.evaluation import bootstrap_ci, report_from_rewards

    data = load_pairs(shared_data / "hh-rlhf-harmless-base-test.jsonl.gz")
    openings = [opening(p) for p in data.pairs]
    assert [p.group_key for p in data.pairs] == openings
    assert len(set(openings)) < len({p.prompt for p in data.pairs})  # conversations share openings
    report = report_from_rewards(data.pairs, [], lambda p, r: len(r) / 1000)
    correct = np.array([1.0 if len(p.chosen) > len(p.rejected) else 0.0 if len(p.chosen) < len(p.rejected) else 0.5
                        for p in data.pairs])
    assert report.accuracy_ci == bootstrap_ci(correct, groups=openings)
