"""Conversational data through real chat templates: the scored text is the one TRL scores.

A tiny word-level tokenizer is built here and given a Phi-3 style template (an end token closes
a conversation rendered without a generation prompt) and a tool-calling template; no downloads.
"""

from __future__ import annotations

import json

import pytest
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace
from transformers import PreTrainedTokenizerFast

from rewardkit.data import chat_template_renderer, load_pairs
from rewardkit.errors import DataError

PHI3 = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"
)

TOOLS_TEMPLATE = (
    "{% if tools %}{{ '<|tools|>' + (tools | tojson) + '<|end|>\n' }}{% endif %}"
    "{% for m in messages %}"
    "{% if m.tool_calls %}{{ '<|assistant|>' }}"
    "{% for call in m.tool_calls %}{{ '<tool_call>' + (call.function | tojson) + '</tool_call>' }}{% endfor %}"
    "{{ '<|end|>\n' }}"
    "{% else %}{{ '<|' + m.role + '|>' + m.content + '<|end|>\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                           "parameters": {"type": "object",
                                                          "properties": {"city": {"type": "string"}}}}}]


def tiny_tokenizer(template: str) -> PreTrainedTokenizerFast:
    vocab = {"[UNK]": 0, "<|endoftext|>": 1}
    backend = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", eos_token="<|endoftext|>",
                                   chat_template=template)


def user(text):
    return {"role": "user", "content": text}


def bot(text):
    return {"role": "assistant", "content": text}


def call(city, content=None):
    message = {"role": "assistant", "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": city}}}]}
    if content is not None:
        message["content"] = content
    return message


def load_one(write, record, tokenizer):
    [pair] = load_pairs(write("chat.jsonl", [record]), render_chat=chat_template_renderer(lambda: tokenizer)).pairs
    return pair


def trl_texts(record, tokenizer):
    """TRL's prompt/chosen/rejected (apply_chat_template) and the texts its RewardTrainer tokenizes."""
    data_utils = pytest.importorskip("trl.data_utils")
    tools = record.get("tools")
    tools = json.loads(tools) if isinstance(tools, str) else tools
    example = data_utils.maybe_extract_prompt({k: record[k] for k in ("prompt", "chosen", "rejected") if k in record})
    split = data_utils.apply_chat_template(example, tokenizer, tools=tools)
    scored = [tokenizer.apply_chat_template(example["prompt"] + example[k], tools=tools, tokenize=False)
              for k in ("chosen", "rejected")]
    return split, scored


@pytest.mark.parametrize("explicit_prompt", [True, False])
def test_phi3_end_token_is_not_put_between_prompt_and_response(write, explicit_prompt):
    # Old code: the prompt rendered alone ended in "<|end|>\n<|endoftext|>", and the response was
    # rendered on its own, so prompt + chosen held a stray end token in the middle.
    tokenizer = tiny_tokenizer(PHI3)
    if explicit_prompt:
        record = {"prompt": [user("Is the sky blue?")], "chosen": [bot("Yes.")], "rejected": [bot("No.")]}
    else:
        record = {"chosen": [user("Is the sky blue?"), bot("Yes.")], "rejected": [user("Is the sky blue?"), bot("No.")]}
    pair = load_one(write, record, tokenizer)
    assert pair.prompt == "<|user|>\nIs the sky blue?<|end|>\n<|assistant|>\n"
    assert pair.chosen == "Yes.<|end|>\n<|endoftext|>"
    assert pair.rejected == "No.<|end|>\n<|endoftext|>"
    assert (pair.prompt + pair.chosen).count("<|endoftext|>") == 1
    split, scored = trl_texts(record, tokenizer)
    assert (pair.prompt, pair.chosen, pair.rejected) == (split["prompt"], split["chosen"], split["rejected"])
    assert [pair.prompt + pair.chosen, pair.prompt + pair.rejected] == scored


def test_tool_calls_tool_results_and_tools_column_go_through_the_template(write):
    # Old code: an assistant message with tool_calls and no content was refused.
    tokenizer = tiny_tokenizer(TOOLS_TEMPLATE)
    record = {
        "prompt": [user("Weather in Paris?")],
        "chosen": [call("Paris"), {"role": "tool", "tool_call_id": "1", "content": "sunny"}, bot("Sunny.")],
        "rejected": [call("London"), {"role": "tool", "tool_call_id": "1", "content": "rain"}, bot("Rain.")],
        "tools": json.dumps(TOOLS),
    }
    pair = load_one(write, record, tokenizer)
    assert pair.prompt.startswith("<|tools|>[{") and '"get_weather"' in pair.prompt
    assert pair.prompt.endswith("<|user|>Weather in Paris?<|end|>\n<|assistant|>")
    assert '"city": "Paris"' in pair.chosen and '"city": "London"' in pair.rejected
    assert "<|tool|>sunny<|end|>" in pair.chosen
    split, scored = trl_texts(record, tokenizer)
    assert (pair.prompt, pair.chosen, pair.rejected) == (split["prompt"], split["chosen"], split["rejected"])
    assert [pair.prompt + pair.chosen, pair.prompt + pair.rejected] == scored


@pytest.mark.parametrize("content", [None, ""])
def test_pair_differing_only_in_its_tool_call_loads_as_two_texts(write, content):
    # Old code: with content "" the calls were dropped and both texts were identical.
    record = {"prompt": [user("Weather in Paris?")], "chosen": [call("Paris", content)],
              "rejected": [call("London", content)]}
    for tokenizer in (tiny_tokenizer(TOOLS_TEMPLATE), tiny_tokenizer(None)):  # template, and plain rendering
        pair = load_one(write, record, tokenizer)
        assert pair.chosen != pair.rejected and "Paris" in pair.chosen and "London" in pair.rejected
    assert load_one(write, record, tiny_tokenizer(None)).chosen == (
        ' [tool call] {"name": "get_weather", "arguments": {"city": "Paris"}}'
    )


def test_template_error_names_the_record(write):
    tokenizer = tiny_tokenizer("{{ raise_exception('roles must alternate') }}")
    record = {"chosen": [user("a"), bot("b")], "rejected": [user("a"), bot("c")]}
    with pytest.raises(DataError, match=r"chat.jsonl:1: the chat template cannot render .*roles must alternate"):
        load_one(write, record, tokenizer)


def test_tokenizer_is_loaded_only_for_conversations(write):
    def never():
        raise AssertionError("the tokenizer was loaded for data without conversations")

    data = load_pairs(write("plain.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "b"}]),
                      render_chat=chat_template_renderer(never))
    assert len(data.pairs) == 1
