from __future__ import annotations

import pytest

from rewardkit.data import FORMATS, detect_format, render_plain
from rewardkit.data.formats import get_adapter, hh_rlhf, pandalm, qa_feedback, trl
from rewardkit.data.formats import trl_conversational as chat
from rewardkit.errors import DataError

LOC = "f.jsonl:7"


def user(text):
    return {"role": "user", "content": text}


def bot(text):
    return {"role": "assistant", "content": text}


def qa_record(preference):
    return {
        "question": "Who wrote Hamlet?",
        "passages": [["Hamlet", "a play"]],
        **{f"prediction {i}": f"answer {i}" for i in range(1, 5)},
        "preference": preference,
    }


def panda_record(a1, a2, a3, input_text="some input"):
    return {
        "idx": 0,
        "motivation_app": "Grammarly",
        "instruction": "Rewrite it.",
        "input": input_text,
        "response1": "one",
        "response2": "two",
        "annotator1": a1,
        "annotator2": a2,
        "annotator3": a3,
    }


HH = {
    "chosen": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: help?\n\nAssistant: Sure, here.",
    "rejected": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: help?\n\nAssistant: No.",
}


def test_format_names():
    assert FORMATS == ("trl", "trl-conversational", "hh-rlhf", "qa-feedback", "pandalm")


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"prompt": "p", "chosen": "c", "rejected": "r"}, "trl"),
        ({"chosen": "The sky is blue", "rejected": "The sky is red"}, "trl"),
        (
            {"chosen": [user("a"), bot("b")], "rejected": [user("a"), bot("c")]},
            "trl-conversational",
        ),
        (HH, "hh-rlhf"),
        (qa_record([1, 1, 1, 1, 1, 1]), "qa-feedback"),
        (panda_record(1, 1, 1), "pandalm"),
    ],
)
def test_detect_format(record, expected):
    assert detect_format(record) == expected


def test_detect_format_lists_what_was_expected():
    with pytest.raises(DataError, match=r"f.jsonl:7: .*matches no known format.*'text'") as info:
        detect_format({"text": "hello"}, LOC)
    for name in FORMATS:
        assert name in str(info.value)


def test_unknown_format_name_lists_known_ones():
    with pytest.raises(DataError, match="unknown format 'dpo'.*trl, trl-conversational, hh-rlhf"):
        get_adapter("dpo")


def test_trl_explicit_prompt_keeps_margin_and_subset():
    record = {"prompt": "Q?", "chosen": "A", "rejected": "B", "margin": 2, "subset": "math"}
    [pair] = trl.to_pairs(LOC, record, "trl:f.jsonl")
    assert (pair.prompt, pair.chosen, pair.rejected) == ("Q?", "A", "B")
    assert pair.margin == 2.0 and isinstance(pair.margin, float)
    assert pair.subset == "math" and pair.location == LOC and pair.source == "trl:f.jsonl"
    assert not pair.tie and pair.group is None and pair.group_key == "Q?"


def test_trl_margin_from_csv_string_and_bad_margin():
    record = {"prompt": "Q", "chosen": "A", "rejected": "B", "margin": "0.5", "subset": ""}
    [pair] = trl.to_pairs(LOC, record, "s")
    assert pair.margin == 0.5 and pair.subset is None
    with pytest.raises(DataError, match=r"f.jsonl:7: field 'margin' must be a number"):
        trl.to_pairs(LOC, {**record, "margin": "big"}, "s")


def test_trl_implicit_prompt_cuts_at_last_shared_whitespace():
    record = {"chosen": "The sky is blue today.", "rejected": "The sky is black."}
    [pair] = trl.to_pairs(LOC, record, "s")
    assert (pair.prompt, pair.chosen, pair.rejected) == ("The sky is", " blue today.", " black.")
    assert pair.prompt + pair.chosen == record["chosen"]
    [bare] = trl.to_pairs(LOC, {"chosen": "Yes", "rejected": "Yes, sure"}, "s")
    assert (bare.prompt, bare.chosen, bare.rejected) == ("", "Yes", "Yes, sure")


def test_trl_wrong_type():
    with pytest.raises(DataError, match=r"field 'chosen' must be text, got list"):
        trl.to_pairs(LOC, {"prompt": "p", "chosen": ["x"], "rejected": "y"}, "s")


def test_hh_rlhf_prompt_ends_at_last_assistant_turn():
    [pair] = hh_rlhf.to_pairs(LOC, HH, "s")
    assert pair.prompt == "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: help?\n\nAssistant:"
    assert (pair.chosen, pair.rejected) == (" Sure, here.", " No.")  # prompt + chosen is the transcript


