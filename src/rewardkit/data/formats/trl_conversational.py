r"""TRL conversational preference format: ``chosen``/``rejected`` are lists of messages.

A message is ``{"role": str, "content": str}``; an assistant message may instead (or as well)
carry ``tool_calls`` (``[{"type": "function", "function": {"name", "arguments"}}]``) with no
``content``, and ``tool`` messages return a call's result. Other keys (``tool_call_id``,
``name``, ...) are passed on to the chat template unchanged. An optional ``tools`` column (a
list of JSON schemas, or that list as a JSON string) names the functions the assistant may
call; it is passed to the chat template, as TRL does.

With an explicit ``prompt`` (a list of messages) the responses are the messages after it.
Without one, or when ``prompt`` is a plain string (UltraFeedback-binarized style, where
``chosen`` repeats the user turn), the leading messages shared by ``chosen`` and ``rejected``
are the prompt (TRL's ``extract_prompt``).

Training and evaluation render with the model's chat template through
:func:`chat_template_renderer`, or with :func:`render_plain` when the tokenizer has none.
Rendering follows TRL's ``apply_chat_template`` (``trl/data_utils.py``): the scored texts are
``render(prompt + chosen)`` and ``render(prompt + rejected)``, whole conversations rendered
without a generation prompt, which is what TRL's ``RewardTrainer`` tokenizes. The prompt text
is the longest common prefix of those two and of the prompt rendered alone with the generation
prompt (or continuing a final assistant message). So ``prompt + chosen`` is exactly TRL's text,
also for templates that close a conversation with an end token when no generation prompt is
asked for (Phi-3's ``<|end|>\n<|endoftext|>``), which must not land between prompt and response.

``group`` is the first user turn, normalised (:func:`~rewardkit.data.records.first_turn_group`),
as for hh-rlhf transcripts.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from typing import Any, Protocol

from rewardkit.data.formats import fields
from rewardkit.data.records import PreferencePair, first_turn_group
from rewardkit.errors import DataError, RewardkitError

NAME = "trl-conversational"
EXPECTS = ("chosen", "rejected")
DESCRIBE = (
    "trl-conversational ('chosen' and 'rejected' lists of {role, content} or {role, tool_calls}, "
    "optional 'prompt', 'tools')"
)

Message = dict[str, Any]
Tools = list[dict[str, Any]]


class ChatRenderer(Protocol):
    """Renders messages to text, with the keywords of ``tokenizer.apply_chat_template``."""

    def __call__(
        self,
        messages: list[Message],
        *,
        tools: Tools | None = None,
        add_generation_prompt: bool = False,
        continue_final_message: bool = False,
    ) -> str:
        """Return the text of ``messages`` (plus the generation prompt when asked)."""
        ...


def render_plain(
    messages: list[Message],
    *,
    tools: Tools | None = None,
    add_generation_prompt: bool = False,
    continue_final_message: bool = False,
) -> str:
    r"""The rendering for tokenizers without a chat template: ``"User: hi\n\nAssistant: hello"``.

    Roles are capitalised; each tool call is a line ``[tool call] {"name": ..., "arguments": ...}``
    after the message's content; ``tools`` come first as ``"Tools: [...]"`` (JSON); the
    generation prompt is a final ``"\n\nAssistant:"``. ``continue_final_message`` changes
    nothing: a plain turn has no closing token to leave out.
    """
    turns = [f"Tools: {json.dumps(tools, ensure_ascii=False)}"] if tools else []
    for message in messages:
        lines = [message["content"]] if message.get("content") else []
        for call in message.get("tool_calls") or []:
            lines.append(f"[tool call] {json.dumps(call.get('function', call), ensure_ascii=False)}")
        body = "\n".join(lines)
        turns.append(f"{message['role'].capitalize()}: {body}")
    if add_generation_prompt:
        turns.append("Assistant:")
    return "\n\n".join(turns)


def chat_template_renderer(get_tokenizer: Callable[[], Any]) -> ChatRenderer:
    """Render with a Hugging Face tokenizer's chat template, or :func:`render_plain` when it has none.

    Args:
        get_tokenizer: Returns the tokenizer; called once, on the first conversation, so that
            data without conversations never loads it (see
            :func:`rewardkit.models.text.load_tokenizer`).

    Returns:
        A :class:`ChatRenderer` passing ``tools``, ``add_generation_prompt`` and
        ``continue_final_message`` on to ``tokenizer.apply_chat_template(..., tokenize=False)``.
    """
    tokenizer = functools.cache(get_tokenizer)

    def render(messages: list[Message], **options: Any) -> str:
        template_owner = tokenizer()
        if not getattr(template_owner, "chat_template", None):
            return render_plain(messages, **options)
        return str(template_owner.apply_chat_template(messages, tokenize=False, **options))

    return render


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
        render_chat: Turns a list of messages into one string (see :class:`ChatRenderer`).

    Raises:
        DataError: If a field is missing, a message list is not a list of messages with a
            string ``role`` and a string ``content`` or a list of ``tool_calls``, ``tools``
            is not a list of objects, or the chat template cannot render the conversation.
    """
    fields.require(location, record, EXPECTS, NAME)
    chosen = _messages(location, record, "chosen")
    rejected = _messages(location, record, "rejected")
    tools = _tools(location, record)
    if isinstance(record.get("prompt"), list):
        prompt = _messages(location, record, "prompt")
    else:
        shared = 0
        while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
            shared += 1
        prompt, chosen, rejected = chosen[:shared], chosen[shared:], rejected[shared:]
    try:
        texts = render_pair(prompt, chosen, rejected, tools, render_chat)
    except RewardkitError:  # e.g. the tokenizer behind the renderer cannot be loaded
        raise
    except Exception as error:  # a template raises what it likes (jinja2, ValueError, TypeError, ...)
        raise DataError(
            f"{location}: the chat template cannot render this conversation "
            f"({type(error).__name__}: {error})"
        ) from None
    first_user = next((m.get("content") for m in prompt + chosen if m["role"] == "user"), None)
    pair = PreferencePair(
        prompt=texts[0],
        chosen=texts[1],
        rejected=texts[2],
        source=source_name,
        margin=fields.optional_float(location, record, "margin"),
        subset=fields.optional_text(record, "subset"),
        group=first_turn_group(first_user) if isinstance(first_user, str) else None,
        location=location,
    )
    return [pair]


