"""The loaded preference data: pairs for training, ties kept apart for evaluation."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property

from rewardkit.data.fingerprint import fingerprint
from rewardkit.data.records import PreferencePair
from rewardkit.data.split import SPLITS, Fractions, assign_groups


@dataclass(frozen=True)
class PreferenceDataset:
    """Preference pairs from one or more sources, as returned by :func:`load_pairs`.

    Attributes:
        pairs: Pairs with a preference (``tie=False``), in source order; what a
            Bradley-Terry loss trains on.
        ties: Pairs whose annotators had no preference, or whose chosen and rejected texts
            are identical (``tie=True``), in source order; dropped from training, reported
            separately in evaluation.
        n_records: Number of raw records the pairs and ties came from.
        formats: Format name per source, e.g. ``{"data/dev.json.gz": "qa-feedback"}``.
    """

    pairs: list[PreferencePair]
    ties: list[PreferencePair] = field(default_factory=list)
    n_records: int = 0
    formats: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        """Number of (non-tie) pairs."""
        return len(self.pairs)

    @property
    def n_identical(self) -> int:
        """Ties whose two responses are the same text (labelled pairs that prefer nothing)."""
        return sum(pair.identical for pair in self.ties)

    @property
    def n_empty(self) -> int:
        """Pairs and ties with an empty (or whitespace-only) chosen or rejected response.

        Empty responses are real data (a model that says nothing), kept and counted.
        """
        return sum(pair.has_empty_response for pair in self.pairs + self.ties)

    @cached_property
    def fingerprint(self) -> str:
        """SHA-256 hex of the content of the pairs and ties, in any order (see :mod:`rewardkit.data.fingerprint`)."""
        return fingerprint(self.pairs + self.ties)

    def split(
        self, fractions: Fractions = (0.8, 0.1, 0.1), seed: int = 0
    ) -> dict[str, PreferenceDataset]:
        """Split into ``{"train", "validation", "test"}`` datasets without splitting a group.

        Every source (``pair.source``) gets its share of held-out pairs; ties follow their
        group; a group never crosses splits, even when it spans sources. The split depends on
        the seed and the content only, not on the order of the pairs or of the sources (see
        :mod:`rewardkit.data.split`). ``n_records`` of each part counts the distinct record
        locations in it.

        Args:
            fractions: Target shares of (train, validation, test); non-negative, sum 1.
            seed: Seed of the group order; same data and seed give the same split.

        Raises:
            DataError: If ``fractions`` is not three non-negative numbers summing to 1.
        """
        items = self.pairs + self.ties
        where = assign_groups(((pair.source, pair.group_key) for pair in items), fractions, seed)
        parts = {}
        for index, name in enumerate(SPLITS):
            pairs = [p for p in self.pairs if where[p.group_key] == index]
            ties = [p for p in self.ties if where[p.group_key] == index]
            parts[name] = PreferenceDataset(
                pairs=pairs,
                ties=ties,
                n_records=len({p.location for p in pairs + ties}),
                formats=dict(self.formats),
            )
        return parts

    def first_per_source(self, n: int | None) -> PreferenceDataset:
        """The first ``n`` pairs of each source, in order (ties dropped); all pairs when ``n`` is None.

        Unlike ``load_pairs(limit=...)``, which stops reading a source early, this cuts a
        dataset already loaded and split, e.g. a training split down to ``--limit`` pairs.
        """
        if n is None:
            return self
        taken: Counter[str] = Counter()
        kept = []
        for pair in self.pairs:
            if taken[pair.source] < n:
                taken[pair.source] += 1
                kept.append(pair)
        return PreferenceDataset(pairs=kept, n_records=len({p.location for p in kept}), formats=dict(self.formats))
