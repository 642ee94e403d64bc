"""Tokenization of pairs, length-grouped batch sampling and pair collation."""

from __future__ import annotations

import random
import statistics

import pytest
import torch

from rewardkit.data import PreferencePair
from rewardkit.training.batching import (
    LengthGroupedBatches,
    PairCollator,
    SharedPrefixCollator,
    TokenizedPairs,
    tokenize_pairs,
)

_RNG = random.Random(1)
LENGTHS = [_RNG.randint(5, 500) for _ in range(1000)]


def epoch_batches(sampler: LengthGroupedBatches, epoch: int) -> list[list[int]]:
    sampler.set_epoch(epoch)
    return list(sampler)


@pytest.mark.parametrize("group", [True, False])
@pytest.mark.parametrize("n, batch_size", [(1000, 8), (37, 5), (3, 8), (16, 4), (0, 4)])
def test_every_index_exactly_once_per_epoch(group, n, batch_size):
    sampler = LengthGroupedBatches(LENGTHS[:n], batch_size, seed=3, group_by_length=group)
    assert len(sampler) == -(-n // batch_size)
    for epoch in range(3):
        batches = epoch_batches(sampler, epoch)
        assert len(batches) == len(sampler)
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(n))
        assert all(1 <= len(b) <= batch_size for b in batches)
        assert sum(len(b) < batch_size for b in batches) == (1 if n % batch_size else 0)


@pytest.mark.parametrize("group", [True, False])
def test_deterministic_per_seed_and_epoch_and_different_across_epochs(group):
    a = LengthGroupedBatches(LENGTHS, 8, seed=11, group_by_length=group)
    b = LengthGroupedBatches(LENGTHS, 8, seed=11, group_by_length=group)
    assert epoch_batches(a, 0) == epoch_batches(b, 0)
    assert epoch_batches(a, 2) == epoch_batches(b, 2)
    assert list(a) == list(a)  # iterating twice in one epoch gives the same order
    assert epoch_batches(a, 0) != epoch_batches(a, 1)
    assert epoch_batches(a, 1) != epoch_batches(a, 2)
    other_seed = LengthGroupedBatches(LENGTHS, 8, seed=12, group_by_length=group)
    assert epoch_batches(other_seed, 0) != epoch_batches(a, 0)


def test_default_epoch_is_zero():
    a = LengthGroupedBatches(LENGTHS, 8, seed=5)
    b = LengthGroupedBatches(LENGTHS, 8, seed=5)
    assert list(a) == epoch_batches(b, 0)


def spread(sampler: LengthGroupedBatches) -> float:
    """Mean over batches of (longest - shortest) length in the batch."""
    return statistics.mean(max(LENGTHS[i] for i in b) - min(LENGTHS[i] for i in b) for b in sampler)


def test_batches_are_grouped_by_length():
    grouped = spread(LengthGroupedBatches(LENGTHS, 8, seed=0, group_by_length=True))
    plain = spread(LengthGroupedBatches(LENGTHS, 8, seed=0, group_by_length=False))
    assert plain > 300  # random slices of lengths 5..500 span most of the range
    assert grouped < plain / 10


def test_grouped_batch_order_is_shuffled_not_sorted():
    sampler = LengthGroupedBatches(LENGTHS, 8, seed=0)
    longest = [max(LENGTHS[i] for i in b) for b in sampler]
    assert longest != sorted(longest) and longest != sorted(longest, reverse=True)


# ---------------------------------------------------------------- collation
@pytest.fixture
def tokenized() -> TokenizedPairs:
    return TokenizedPairs(
        chosen=[[101, 5, 6, 102], [101, 7, 102], [101, 8, 9, 10, 11, 102]],
        rejected=[[101, 5, 102], [101, 7, 7, 7, 7, 7, 7, 102], [101, 102]],
        margins=[0.0, 1.5, 0.25],
        prompts_truncated=0,
        responses_truncated=0,
    )


def test_tokenized_lengths_are_the_longer_text(tokenized):
    assert len(tokenized) == 3
    assert tokenized.lengths() == [4, 8, 6]


