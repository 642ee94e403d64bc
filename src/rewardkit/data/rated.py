"""Rated examples (prompt, response, rating): read, validate, split by group, fingerprint.

The seed system trains text reward models by MSE regression on ratings as well as on
preferences (``rewardkit train --objective mse``). A rated record holds

* ``response`` (alias ``completion``, TRL's prompt-completion name): the rated text;
* ``rating`` (alias ``score``): a finite number, as a number or a numeric string (CSV);
* ``prompt`` (optional, default ``""``) and ``subset`` (optional).

Files and Hugging Face datasets are read by :func:`rewardkit.data.read_records`, so every type
the pair loaders take works here too (``.jsonl``, ``.json``, ``.parquet``, ``.csv``, ``.gz``,
``owner/name[:config][:split]``). Every error names the record (``file:line`` or
``file[index]``) and the field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from rewardkit.data.fingerprint import fingerprint
from rewardkit.data.formats import fields
from rewardkit.data.readers import read_records
from rewardkit.data.records import RatedExample
from rewardkit.data.split import SPLITS, Fractions, assign_groups
from rewardkit.errors import DataError

NAME = "rated"
ALIASES = {"response": ("response", "completion"), "rating": ("rating", "score")}
"""Each field and the record keys it is read from, first found wins."""
DESCRIBE = "rated ('response' or 'completion' text, 'rating' or 'score' number, optional 'prompt', 'subset')"


def looks_rated(record: dict[str, Any]) -> bool:
    """Whether a raw record is a rated example (a response and a rating field) rather than a pair."""
    return all(any(key in record for key in keys) for keys in ALIASES.values()) and "chosen" not in record


def to_rated(location: str, record: dict[str, Any], source_name: str) -> RatedExample:
    """Convert one raw record into a :class:`RatedExample`.

    Raises:
        DataError: ``FILE:LINE: ...`` when the response or rating is missing, the response or
            prompt is not text, or the rating is not a finite number (``NaN``, ``inf``, ``"x"``).
    """
    names = {name: next((k for k in keys if record.get(k) is not None), None) for name, keys in ALIASES.items()}
    for name, key in names.items():
        if key is None:
            hint = " (this record is a preference pair: train on it with --objective bradley-terry)" \
                if "chosen" in record else ""
            raise DataError(f"{location}: missing field '{name}' (or '{ALIASES[name][1]}'); "
                            f"rated data expects {DESCRIBE.removeprefix('rated ')}{hint}")
    rating = fields.optional_float(location, record, str(names["rating"]))
    if rating is None:  # an empty CSV cell
        raise DataError(f"{location}: field '{names['rating']}' is empty; every rated example needs a rating")
    prompt = fields.text(location, record, "prompt") if record.get("prompt") is not None else ""
    return RatedExample(prompt=prompt, response=fields.text(location, record, str(names["response"])),
                        rating=rating, source=source_name, subset=fields.optional_text(record, "subset"),
                        location=location)


@dataclass(frozen=True)
class RatedDataset:
    """Rated examples from one or more sources, as returned by :func:`load_rated`.

    Attributes:
        examples: The examples, in source order.
        n_records: Raw records they came from.
        formats: Format name per source (always ``"rated"``), as :class:`PreferenceDataset` has.
    """

    examples: list[RatedExample]
    n_records: int = 0
    formats: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        """Number of examples."""
        return len(self.examples)

    @cached_property
    def fingerprint(self) -> str:
        """SHA-256 hex of the examples' content, in any order (see :mod:`rewardkit.data.fingerprint`)."""
        return fingerprint(self.examples)

    def split(self, fractions: Fractions = (0.8, 0.1, 0.1), seed: int = 0) -> dict[str, RatedDataset]:
        """Split into ``{"train", "validation", "test"}`` without splitting a prompt group.

        The same group-aware, order-independent assignment as :meth:`PreferenceDataset.split`
        (:func:`rewardkit.data.split.assign_groups`): every source gets its share, and all ratings
        of one prompt land in one split.

        Raises:
            DataError: If ``fractions`` is not three non-negative numbers summing to 1.
        """
        where = assign_groups(((e.source, e.group_key) for e in self.examples), fractions, seed)
        parts = {}
        for index, name in enumerate(SPLITS):
            examples = [e for e in self.examples if where[e.group_key] == index]
            parts[name] = RatedDataset(examples, len({e.location for e in examples}), dict(self.formats))
        return parts

    def first_per_source(self, n: int | None) -> RatedDataset:
        """The first ``n`` examples of each source, in order; all of them when ``n`` is None."""
        if n is None:
            return self
        taken: dict[str, int] = {}
        kept = []
        for example in self.examples:
            if taken.get(example.source, 0) < n:
                taken[example.source] = taken.get(example.source, 0) + 1
                kept.append(example)
        return RatedDataset(kept, len({e.location for e in kept}), dict(self.formats))


def load_rated(sources: str | Path | Sequence[str | Path], limit: int | None = None) -> RatedDataset:
    """Load rated examples (prompt, response, rating) from one or more files or Hugging Face datasets.

    Args:
        sources: A path or dataset id, or a list of them (see :func:`rewardkit.data.read_records`).
        limit: Keep at most this many examples per source (the first ones). None keeps all.

    Returns:
        The examples; each names its source as ``"rated:<file name>"`` (the id for datasets).

    Raises:
        DataError: If no source is given, ``limit`` is invalid, a source cannot be read, or a
            record is not a valid rated example (the message names ``file:line`` and the field).
    """
    if isinstance(sources, str | Path):
        sources = [sources]
    if not sources:
        raise DataError("no data source given; pass a file path or a dataset id")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise DataError(f"limit must be a positive number of examples, got {limit!r}")
    examples: list[RatedExample] = []
    n_records = 0
    formats: dict[str, str] = {}
    for source in sources:
        label = Path(source).name if Path(source).is_file() else str(source)
        count = 0
        for location, record in read_records(source):
            n_records += 1
            examples.append(to_rated(location, record, f"{NAME}:{label}"))
            count += 1
            if limit is not None and count >= limit:
                break
        formats[str(source)] = NAME
    return RatedDataset(examples, n_records, formats)