def render_pair(
    prompt: list[Message],
    chosen: list[Message],
    rejected: list[Message],
    tools: Tools | None,
    render: ChatRenderer,
) -> tuple[str, str, str]:
    """``(prompt, chosen, rejected)`` texts as TRL's ``apply_chat_template`` gives them.

    ``prompt + chosen == render(prompt_messages + chosen_messages, tools=tools)``, and the same
    for ``rejected``; the prompt text is their common prefix with the prompt rendered alone
    (generation prompt added after a ``user`` or ``tool`` turn, final assistant message
    continued after an ``assistant`` turn).
    """
    full_chosen = render(prompt + chosen, tools=tools)
    full_rejected = render(prompt + rejected, tools=tools)
    if not prompt:
        return "", full_chosen, full_rejected
    last = prompt[-1]["role"]
    alone = render(
        prompt,
        tools=tools,
        add_generation_prompt=last in ("user", "tool"),
        continue_final_message=last == "assistant",
    )
    cut = len(os.path.commonprefix([alone, full_chosen, full_rejected]))
    return full_chosen[:cut], full_chosen[cut:], full_rejected[cut:]


def _messages(location: str, record: dict[str, Any], name: str) -> list[Message]:
    value = record[name]
    ok = isinstance(value, list) and all(_is_message(m) for m in value)
    if not ok:
        raise DataError(
            f"{location}: field '{name}' must be a list of messages {{'role': str, 'content': str}} "
            f"(an assistant message may have 'tool_calls' instead of 'content'), got {value!r:.80}"
        )
    # parquet gives every message every key, absent ones as None; templates test "is defined"
    return [{key: item for key, item in m.items() if item is not None} for m in value]


def _is_message(message: Any) -> bool:
    if not isinstance(message, dict) or not isinstance(message.get("role"), str):
        return False
    calls = message.get("tool_calls")
    if calls is not None and not (isinstance(calls, list) and all(isinstance(c, dict) for c in calls)):
        return False
    content = message.get("content")
    return isinstance(content, str) or (content is None and bool(calls))


def _tools(location: str, record: dict[str, Any]) -> Tools | None:
    """The ``tools`` column as a list of schemas (a JSON string is parsed), None when absent or empty."""
    value = record.get("tools")
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else None
        except json.JSONDecodeError as error:
            raise DataError(f"{location}: field 'tools' is not valid JSON ({error})") from None
    if not value:  # TRL: `tools or None`, some templates render tool boilerplate for []
        return None
    if not isinstance(value, list) or not all(isinstance(tool, dict) for tool in value):
        raise DataError(
            f"{location}: field 'tools' must be a list of function schemas (JSON objects), got {value!r:.80}"
        )
    return value