def test_hh_rlhf_falls_back_when_final_turns_differ():
    record = {
        "chosen": "\n\nHuman: hi\n\nAssistant: a  Human: more?\n\nAssistant: b",
        "rejected": "\n\nHuman: hi\n\nAssistant: c",
    }
    [pair] = hh_rlhf.to_pairs(LOC, record, "s")
    assert pair.prompt == "\n\nHuman: hi\n\nAssistant:"
    assert (pair.chosen, pair.rejected) == (" a  Human: more?\n\nAssistant: b", " c")


def test_hh_rlhf_without_shared_assistant_turn():
    with pytest.raises(DataError, match="f.jsonl:7: .*share no conversation"):
        hh_rlhf.to_pairs(LOC, {"chosen": "\n\nHuman: a", "rejected": "\n\nHuman: b"}, "s")


def test_missing_field_names_field_and_format():
    message = (
        r"f.jsonl:7: missing field 'rejected' \(format hh-rlhf expects 'chosen' and 'rejected'\)"
    )
    with pytest.raises(DataError, match=message):
        hh_rlhf.to_pairs(LOC, {"chosen": HH["chosen"]}, "s")
    with pytest.raises(DataError, match="missing field 'prediction 3'"):
        record = qa_record([1] * 6)
        del record["prediction 3"]
        qa_feedback.to_pairs(LOC, record, "s")
    with pytest.raises(DataError, match="missing field 'annotator2'"):
        record = panda_record(1, 1, 1)
        del record["annotator2"]
        pandalm.to_pairs(LOC, record, "s")


def test_conversational_implicit_prompt_is_shared_leading_messages():
    record = {"chosen": [user("hi"), bot("hello")], "rejected": [user("hi"), bot("go away")]}
    [pair] = chat.to_pairs(LOC, record, "s")
    assert pair.prompt == "User: hi\n\nAssistant:"  # rendered with the generation prompt, as TRL does
    assert pair.prompt + pair.chosen == "User: hi\n\nAssistant: hello"
    assert pair.rejected == " go away"
    assert pair.group == "hi"


def test_conversational_explicit_prompt_and_string_prompt():
    explicit = {"prompt": [user("hi")], "chosen": [bot("hello")], "rejected": [bot("no")]}
    stringly = {
        "prompt": "hi",
        "chosen": [user("hi"), bot("hello")],
        "rejected": [user("hi"), bot("no")],
    }
    assert chat.to_pairs(LOC, explicit, "s") == chat.to_pairs(LOC, stringly, "s")


def test_conversational_custom_renderer():
    def template(messages, add_generation_prompt=False, **options):
        return "".join(f"<{m['role']}>{m['content']}</s>" for m in messages) + (
            "<assistant>" if add_generation_prompt else ""
        )

    record = {"chosen": [user("hi"), bot("yes")], "rejected": [user("hi"), bot("no")]}
    [pair] = get_adapter("trl-conversational", render_chat=template)(LOC, record, "s")
    assert (pair.prompt, pair.chosen, pair.rejected) == ("<user>hi</s><assistant>", "yes</s>", "no</s>")


def test_render_plain():
    assert render_plain([user("hi"), bot("hello")]) == "User: hi\n\nAssistant: hello"


def test_conversational_bad_messages():
    with pytest.raises(DataError, match=r"f.jsonl:7: field 'rejected' must be a list of messages"):
        chat.to_pairs(LOC, {"chosen": [user("a")], "rejected": [{"role": "user"}]}, "s")


def test_qa_feedback_six_pairs_with_ties():
    pairs = qa_feedback.to_pairs(LOC, qa_record([1, 2, 0, 1, 2, 1]), "s")
    got = [(p.chosen[-1], p.rejected[-1], p.tie) for p in pairs]
    assert got == [
        ("1", "2", False),
        ("3", "1", False),
        ("1", "4", True),
        ("2", "3", False),
        ("4", "2", False),
        ("3", "4", False),
    ]
    assert {p.prompt for p in pairs} == {"Who wrote Hamlet?\n\n"}
    assert {p.group for p in pairs} == {"Who wrote Hamlet?"}


@pytest.mark.parametrize(
    ("preference", "message"),
    [
        ([1, 2, 3, 1, 1, 1], r"f.jsonl:7: field 'preference\[2\]' is 3; expected one of 0 \(tie\)"),
        ([1, 2, 1], r"f.jsonl:7: field 'preference' must be a list of 6 labels"),
        ("121212", r"field 'preference' must be a list"),
    ],
)
def test_qa_feedback_bad_labels(preference, message):
    with pytest.raises(DataError, match=message):
        qa_feedback.to_pairs(LOC, qa_record(preference), "s")


