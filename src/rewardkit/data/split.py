"""Group-aware train/validation/test splits.

All pairs with the same :attr:`PreferencePair.group_key` land in the same split, so that the
answers to one question (or one instruction, or one prompt) never leak from training into
evaluation. Groups are shuffled with ``random.Random(seed)`` and each goes to the split that
is furthest below its target share of pairs, so the pair counts approach the fractions.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Mapping, Sequence
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
        pairs: The pairs (ties too, if wanted).
        fractions: Target shares of pairs for (train, validation, test); non-negative, sum 1.
        seed: Seed of the group shuffle; the same pairs and seed give the same split.

    Returns:
        The three lists, each keeping the input order.

    Raises:
        DataError: If ``fractions`` is not three non-negative numbers summing to 1.
    """
    sizes = Counter(pair.group_key for pair in pairs)
    where = assign_groups(sizes, fractions, seed)
    parts: tuple[list[PreferencePair], ...] = ([], [], [])
    for pair in pairs:
        parts[where[pair.group_key]].append(pair)
    return DatasetSplit(*parts)


def assign_groups(
    sizes: Mapping[str, int],
    fractions: Fractions,
    seed: int,
    fixed: Mapping[str, int] | None = None,
) -> dict[str, int]:
    """Assign every group to a split index (0 train, 1 validation, 2 test).

    Args:
        sizes: Number of pairs per group key, in first-seen order.
        fractions: Target shares of pairs for the three splits.
        seed: Seed of the shuffle of the groups not in ``fixed``.
        fixed: Groups already assigned (e.g. by another source); they keep their split and
            count towards its share.

    Returns:
        Split index per group key of ``sizes``.

    Raises:
        DataError: If ``fractions`` is not three non-negative numbers summing to 1.
    """
    check_fractions(fractions)
    fixed = fixed or {}
    total = sum(sizes.values())
    counts = [0, 0, 0]
    where = {key: fixed[key] for key in sizes if key in fixed}
    for key, index in where.items():
        counts[index] += sizes[key]
    free = [key for key in sizes if key not in fixed]
    random.Random(seed).shuffle(free)
    for key in free:
        index = max(range(3), key=lambda i: fractions[i] * total - counts[i])
        where[key] = index
        counts[index] += sizes[key]
    return where


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
