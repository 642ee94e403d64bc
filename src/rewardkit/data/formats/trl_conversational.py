"""TRL conversational preference format: ``chosen``/``rejected`` are lists of messages.

A message is ``{"role": str, "content": str}``. With an explicit ``prompt`` (a list of
messages) the responses are the messages after it. Without one, or when ``prompt`` is a plain
string (UltraFeedback-binarized style, where ``chosen`` repeats the user turn), the leading
messages shared by ``chosen`` and ``rejected`` are the prompt.

Rendering to text goes through a ``render_chat`` callable (the default is :func:`render_plain`;
training code passes the tokenizer's chat template). The prompt text is ``render(prompt)`` and
each response text is what ``render(prompt + response)`` adds after it, so that
``prompt + chosen`` is exactly the rendered conversation. If a renderer does not extend the
prompt's rendering, the response is rendered on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rewardkit.data.formats import fields
from rewardkit.data.records import PreferencePair
from rewardkit.errors import DataError

NAME = "trl-conversational"
EXPECTS = ("chosen", "rejected")
DESCRIBE = (
    "trl-conversational ('chosen' and 'rejected' lists of {role, content}, optional 'prompt')"
)

Message = dict[str, str]
ChatRenderer = Callable[[list[Message]], str]


def render_plain(messages: list[Message]) -> str:
    r"""The default rendering: ``"User: hi\n\nAssistant: hello"`` (roles capitalised)."""
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)


def matches(record: dict[str, Any]) -> bool:
    """Whether ``chosen`` and ``rejected`` are lists (of messages)."""
    return isinstance(record.get("chosen"), list) and isinstance(record.get("rejected"), list)


def to_pairs(
    location: str,
    record: dict[str, Any],
    source_name: str,
    render_chat: ChatRenderer = render_plain,
) -> list[PreferencePair]:
    """Convert one conversational record into one pair of rendered texts.

    Args:
        location: The record's ``"file:line"``, for messages.
        record: The raw record.
        source_name: ``"<format>:<file name>"``.
        render_chat: Turns a list of messages into one string.

    Raises:
        DataError: If a field is missing, or a message list is not a list of
            ``{"role": str, "content": str}``.
    """
    fields.require(location, record, EXPECTS, NAME)
    chosen = _messages(location, record, "chosen")
    rejected = _messages(location, record, "rejected")
    if isinstance(record.get("prompt"), list):
        prompt = _messages(location, record, "prompt")
    else:
        shared = 0
        while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
            shared += 1
        prompt, chosen, rejected = chosen[:shared], chosen[shared:], rejected[shared:]
    prompt_text = render_chat(prompt) if prompt else ""
    pair = PreferencePair(
        prompt=prompt_text,
        chosen=_response_text(prompt, prompt_text, chosen, render_chat),
        rejected=_response_text(prompt, prompt_text, rejected, render_chat),
        source=source_name,
        margin=fields.optional_float(location, record, "margin"),
        subset=fields.optional_text(record, "subset"),
        location=location,
    )
    return [pair]


def _response_text(
    prompt: list[Message], prompt_text: str, response: list[Message], render: ChatRenderer
) -> str:
    full = render(prompt + response)
    return full[len(prompt_text) :] if full.startswith(prompt_text) else render(response)


def _messages(location: str, record: dict[str, Any], name: str) -> list[Message]:
    value = record[name]
    ok = isinstance(value, list) and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
        for m in value
    )
    if not ok:
        raise DataError(
            f"{location}: field '{name}' must be a list of messages "
            f"{{'role': str, 'content': str}}, got {value!r:.80}"
        )
    return [{"role": m["role"], "content": m["content"]} for m in value]
