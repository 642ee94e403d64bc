"""Format adapters: one module per preference format, and the registry that picks one.

Every adapter module has ``NAME`` (the ``--format`` name), ``EXPECTS`` (required fields),
``DESCRIBE`` (one line for messages) and
``to_pairs(location, record, source_name) -> list[PreferencePair]``: one raw record gives zero
or more pairs, ties included as pairs with ``tie=True``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from types import ModuleType
from typing import Any

from rewardkit.data.formats import hh_rlhf, pandalm, qa_feedback, trl, trl_conversational
from rewardkit.data.formats.trl_conversational import ChatRenderer, chat_template_renderer, render_plain
from rewardkit.data.records import PreferencePair
from rewardkit.errors import DataError

ToPairs = Callable[[str, dict[str, Any], str], list[PreferencePair]]

_ADAPTERS: dict[str, ModuleType] = {
    module.NAME: module for module in (trl, trl_conversational, hh_rlhf, qa_feedback, pandalm)
}
FORMATS: tuple[str, ...] = tuple(_ADAPTERS)
"""The format names accepted by ``load_pairs(format=...)`` and ``--format``."""

__all__ = [
    "FORMATS",
    "ChatRenderer",
    "ToPairs",
    "chat_template_renderer",
    "detect_format",
    "get_adapter",
    "render_plain",
]


def detect_format(first_record: dict[str, Any], location: str = "record") -> str:
    r"""Name the format of a data source from its first record.

    Checked in order: qa-feedback, pandalm, trl-conversational (message lists), hh-rlhf
    (``"\n\nHuman:"`` transcripts without a prompt), trl (strings, prompt optional). The
    first record decides; later records that do not fit fail with the record's location.

    Args:
        first_record: The source's first raw record.
        location: Where the record is, for the message.

    Returns:
        One of :data:`FORMATS`.

    Raises:
        DataError: If the record matches no format; the message lists what each expects.
    """
    for module in (qa_feedback, pandalm, trl_conversational, hh_rlhf, trl):
        if module.matches(first_record):
            return str(module.NAME)
    expected = "; ".join(module.DESCRIBE for module in _ADAPTERS.values())
    found = ", ".join(f"'{name}'" for name in first_record) or "none"
    raise DataError(
        f"{location}: the first record matches no known format (fields: {found}). "
        f"Expected one of: {expected}. Rename the fields, or pass the format explicitly"
    )


def get_adapter(name: str, render_chat: ChatRenderer | None = None) -> ToPairs:
    """Return the ``to_pairs`` function of format ``name``.

    Args:
        name: One of :data:`FORMATS`.
        render_chat: How conversational formats render a list of messages to text
            (default :func:`render_plain`); ignored by text formats.

    Raises:
        DataError: If ``name`` is not a known format; the message lists the known ones.
    """
    if name not in _ADAPTERS:
        raise DataError(f"unknown format '{name}'; choose one of: {', '.join(FORMATS)}")
    if name == trl_conversational.NAME and render_chat is not None:
        return partial(trl_conversational.to_pairs, render_chat=render_chat)
    to_pairs: ToPairs = _ADAPTERS[name].to_pairs
    return to_pairs
