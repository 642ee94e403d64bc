"""The normalised record types every adapter produces and every trainer consumes: pairs and rated examples."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PreferencePair:
    """One human preference between two responses to the same prompt.

    The text a reward model scores is exactly ``prompt + chosen`` (or ``prompt + rejected``),
    TRL's convention: every adapter keeps the separator between prompt and response (hh-rlhf
    and TRL implicit-prompt responses keep their leading space; qa-feedback and PandaLM prompts
    end in a blank line), so the concatenation reads as the original text. The adapters in
    :mod:`rewardkit.data.formats` document how each format fills every field.

    Attributes:
        prompt: The context both responses answer (may be empty for implicit-prompt data
            whose responses share no prefix).
        chosen: The preferred response. For a tie, simply the first response in source order.
        rejected: The other response.
        source: Where the pair came from, as ``"<dataset>:<file name>"``, e.g.
            ``"hh-rlhf:hh-rlhf-harmless-base-test.jsonl.gz"``.
        margin: Optional preference strength added to the Bradley-Terry margin
            (``-log σ(r_chosen - r_rejected - margin)``), in reward units.
        subset: Optional category for per-subset evaluation tables (e.g. PandaLM's
            ``motivation_app``, RewardBench's ``subset``).
        tie: True when annotators had no preference. Ties are dropped from training
            and reported separately in evaluation.
        group: Key for group-aware splitting; pairs with the same group always land in
            the same split. Defaults to the prompt (see :attr:`group_key`). Multi-turn
            transcripts (hh-rlhf, TRL conversational) set it to their first human turn
            (:func:`first_turn_group`), since their later records extend earlier conversations.
        location: ``"file:line"`` or ``"file[index]"`` of the source record, for messages.
    """

    prompt: str
    chosen: str
    rejected: str
    source: str
    margin: float | None = None
    subset: str | None = None
    tie: bool = False
    group: str | None = None
    location: str = field(default="", compare=False)

    @property
    def group_key(self) -> str:
        """The key that keeps related pairs in one split: :attr:`group` or else the prompt."""
        return self.group if self.group is not None else self.prompt

    @property
    def identical(self) -> bool:
        """Whether chosen and rejected are the same text: no preference, so loaded as a tie."""
        return self.chosen == self.rejected

    @property
    def has_empty_response(self) -> bool:
        """Whether chosen or rejected is empty or whitespace only (kept: real data, but counted)."""
        return not self.chosen.strip() or not self.rejected.strip()


@dataclass(frozen=True)
class RatedExample:
    """One response to a prompt with a scalar rating, for MSE regression (the seed system's second objective).

    As with :class:`PreferencePair`, the text a reward model scores is exactly ``prompt + response``.

    Attributes:
        prompt: The context the response answers (may be empty).
        response: The rated response.
        rating: The rating, a finite number in the data's own units (e.g. 1 to 10); regression
            targets it directly, or its z-score with ``--standardize-ratings``.
        source: Where the example came from, as ``"rated:<file name>"``.
        subset: Optional category (kept for per-subset use, and fingerprinted).
        group: Key for group-aware splitting; defaults to the prompt (see :attr:`group_key`),
            so that ratings of responses to one prompt never cross splits.
        location: ``"file:line"`` or ``"file[index]"`` of the source record, for messages.
    """

    prompt: str
    response: str
    rating: float
    source: str
    subset: str | None = None
    group: str | None = None
    location: str = field(default="", compare=False)

    @property
    def group_key(self) -> str:
        """The key that keeps related examples in one split: :attr:`group` or else the prompt."""
        return self.group if self.group is not None else self.prompt


def first_turn_group(turn: str) -> str:
    """The group key of a conversation: its first human turn, whitespace collapsed and case-folded.

    In hh-rlhf a later record's prompt is often an earlier record's conversation plus more
    turns, and many records open with the same question; grouping by the whole prompt would
    put them in different splits, so that a test response can appear inside a training prompt.
    Keying by the normalised opening turn keeps such conversations together.

    Example: ``first_turn_group("  How do I  bake bread? ")`` -> ``"how do i bake bread?"``.
    """
    return " ".join(turn.split()).casefold()