def test_pair_collator_shapes_and_row_order(tiny_model, tokenized):
    model = tiny_model()
    pad = model.tokenizer.pad_token_id
    batch = PairCollator(model, tokenized)([2, 0])
    assert set(batch) == {"input_ids", "attention_mask", "margin"}
    assert batch["input_ids"].shape == batch["attention_mask"].shape == (4, 6)
    assert batch["input_ids"].dtype == batch["attention_mask"].dtype == torch.int64
    assert batch["margin"].shape == (2,) and batch["margin"].dtype == torch.float32
    assert batch["margin"].tolist() == [0.25, 0.0]
    rows = [tokenized.chosen[2], tokenized.chosen[0], tokenized.rejected[2], tokenized.rejected[0]]
    for row, ids in enumerate(rows):  # chosen rows first, then rejected, in batch order
        assert batch["input_ids"][row, : len(ids)].tolist() == ids
        assert (batch["input_ids"][row, len(ids) :] == pad).all()
        assert batch["attention_mask"][row].tolist() == [1] * len(ids) + [0] * (6 - len(ids))


def test_shared_prefix_collator_packs_pairs_that_share_more_than_the_special_prefix(tiny_model, tokenized):
    collator = SharedPrefixCollator(tiny_model(), tokenized)  # [CLS] is the BERT tokenizer's special prefix
    assert collator.shared == [2, 2, 0]  # [CLS] 5 | [CLS] 7 | only [CLS]: two rows
    assert collator.lengths() == [4 + 3 - 2, 3 + 8 - 2, 6]
    batch = collator([2, 0])
    assert set(batch) == {"input_ids", "attention_mask", "position_ids", "chosen_index", "rejected_index", "margin"}
    assert batch["input_ids"].shape == (3, 6) and batch["attention_mask"].shape == (3, 1, 6, 6)
    assert batch["input_ids"][2, :5].tolist() == [101, 5, 6, 102, 102]  # pair 0: [CLS] 5 | 6 [SEP] | [SEP]
    assert batch["position_ids"][2, :5].tolist() == [0, 1, 2, 3, 2]
    assert batch["chosen_index"].tolist() == [5, 2 * 6 + 3] and batch["rejected_index"].tolist() == [6 + 1, 2 * 6 + 4]
    assert batch["margin"].tolist() == [0.25, 0.0]


def test_pair_collator_pads_to_the_longest_text_of_either_side(tiny_model, tokenized):
    batch = PairCollator(tiny_model(), tokenized)([1])
    assert batch["input_ids"].shape == (2, 8)  # the rejected text is the longer one
    assert batch["margin"].tolist() == [1.5]


def test_tokenize_pairs_keeps_every_pair_and_counts_truncations(tiny_model):
    model = tiny_model()
    pairs = [
        PreferencePair("short prompt", "yes", "no", "s", margin=2.0),
        PreferencePair("a much longer prompt " * 5, "fine", "bad", "s"),
        PreferencePair("", "a very long response " * 5, "ok", "s"),
    ]
    t = tokenize_pairs(model, pairs, max_length=8, progress=False)
    assert len(t) == 3
    assert t.margins == [2.0, 0.0, 0.0]
    assert all(len(ids) <= 8 for ids in t.chosen + t.rejected)
    assert t.prompts_truncated == 1
    assert t.responses_truncated == 1
    assert t.chosen[0] == model.encode("short prompt", "yes", 8).input_ids
    assert t.rejected[2] == model.encode("", "ok", 8).input_ids


@pytest.mark.parametrize("n", [37, 1001])
def test_grouped_short_batch_stays_last(n):
    sampler = LengthGroupedBatches(LENGTHS[:n], 8, seed=0)
    for epoch in range(5):
        batches = epoch_batches(sampler, epoch)
        assert all(len(b) == 8 for b in batches[:-1])


@pytest.mark.parametrize("group", [True, False])
@pytest.mark.parametrize("num_processes", [2, 3])
def test_sharded_by_accelerate_every_process_gets_its_share(group, num_processes):
    """What `accelerate launch` does to the sampler: each process gets ceil(len / n) batches, none lost."""
    from accelerate.data_loader import BatchSamplerShard

    sampler = LengthGroupedBatches(LENGTHS[:75], 4, seed=0, group_by_length=group)  # 19 batches, last of 3
    for epoch in range(6):
        sampler.set_epoch(epoch)
        seen = set()
        for rank in range(num_processes):
            shard = BatchSamplerShard(sampler, num_processes=num_processes, process_index=rank, even_batches=True)
            batches = list(shard)
            assert len(batches) == len(shard) == -(-len(sampler) // num_processes)
            seen.update(i for b in batches for i in b)
        assert seen == set(range(75))
