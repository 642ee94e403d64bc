"""From preference pairs (or rated examples) to padded batches: tokenization, length grouping, collation.

Three collators share one interface (``lengths()`` for the batch sampler, ``__call__`` for
the DataLoader): :class:`PairCollator` puts chosen and rejected texts in rows of their
own (any backbone); :class:`SharedPrefixCollator` puts each pair in one row that holds
the prompt once (decoders, see :mod:`rewardkit.models.shared_prefix`); :class:`RatedCollator`
puts each rated example in one row, with its rating.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from rewardkit.data import PreferencePair, RatedExample
from rewardkit.models import TextRewardModel
from rewardkit.models.shared_prefix import pack_pairs, row_lengths, shared_length


@dataclass
class TokenizedPairs:
    """Token ids of every pair, after the truncation policy (no pair is ever dropped).

    Attributes:
        chosen: Token ids of ``prompt + chosen`` per pair.
        rejected: Token ids of ``prompt + rejected`` per pair.
        margins: The pair's margin, or 0.0.
        prompts_truncated: Pairs whose prompt was trimmed (from the left).
        responses_truncated: Pairs with a response trimmed (from the right).
    """

    chosen: list[list[int]]
    rejected: list[list[int]]
    margins: list[float]
    prompts_truncated: int
    responses_truncated: int

    def __len__(self) -> int:
        return len(self.chosen)

    def lengths(self) -> list[int]:
        """Padded length each pair needs: the longer of its two texts, in tokens."""
        return [max(len(c), len(r)) for c, r in zip(self.chosen, self.rejected, strict=True)]


def tokenize_pairs(
    model: TextRewardModel, pairs: Sequence[PreferencePair], max_length: int, progress: bool = True
) -> TokenizedPairs:
    """Encode chosen and rejected texts of every pair with :meth:`TextRewardModel.encode`."""
    chosen, rejected, margins = [], [], []
    prompts_truncated = responses_truncated = 0
    for pair in tqdm(pairs, desc="tokenizing", disable=not progress, leave=False):
        c = model.encode(pair.prompt, pair.chosen, max_length)
        r = model.encode(pair.prompt, pair.rejected, max_length)
        chosen.append(c.input_ids)
        rejected.append(r.input_ids)
        margins.append(float(pair.margin or 0.0))
        prompts_truncated += c.prompt_truncated or r.prompt_truncated
        responses_truncated += c.response_truncated or r.response_truncated
    return TokenizedPairs(chosen, rejected, margins, prompts_truncated, responses_truncated)


@dataclass
class TokenizedRated:
    """Token ids of every rated example, after the truncation policy (none dropped).

    Attributes:
        input_ids: Token ids of ``prompt + response`` per example.
        ratings: The regression target per example (standardised when the trainer says so).
        prompts_truncated: Examples whose prompt was trimmed (from the left).
        responses_truncated: Examples whose response was trimmed (from the right).
    """

    input_ids: list[list[int]]
    ratings: list[float]
    prompts_truncated: int
    responses_truncated: int

    def __len__(self) -> int:
        return len(self.input_ids)


def tokenize_rated(
    model: TextRewardModel, examples: Sequence[RatedExample], max_length: int, ratings: Sequence[float],
    progress: bool = True,
) -> TokenizedRated:
    """Encode ``prompt + response`` of every example with :meth:`TextRewardModel.encode`.

    Args:
        model: Gives the tokenizer and truncation policy.
        examples: The rated examples.
        max_length: Token budget per text.
        ratings: The target of each example, in order (the ratings, or their z-scores).
        progress: Show a progress bar.
    """
    input_ids = []
    prompts_truncated = responses_truncated = 0
    for example in tqdm(examples, desc="tokenizing", disable=not progress, leave=False):
        encoded = model.encode(example.prompt, example.response, max_length)
        input_ids.append(encoded.input_ids)
        prompts_truncated += encoded.prompt_truncated
        responses_truncated += encoded.response_truncated
    return TokenizedRated(input_ids, [float(r) for r in ratings], prompts_truncated, responses_truncated)


class LengthGroupedBatches(torch.utils.data.Sampler[list[int]]):
    """Seeded batches of pair indices, grouped by length (a batch sampler).

    Each epoch shuffles the pairs, cuts them into mega-batches of ``50 * batch_size``,
    sorts each mega-batch by length and slices it into batches, then shuffles the batch
    order (the scheme of transformers' ``LengthGroupedSampler``); a short batch stays last.
    With ``group_by_length`` off, batches are plain shuffled slices.

    Args:
        lengths: Padded length of each pair, in tokens.
        batch_size: Pairs per batch; the last batch of an epoch may be smaller.
        seed: Base seed; epoch ``e`` uses ``seed + e``.
        group_by_length: Sort within mega-batches.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, group_by_length: bool = True):
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.group_by_length = group_by_length
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order :meth:`__iter__` yields."""
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        rng = random.Random(self.seed + self.epoch)
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        if self.group_by_length:
            mega = 50 * self.batch_size
            order = [
                i
                for start in range(0, len(order), mega)
                for i in sorted(order[start : start + mega], key=lambda i: -self.lengths[i])
            ]
        batches = [order[s : s + self.batch_size] for s in range(0, len(order), self.batch_size)]
        if self.group_by_length:
            # Shuffle the full batches only: a short batch must stay last, as accelerate's
            # BatchSamplerShard (multi-process) silently drops one found in the middle.
            short = batches.pop() if batches and len(batches[-1]) < self.batch_size else None
            rng.shuffle(batches)
            batches += [short] if short else []
        yield from batches


class PairCollator:
    """Pads the chosen and rejected texts of a batch together, for one forward pass.

    Returns a dict with ``input_ids`` and ``attention_mask`` of shape ``(2 * batch, longest)
    int64`` (chosen rows first, then rejected rows) and ``margin`` of shape ``(batch,) float32``.
    """

    def __init__(self, model: TextRewardModel, tokenized: TokenizedPairs):
        self.model = model
        self.tokenized = tokenized

    def lengths(self) -> list[int]:
        """Padded width each pair needs, in tokens: the longer of its two texts."""
        return self.tokenized.lengths()

    def __call__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        """Pad the pairs at ``indices`` (a batch sampler hands the whole index list to one call)."""
        t = self.tokenized
        input_ids, attention_mask = self.model.pad([t.chosen[i] for i in indices] + [t.rejected[i] for i in indices])
        return {"input_ids": input_ids, "attention_mask": attention_mask, "margin": _margins(t, indices)}


class SharedPrefixCollator:
    """Packs each pair into one row ``[shared; chosen rest; rejected rest]``, right-padded.

    The shared part is the two texts' longest common token prefix (usually the prompt);
    a pair sharing nothing beyond the special tokens takes two rows. Returns the dict of
    :func:`rewardkit.models.shared_prefix.pack_pairs` (``input_ids``, a 4-D boolean
    ``attention_mask``, ``position_ids``, ``chosen_index``, ``rejected_index``) plus
    ``margin`` of shape ``(batch,) float32``.
    """

    def __init__(self, model: TextRewardModel, tokenized: TokenizedPairs):
        self.pad_id = model.tokenizer.pad_token_id
        self.tokenized = tokenized
        n_special = len(model.special.prefix)
        pairs = zip(tokenized.chosen, tokenized.rejected, strict=True)
        self.shared = [shared_length(c, r, n_special) for c, r in pairs]

    def lengths(self) -> list[int]:
        """Padded width each pair needs, in tokens: its packed row (or its longer text if it takes two)."""
        t = self.tokenized
        return [row_lengths(c, r, s) for c, r, s in zip(t.chosen, t.rejected, self.shared, strict=True)]

    def __call__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        """Pack the pairs at ``indices``."""
        t = self.tokenized
        batch = pack_pairs([t.chosen[i] for i in indices], [t.rejected[i] for i in indices],
                           [self.shared[i] for i in indices], self.pad_id)
        batch["margin"] = _margins(t, indices)
        return batch


class RatedCollator:
    """Pads the rated texts of a batch, one row each.

    Returns a dict with ``input_ids`` and ``attention_mask`` of shape ``(batch, longest) int64``
    and ``rating`` of shape ``(batch,) float32``.
    """

    def __init__(self, model: TextRewardModel, tokenized: TokenizedRated):
        self.model = model
        self.tokenized = tokenized

    def lengths(self) -> list[int]:
        """Length of each example, in tokens."""
        return [len(ids) for ids in self.tokenized.input_ids]

    def __call__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        """Pad the examples at ``indices``."""
        t = self.tokenized
        input_ids, attention_mask = self.model.pad([t.input_ids[i] for i in indices])
        rating = torch.tensor([t.ratings[i] for i in indices], dtype=torch.float32)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "rating": rating}


def _margins(tokenized: TokenizedPairs, indices: list[int]) -> torch.Tensor:
    """``(batch,) float32`` margins of the pairs at ``indices``."""
    return torch.tensor([tokenized.margins[i] for i in indices], dtype=torch.float32)


class _Indices(torch.utils.data.Dataset):
    """The dataset a DataLoader indexes: item ``i`` is just ``i``; the collator does the rest."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i
