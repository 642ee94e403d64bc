"""Group-aware train/validation/test splits that do not depend on the order of the data.

All pairs with the same :attr:`PreferencePair.group_key` land in the same split, so that the
answers to one question (or one instruction, or one conversation) never leak from training
into evaluation. Every source gets its own share of each split: pair counts are kept per
source. The assignment depends only on the seed and on which groups hold how many pairs of
which source, never on the order of records or of sources:

1. groups are visited in the order of ``SHA-256(f"{seed}:{group}")`` (a seeded shuffle that
   is the same however the data is ordered);
2. each group goes to the split its sources lack most: the split ``i`` maximising
   ``sum over the group's sources s of n_gs * (fraction_i - placed_si / total_s)``, where
   ``n_gs`` is the group's pairs in ``s``, ``placed_si`` the pairs of ``s`` already in split
   ``i`` and ``total_s`` all pairs of ``s``. For a group of one source this is "the split
   furthest below its target share", so the pair counts of every source approach the
   fractions; a group spanning sources still goes to a single split.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from rewardkit.data.records import PreferencePair
from rewardkit.errors import DataError

SPLITS = ("train", "validation", "test")
Fractions = tuple[float, float, float]


class DatasetSplit(NamedTuple):
    """Pairs of each split, each list in the input order."""

    train: list[PreferencePair]
    validation: list[PreferencePair]
    test: list[PreferencePair]


def split_pairs(
    pairs: Sequence[PreferencePair], fractions: Fractions = (0.8, 0.1, 0.1), seed: int = 0
) -> DatasetSplit:
    """Split pairs into train, validation and test without splitting a group.

    Args:
        pairs: The pairs (ties too, if wanted), of one or more sources.
        fractions: Target shares of each source's pairs for (train, validation, test);
            non-negative, sum 1.
        seed: Seed of the group order; the same pairs and seed give the same split, in
            whatever order the pairs come.

    Returns:
        The three lists, each keeping the input order.

    Raises:
        DataError: If ``fractions`` is not three non-negative numbers summing to 1.
    """
    where = assign_groups(((pair.source, pair.group_key) for pair in pairs), fractions, seed)
    parts: tuple[list[PreferencePair], ...] = ([], [], [])
    for pair in pairs:
        parts[where[pair.group_key]].append(pair)
    return DatasetSplit(*parts)


def assign_groups(members: Iterable[tuple[str, str]], fractions: Fractions, seed: int) -> dict[str, int]:
    """Assign every group to a split index (0 train, 1 validation, 2 test); see the module doc.

    Args:
        members: ``(source, group_key)`` of every pair, in any order.
        fractions: Target shares of each source's pairs for the three splits.
        seed: Seed of the group order.

    Returns:
        Split index per group key.

    Raises:
        DataError: If ``fractions`` is not three non-negative numbers summing to 1.
    """
    check_fractions(fractions)
    sizes: dict[str, Counter[str]] = defaultdict(Counter)  # group -> pairs per source
    totals: Counter[str] = Counter()  # source -> pairs
    for source, group in members:
        sizes[group][source] += 1
        totals[source] += 1
    placed = {source: [0, 0, 0] for source in totals}
    where: dict[str, int] = {}
    for group in sorted(sizes, key=lambda g: (_rank(seed, g), g)):
        by_source = sizes[group]

        def lack(i: int, by_source: Counter[str] = by_source) -> float:
            return sum(n * (fractions[i] - placed[s][i] / totals[s]) for s, n in by_source.items())

        index = max(range(3), key=lack)
        where[group] = index
        for source, n in by_source.items():
            placed[source][index] += n
    return where


def _rank(seed: int, group: str) -> bytes:
    """The group's place in the seeded order: ``SHA-256(f"{seed}:{group}")``."""
    return hashlib.sha256(f"{seed}:{group}".encode()).digest()


def check_fractions(fractions: Sequence[float]) -> None:
    """Raise DataError unless ``fractions`` is three non-negative numbers summing to 1."""
    if (
        len(fractions) != 3
        or any(not isinstance(f, int | float) or f < 0 for f in fractions)
        or not math.isclose(sum(fractions), 1.0, abs_tol=1e-6)
    ):
        raise DataError(
            f"split fractions must be three non-negative numbers (train, validation, test) "
            f"summing to 1, e.g. (0.8, 0.1, 0.1); got {tuple(fractions)}"
        )
