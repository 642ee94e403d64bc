r"""Anthropic HH-RLHF transcripts: ``chosen`` and ``rejected`` are whole conversations.

Each transcript reads ``"\n\nHuman: ...\n\nAssistant: ..."``. The prompt is the chosen
transcript up to and including its last ``"\n\nAssistant:"`` marker, provided the rejected
transcript starts with the same text; otherwise (a few records whose final turns differ in
length) it is the common prefix of both cut at its last ``"\n\nAssistant:"``. The responses
are the rest of each transcript, leading space included, so a prompt always ends in
``"Assistant:"`` and ``prompt + chosen`` is the chosen transcript again.

``group`` is the first human turn, normalised (:func:`~rewardkit.data.records.first_turn_group`):
a later record's prompt is often an earlier record's conversation plus more turns, and many
records open with the same request, so splitting by the whole prompt would leak
conversations (even a test pair's response, inside a training prompt) across the split.
"""

from __future__ import annotations

import os
from typing import Any

from rewardkit.data.formats import fields
from rewardkit.data.records import PreferencePair, first_turn_group
from rewardkit.errors import DataError

NAME = "hh-rlhf"
EXPECTS = ("chosen", "rejected")
DESCRIBE = "hh-rlhf ('chosen' and 'rejected' transcripts with '\\n\\nHuman:' turns)"
HUMAN = "\n\nHuman:"
ASSISTANT = "\n\nAssistant:"


def matches(record: dict[str, Any]) -> bool:
    r"""Whether a record without 'prompt' holds hh-rlhf transcripts (a ``"\n\nHuman:"`` turn)."""
    chosen = record.get("chosen")
    return "prompt" not in record and isinstance(chosen, str) and HUMAN in chosen


def to_pairs(location: str, record: dict[str, Any], source_name: str) -> list[PreferencePair]:
    r"""Convert one transcript pair into one pair whose prompt ends with ``"Assistant:"``.

    Raises:
        DataError: If a field is missing or not a string, or the transcripts share no
            conversation up to an ``"\n\nAssistant:"`` marker.
    """
    fields.require(location, record, EXPECTS, NAME)
    chosen = fields.text(location, record, "chosen")
    rejected = fields.text(location, record, "rejected")
    end = chosen.rfind(ASSISTANT) + len(ASSISTANT)
    if end < len(ASSISTANT) or not rejected.startswith(chosen[:end]):
        end = os.path.commonprefix([chosen, rejected]).rfind(ASSISTANT) + len(ASSISTANT)
    if end < len(ASSISTANT):
        raise DataError(
            f"{location}: 'chosen' and 'rejected' share no conversation ending in an "
            "'\\n\\nAssistant:' turn; hh-rlhf transcripts look like "
            "'\\n\\nHuman: ...\\n\\nAssistant: ...' (use --format trl for other text)"
        )
    pair = PreferencePair(
        prompt=chosen[:end],
        chosen=chosen[end:],
        rejected=rejected[end:],
        source=source_name,
        group=first_turn_group(first_human_turn(chosen)),
        location=location,
    )
    return [pair]


def first_human_turn(transcript: str) -> str:
    r"""The text of the first ``"\n\nHuman:"`` turn, up to the next ``"\n\nAssistant:"`` (or the end)."""
    start = transcript.find(HUMAN)
    opening = transcript[start + len(HUMAN) :] if start >= 0 else transcript
    return opening.split(ASSISTANT, 1)[0]
