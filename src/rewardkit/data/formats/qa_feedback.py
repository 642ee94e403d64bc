r"""FineGrainedRLHF qa-feedback: four answers to one question, ranked pairwise.

A record holds ``question``, ``passages``, ``prediction 1`` .. ``prediction 4`` and
``preference``: six labels for the answer pairs (1,2), (1,3), (1,4), (2,3), (2,4), (3,4), in that
order, where 1 = the first of the pair is preferred, 2 = the second, 0 = tie. Each record gives
six pairs (ties included, with ``tie=True`` and ``chosen`` = the first answer).

The prompt is the question alone, followed by ``"\n\n"``: the retrieved ``passages`` are not
included (they run to thousands of characters and would crowd the answers out of a short
context). ``group`` is the question, so a split keeps the four answers of a question together.
"""

from __future__ import annotations

from typing import Any

from rewardkit.data.formats import fields
from rewardkit.data.records import PreferencePair
from rewardkit.errors import DataError

NAME = "qa-feedback"
PAIRS = ((1, 2), (1, 3), (1, 4), (2, 3), (2, 4), (3, 4))
EXPECTS = ("question", "prediction 1", "prediction 2", "prediction 3", "prediction 4", "preference")
DESCRIBE = "qa-feedback ('question', 'prediction 1'..'prediction 4', 'preference')"
LABELS = {0: "tie", 1: "first of the pair preferred", 2: "second of the pair preferred"}


def matches(record: dict[str, Any]) -> bool:
    """Whether the record has a question, ranked predictions and preference labels."""
    return all(name in record for name in ("question", "prediction 1", "preference"))


def to_pairs(location: str, record: dict[str, Any], source_name: str) -> list[PreferencePair]:
    """Convert one question into six pairs (ties marked ``tie=True``).

    Raises:
        DataError: If a field is missing or not text, or ``preference`` is not a list of six
            labels in {0, 1, 2}.
    """
    fields.require(location, record, EXPECTS, NAME)
    question = fields.text(location, record, "question")
    answers = {i: fields.text(location, record, f"prediction {i}") for i in range(1, 5)}
    labels = record["preference"]
    if not isinstance(labels, list) or len(labels) != len(PAIRS):
        raise DataError(
            f"{location}: field 'preference' must be a list of 6 labels for the answer pairs "
            f"(1,2), (1,3), (1,4), (2,3), (2,4), (3,4), got {labels!r:.60}"
        )
    pairs = []
    for index, ((first, second), raw) in enumerate(zip(PAIRS, labels, strict=True)):
        value = fields.label(location, f"preference[{index}]", raw, LABELS)
        chosen, rejected = (second, first) if value == 2 else (first, second)
        pairs.append(
            PreferencePair(
                prompt=question + "\n\n",
                chosen=answers[chosen],
                rejected=answers[rejected],
                source=source_name,
                tie=value == 0,
                group=question,
                location=location,
            )
        )
    return pairs
