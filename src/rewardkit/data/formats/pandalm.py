r"""PandaLM test set: two responses to an instruction, judged by three annotators.

Each ``annotator1``..``annotator3`` says 1 (``response1`` better), 2 (``response2`` better) or 0
(tie). The majority label is the preference; a majority of 0, or no majority (1, 2, 0), is a tie.
The prompt is ``instruction``, followed by ``"\n\n"`` and ``input`` when ``input`` is not empty,
and ends in ``"\n\n"`` so that ``prompt + response`` reads naturally.
``subset`` is ``motivation_app`` and ``group`` the instruction (about 170 distinct ones), so a
split keeps every response to an instruction together. A response stored as a JSON bool or
number (six records of testset-v1 hold ``true`` for the answer "True") is read as ``str(value)``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from rewardkit.data.formats import fields
from rewardkit.data.records import PreferencePair

NAME = "pandalm"
ANNOTATORS = ("annotator1", "annotator2", "annotator3")
EXPECTS = ("instruction", "response1", "response2", *ANNOTATORS)
DESCRIBE = "pandalm ('instruction', 'input', 'response1', 'response2', 'annotator1'..'annotator3')"
LABELS = {0: "tie", 1: "response1 better", 2: "response2 better"}


def matches(record: dict[str, Any]) -> bool:
    """Whether the record has two responses and annotator labels."""
    return all(name in record for name in ("response1", "response2", "annotator1"))


def to_pairs(location: str, record: dict[str, Any], source_name: str) -> list[PreferencePair]:
    """Convert one judged record into one pair (``tie=True`` without a majority preference).

    Raises:
        DataError: If a field is missing or not text, or an annotator label is not 0, 1 or 2.
    """
    fields.require(location, record, EXPECTS, NAME)
    instruction = fields.text(location, record, "instruction")
    extra = fields.optional_text(record, "input")
    prompt = (f"{instruction}\n\n{extra}" if extra and extra.strip() else instruction) + "\n\n"
    votes = Counter(fields.label(location, name, record[name], LABELS) for name in ANNOTATORS)
    label, count = votes.most_common(1)[0]
    winner = label if count >= 2 else 0
    first = fields.text(location, record, "response1", scalars=True)
    second = fields.text(location, record, "response2", scalars=True)
    pair = PreferencePair(
        prompt=prompt,
        chosen=second if winner == 2 else first,
        rejected=first if winner == 2 else second,
        source=source_name,
        subset=fields.optional_text(record, "motivation_app"),
        tie=winner == 0,
        group=instruction,
        location=location,
    )
    return [pair]
