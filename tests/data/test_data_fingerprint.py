from __future__ import annotations

import hashlib
import json
import random
from dataclasses import replace

import pytest

from rewardkit.data import PreferencePair, fingerprint, load_pairs
from rewardkit.data.fingerprint import canonical_line

A = PreferencePair("p", "c", "r", "trl:a.jsonl", margin=1.0, subset="s", group="g", location="a:1")
B = PreferencePair("p2", "c2", "r2", "trl:a.jsonl", tie=True)


def test_canonical_line_is_sorted_compact_json_of_the_content():
    line = canonical_line(A)
    assert line.endswith(b"\n")
    content = {"prompt": "p", "chosen": "c", "rejected": "r", "margin": 1.0, "subset": "s", "tie": False}
    assert json.loads(line) == content
    assert line == (json.dumps(json.loads(line), sort_keys=True, separators=(",", ":")) + "\n").encode()


def test_fingerprint_is_sha256_of_the_sorted_lines():
    expected = hashlib.sha256(b"".join(sorted([canonical_line(A), canonical_line(B)]))).hexdigest()
    assert fingerprint([A, B]) == expected == fingerprint([B, A]) and len(expected) == 64


def test_source_group_and_location_are_metadata_not_content():
    copy = replace(A, source="hh-rlhf:other name.parquet", group="another", location="b:9")
    assert fingerprint([A, B]) == fingerprint([copy, B])


def test_any_content_change_changes_fingerprint():
    base = fingerprint([A, B])
    for changed in (
        replace(A, prompt="p!"),
        replace(A, chosen="c!"),
        replace(A, rejected="r!"),
        replace(A, margin=None),
        replace(A, subset=None),
        replace(A, tie=True),
    ):
        assert fingerprint([changed, B]) != base
    assert fingerprint([A]) != base
    assert fingerprint([A, A, B]) != base  # a duplicate pair is more data


def records(n=200):
    rng = random.Random(0)
    out = []
    for i in range(n):
        record = {"prompt": f"Question {i // 3}, «ünïcode»\nline two", "chosen": f"good, \"quoted\" {i}",
                  "rejected": f"bad {i}", "margin": None if i % 5 == 0 else round(rng.uniform(0, 3), 3),
                  "subset": None if i % 7 == 0 else f"s{i % 4}"}
        out.append(record)
    return out


def test_same_records_in_every_file_format_and_name_give_one_fingerprint(write, tmp_path):
    # Old code: seven fingerprints (the source "<format>:<file name>" was hashed, and the order).
    data = records()
    shuffled = data[:]
    random.Random(1).shuffle(shuffled)
    paths = [
        write("prefs.jsonl", data),
        write("prefs.jsonl.gz", data),
        write("prefs.json", data),
        write("prefs.parquet", data),
        write("prefs.csv", data),
        write("renamed copy.jsonl", data),
        write("shuffled.jsonl", shuffled),
    ]
    loaded = [load_pairs(path) for path in paths]
    assert len({d.pairs[0].source for d in loaded}) == len(paths)  # the source name differs ...
    assert len({d.fingerprint for d in loaded}) == 1  # ... the data does not
    changed = [*data[:-1], {**data[-1], "rejected": "bad 199!"}]
    assert load_pairs(write("changed.jsonl", changed)).fingerprint != loaded[0].fingerprint


@pytest.mark.parametrize("seed", [0, 42])
def test_split_fingerprints_do_not_depend_on_record_order(write, seed):
    data = records()
    shuffled = data[::-1]
    first = load_pairs(write("a.jsonl", data)).split(seed=seed)
    second = load_pairs(write("b.csv", shuffled)).split(seed=seed)
    assert {k: v.fingerprint for k, v in first.items()} == {k: v.fingerprint for k, v in second.items()}
    assert len({v.fingerprint for v in first.values()}) == 3
