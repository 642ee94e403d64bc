"""TRL standard preference format: ``prompt`` (optional), ``chosen``, ``rejected`` as strings.

With an explicit ``prompt`` the record is taken as is, keeping ``margin`` (a number) and
``subset`` when present (RewardBench style). Without one (TRL's implicit prompt) the prompt is
the longest common prefix of ``chosen`` and ``rejected`` cut back to its last whitespace, so that
no word is split; the responses are the rest, so ``prompt + chosen`` is ``chosen`` again.
"""

from __future__ import annotations

import os
from typing import Any

from rewardkit.data.formats import fields
from rewardkit.data.records import PreferencePair

NAME = "trl"
EXPECTS = ("chosen", "rejected")
DESCRIBE = "trl ('chosen' and 'rejected' strings, optional 'prompt', 'margin', 'subset')"


def matches(record: dict[str, Any]) -> bool:
    """Whether ``chosen`` and ``rejected`` are strings."""
    return isinstance(record.get("chosen"), str) and isinstance(record.get("rejected"), str)


def to_pairs(location: str, record: dict[str, Any], source_name: str) -> list[PreferencePair]:
    """Convert one TRL standard record into one pair.

    Raises:
        DataError: If 'chosen' or 'rejected' is missing or not a string, 'prompt' is not a
            string, or 'margin' is not a number.
    """
    fields.require(location, record, EXPECTS, NAME)
    chosen = fields.text(location, record, "chosen")
    rejected = fields.text(location, record, "rejected")
    if record.get("prompt") is not None:
        prompt = fields.text(location, record, "prompt")
    else:
        prompt, chosen, rejected = split_common_prefix(chosen, rejected)
    pair = PreferencePair(
        prompt=prompt,
        chosen=chosen,
        rejected=rejected,
        source=source_name,
        margin=fields.optional_float(location, record, "margin"),
        subset=fields.optional_text(record, "subset"),
        location=location,
    )
    return [pair]


def split_common_prefix(chosen: str, rejected: str) -> tuple[str, str, str]:
    """Split two texts into (prompt, chosen, rejected) at the last whitespace they share.

    Example: ``("The sky is blue.", "The sky is grey.")`` -> ``("The sky is", " blue.",
    " grey.")``. Texts sharing no whitespace-delimited prefix give an empty prompt.
    """
    prefix = os.path.commonprefix([chosen, rejected])
    cut = next((i for i in range(len(prefix) - 1, -1, -1) if prefix[i].isspace()), -1)
    if cut < 0:
        return "", chosen, rejected
    return prefix[:cut], chosen[cut:], rejected[cut:]
