"""Rated examples (prompt, response, rating): readers, aliases, validation errors, fingerprint, split."""

from __future__ import annotations

import pytest

from rewardkit.data import RatedExample, fingerprint, load_pairs, load_rated
from rewardkit.errors import DataError

ROWS = [
    {"prompt": "Q1", "response": " good", "rating": 4.5, "subset": ""},
    {"prompt": "Q1", "response": " bad", "rating": 1, "subset": ""},
    {"prompt": "Q2", "response": " fine", "rating": 3.0, "subset": "chat"},
]


@pytest.mark.parametrize("name", ["r.jsonl", "r.json", "r.csv", "r.parquet", "r.jsonl.gz"])
def test_every_file_type_reads_the_same_examples(write, name):
    data = load_rated(write(name, ROWS))
    assert [(e.prompt, e.response, e.rating, e.subset) for e in data.examples] == [
        ("Q1", " good", 4.5, None), ("Q1", " bad", 1.0, None), ("Q2", " fine", 3.0, "chat")]
    assert all(isinstance(e.rating, float) for e in data.examples)  # CSV strings become numbers
    assert data.examples[0].source == f"rated:{name}"
    assert data.n_records == 3 and data.formats == {str(write(name, ROWS)): "rated"}
    assert data.fingerprint == load_rated(write("same.jsonl", ROWS)).fingerprint  # format-independent


def test_completion_and_score_aliases_and_optional_prompt(write):
    data = load_rated(write("a.jsonl", [{"completion": "hello", "score": "2.5"}]))
    assert data.examples == [RatedExample(prompt="", response="hello", rating=2.5, source="rated:a.jsonl")]


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"prompt": "p", "rating": 1}, "a.jsonl:2: missing field 'response' (or 'completion')"),
        ({"prompt": "p", "response": "r"}, "a.jsonl:2: missing field 'rating' (or 'score')"),
        ({"response": "r", "rating": float("nan")}, "a.jsonl:2: field 'rating' must be a finite number"),
        ({"response": "r", "rating": "inf"}, "a.jsonl:2: field 'rating' must be a finite number"),
        ({"response": "r", "score": "high"}, "a.jsonl:2: field 'score' must be a number"),
        ({"response": "r", "rating": True}, "a.jsonl:2: field 'rating' must be a number"),
        ({"response": ["r"], "rating": 1}, "a.jsonl:2: field 'response' must be text"),
        ({"prompt": 3, "response": "r", "rating": 1}, "a.jsonl:2: field 'prompt' must be text"),
    ],
)
def test_bad_records_name_file_line_and_field(write, record, expected):
    path = write("a.jsonl", [ROWS[0], record])
    with pytest.raises(DataError) as info:
        load_rated(path)
    message = str(info.value)
    assert message.startswith(str(path.parent / expected)) and "\n" not in message


def test_empty_csv_rating_is_refused(write):
    with pytest.raises(DataError, match=r"a\.csv:3: field 'rating' is empty"):
        load_rated(write("a.csv", [{"prompt": "p", "response": "r", "rating": "1"},
                                   {"prompt": "p", "response": "s", "rating": ""}]))


def test_pairs_and_rated_files_point_at_the_right_objective(write):
    pairs = write("pairs.jsonl", [{"prompt": "p", "chosen": "a", "rejected": "b"}])
    with pytest.raises(DataError, match="preference pair: train on it with --objective bradley-terry"):
        load_rated(pairs)
    rated = write("rated.jsonl", ROWS)
    with pytest.raises(DataError, match=r"rated\.jsonl:1: holds rated examples .* --objective mse"):
        load_pairs(rated)


def test_limit_keeps_the_first_examples_of_each_source(write):
    data = load_rated([write("a.jsonl", ROWS), write("b.jsonl", ROWS)], limit=2)
    assert [(e.source, e.response) for e in data.examples] == [
        ("rated:a.jsonl", " good"), ("rated:a.jsonl", " bad"), ("rated:b.jsonl", " good"), ("rated:b.jsonl", " bad")]
    with pytest.raises(DataError, match="limit must be a positive number"):
        load_rated(write("a.jsonl", ROWS), limit=0)


def test_fingerprint_covers_content_not_order_and_differs_from_pairs():
    a = [RatedExample("p", "r", 1.0, "x"), RatedExample("q", "s", 2.0, "x")]
    assert fingerprint(a) == fingerprint(a[::-1])
    assert fingerprint(a) != fingerprint([a[0], RatedExample("q", "s", 2.5, "x")])  # the rating counts
    assert fingerprint(a) == fingerprint([RatedExample("p", "r", 1.0, "other", location="f:9"), a[1]])


def test_split_keeps_ratings_of_one_prompt_together(write):
    rows = [{"prompt": f"Q{i // 3}", "response": f"answer {i}", "rating": i % 5} for i in range(60)]
    parts = load_rated(write("many.jsonl", rows)).split((0.6, 0.2, 0.2), seed=3)
    prompts = [{e.prompt for e in parts[name].examples} for name in ("train", "validation", "test")]
    assert sum(len(parts[n]) for n in parts) == 60
    assert not (prompts[0] & prompts[1] or prompts[0] & prompts[2] or prompts[1] & prompts[2])
    assert len(parts["test"]) == 12 and len(parts["train"]) == 36
    shuffled = load_rated(write("shuffled.jsonl", rows[::-1])).split((0.6, 0.2, 0.2), seed=3)
    assert {e.response for e in shuffled["test"].examples} == {e.response for e in parts["test"].examples}