@pytest.mark.parametrize(
    ("votes", "chosen", "tie"),
    [
        ((1, 1, 2), "one", False),
        ((2, 0, 2), "two", False),
        ((0, 0, 1), "one", True),
        ((1, 2, 0), "one", True),
    ],
)
def test_pandalm_majority(votes, chosen, tie):
    [pair] = pandalm.to_pairs(LOC, panda_record(*votes), "s")
    assert (pair.chosen, pair.tie) == (chosen, tie)
    assert pair.prompt == "Rewrite it.\n\nsome input\n\n"
    assert (pair.subset, pair.group) == ("Grammarly", "Rewrite it.")


def test_pandalm_empty_input_and_string_labels_and_bool_response():
    record = {**panda_record("2", "2", "1", input_text=""), "response1": True}
    [pair] = pandalm.to_pairs(LOC, record, "s")
    assert (pair.prompt, pair.chosen, pair.rejected) == ("Rewrite it.\n\n", "two", "True")


def test_pandalm_label_outside_convention():
    with pytest.raises(DataError, match=r"f.jsonl:7: field 'annotator2' is 5; expected one of"):
        pandalm.to_pairs(LOC, panda_record(1, 5, 1), "s")


def test_hh_rlhf_groups_by_normalised_first_human_turn():
    # Old code: no group, so a conversation and its continuation could land in different splits.
    longer = {
        "chosen": "\n\nHuman:  HI \n\nAssistant: hello\n\nHuman: help?\n\nAssistant: Sure, here.\n\nHuman: more"
                  "\n\nAssistant: ok",
        "rejected": "\n\nHuman:  HI \n\nAssistant: hello\n\nHuman: help?\n\nAssistant: Sure, here.\n\nHuman: more"
                    "\n\nAssistant: no",
    }
    [short], [long] = hh_rlhf.to_pairs(LOC, HH, "s"), hh_rlhf.to_pairs(LOC, longer, "s")
    assert short.group == long.group == "hi"
    assert short.prompt != long.prompt and short.group_key == long.group_key


def test_conversational_group_is_the_first_user_turn():
    system = {"role": "system", "content": "Be brief."}
    first = {"chosen": [system, user("Hi  there"), bot("a")], "rejected": [system, user("Hi  there"), bot("b")]}
    second = {"prompt": [user("hi there"), bot("a"), user("and?")], "chosen": [bot("c")], "rejected": [bot("d")]}
    assert chat.to_pairs(LOC, first, "s")[0].group == chat.to_pairs(LOC, second, "s")[0].group == "hi there"


@pytest.mark.parametrize("margin", [float("nan"), float("inf"), float("-inf"), "nan", "NaN", "inf", "1e999", 1e999])
def test_non_finite_margin_is_refused_with_location_and_field(margin):
    # Old code: accepted, and one NaN margin turned every weight into NaN.
    record = {"prompt": "q", "chosen": "a", "rejected": "b", "margin": margin}
    with pytest.raises(DataError, match=r"^f.jsonl:7: field 'margin' must be a finite number"):
        trl.to_pairs(LOC, record, "s")


@pytest.mark.parametrize("bad", [None, {"role": "assistant"}, {"role": "assistant", "tool_calls": "x"}])
def test_conversational_message_needs_content_or_tool_calls(bad):
    record = {"prompt": [user("q")], "chosen": [bot("a")], "rejected": [bad]}
    with pytest.raises(DataError, match=r"f.jsonl:7: field 'rejected' must be a list of messages"):
        chat.to_pairs(LOC, record, "s")


@pytest.mark.parametrize("tools", ["{not json", '{"a": 1}', [1, 2]])
def test_conversational_bad_tools_column(tools):
    record = {"prompt": [user("q")], "chosen": [bot("a")], "rejected": [bot("b")], "tools": tools}
    with pytest.raises(DataError, match=r"f.jsonl:7: field 'tools'"):
        chat.to_pairs(LOC, record, "s")


def test_render_plain_tools_and_tool_messages():
    tools = [{"type": "function", "function": {"name": "f"}}]
    messages = [user("q"), {"role": "assistant", "content": "Let me check.", "tool_calls": [
        {"type": "function", "function": {"name": "f", "arguments": {"x": 1}}}]}, {"role": "tool", "content": "42"}]
    assert render_plain(messages, tools=tools, add_generation_prompt=True) == (
        'Tools: [{"type": "function", "function": {"name": "f"}}]\n\nUser: q\n\n'
        'Assistant: Let me check.\n[tool call] {"name": "f", "arguments": {"x": 1}}\n\nTool: 42\n\nAssistant:'
    )
