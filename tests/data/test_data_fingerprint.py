from __future__ import annotations

import hashlib
import json
from dataclasses import replace

from rewardkit.data import PreferencePair, fingerprint, load_pairs
from rewardkit.data.fingerprint import canonical_line

A = PreferencePair("p", "c", "r", "trl:a.jsonl", margin=1.0, subset="s", group="g", location="a:1")
B = PreferencePair("p2", "c2", "r2", "trl:a.jsonl", tie=True)


def test_canonical_line_is_sorted_compact_json():
    line = canonical_line(A)
    assert line.endswith(b"\n")
    assert json.loads(line) == {
        "prompt": "p",
        "chosen": "c",
        "rejected": "r",
        "source": "trl:a.jsonl",
        "margin": 1.0,
        "subset": "s",
        "tie": False,
        "group": "g",
    }
    assert (
        line
        == (json.dumps(json.loads(line), sort_keys=True, separators=(",", ":")) + "\n").encode()
    )


def test_fingerprint_is_sha256_of_the_lines():
    expected = hashlib.sha256(canonical_line(A) + canonical_line(B)).hexdigest()
    assert fingerprint([A, B]) == expected and len(expected) == 64


def test_equal_content_gives_equal_fingerprint():
    copy = PreferencePair(
        "p", "c", "r", "trl:a.jsonl", margin=1.0, subset="s", group="g", location="b:9"
    )
    assert fingerprint([A, B]) == fingerprint([copy, B])  # location does not count


def test_any_change_or_reorder_changes_fingerprint():
    base = fingerprint([A, B])
    assert fingerprint([B, A]) != base
    assert fingerprint([replace(A, chosen="c!"), B]) != base
    assert fingerprint([replace(A, margin=None), B]) != base
    assert fingerprint([A]) != base


def test_loading_the_same_content_twice_gives_the_same_fingerprint(write, tmp_path):
    records = [{"prompt": "q", "chosen": "é", "rejected": "b", "margin": 1}]
    first = load_pairs(write("same.jsonl", records))
    (tmp_path / "other").mkdir()
    second = load_pairs(write("other/same.parquet", records), format="trl")
    assert first.pairs[0].source != second.pairs[0].source  # trl:same.jsonl vs trl:same.parquet
    third = load_pairs(write("other/same.jsonl", records))
    assert first.fingerprint == third.fingerprint
    assert first.fingerprint != second.fingerprint
