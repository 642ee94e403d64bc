"""The truncation policy: every pair is kept, the prompt gives way first.

TRL's ``RewardTrainer`` drops pairs longer than ``max_length``; on hh-rlhf harmless at 256
tokens that is about one pair in five. We keep them all instead:

1. the prompt is trimmed from the **left** (the oldest turns go first, the turn being
   answered stays);
2. only if the response alone still does not fit, the response is trimmed from the right.

Every trim is counted, so training reports how many prompts and responses it cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class SpecialTokens:
    """The special tokens a tokenizer puts around one text, e.g. ``[CLS] … [SEP]`` for BERT."""

    prefix: tuple[int, ...]
    suffix: tuple[int, ...]

    @classmethod
    def from_tokenizer(cls, tokenizer) -> SpecialTokens:  # noqa: ANN001 (HF tokenizer)
        """Find them by tokenizing one word with and without special tokens."""
        bare = tokenizer("a", add_special_tokens=False)["input_ids"]
        full = tokenizer("a")["input_ids"]
        for start in range(len(full) - len(bare) + 1):
            if full[start : start + len(bare)] == bare:
                return cls(tuple(full[:start]), tuple(full[start + len(bare) :]))
        return cls((), ())

    def __len__(self) -> int:
        return len(self.prefix) + len(self.suffix)


@dataclass(frozen=True)
class Encoded:
    """One encoded text.

    Attributes:
        input_ids: Token ids with special tokens, ``len(input_ids) <= max_length``.
        prompt_truncated: Some prompt tokens were cut (from the left).
        response_truncated: Some response tokens were cut (from the right).
    """

    input_ids: list[int]
    prompt_truncated: bool
    response_truncated: bool


def truncate_pair(
    prompt_ids: Sequence[int],
    response_ids: Sequence[int],
    special: SpecialTokens,
    max_length: int,
) -> Encoded:
    """Join prompt and response ids inside the special tokens, within ``max_length``.

    Raises:
        ValueError: ``max_length`` leaves no room for a single content token.
    """
    budget = max_length - len(special)
    if budget < 1:
        raise ValueError(f"max_length={max_length} leaves no room next to {len(special)} special tokens")
    keep_prompt = min(len(prompt_ids), max(0, budget - len(response_ids)))
    keep_response = min(len(response_ids), budget - keep_prompt)
    prompt_part = list(prompt_ids[len(prompt_ids) - keep_prompt :]) if keep_prompt else []
    ids = [*special.prefix, *prompt_part, *response_ids[:keep_response], *special.suffix]
    return Encoded(ids, keep_prompt < len(prompt_ids), keep_response < len(response_ids))
