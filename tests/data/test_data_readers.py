from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from rewardkit.data import read_hf_dataset, read_records, readers
from rewardkit.errors import DataError

RECORDS = [
    {"prompt": "p1", "chosen": "c1", "rejected": "r1"},
    {"prompt": "p2", "chosen": "c2", "rejected": "r2"},
]


@pytest.mark.parametrize(
    "name",
    [
        "d.jsonl",
        "d.json",
        "d.parquet",
        "d.csv",
        "d.jsonl.gz",
        "d.json.gz",
        "d.parquet.gz",
        "d.csv.gz",
    ],
)
def test_every_file_type_yields_the_records_in_order(write, name):
    path = write(name, RECORDS)
    got = list(read_records(path))
    assert [record for _, record in got] == RECORDS


def test_locations_are_line_numbers_for_jsonl_and_indexes_otherwise(write, tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(RECORDS[0]) + "\n\n" + json.dumps(RECORDS[1]) + "\n")
    assert [loc for loc, _ in read_records(path)] == [f"{path}:1", f"{path}:3"]
    listed = write("d.json", RECORDS)
    assert [loc for loc, _ in read_records(listed)] == [f"{listed}[0]", f"{listed}[1]"]
    table = write("d.parquet", RECORDS)
    assert [loc for loc, _ in read_records(str(table))] == [f"{table}[0]", f"{table}[1]"]


def test_json_object_holding_one_list_and_json_lines_named_json(tmp_path):
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"version": 2, "data": RECORDS}))
    assert [r for _, r in read_records(wrapped)] == RECORDS
    lines = tmp_path / "lines.json"
    lines.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    assert [r for _, r in read_records(lines)] == RECORDS


def test_conversational_lists_survive_parquet(write):
    record = {
        "chosen": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}],
        "rejected": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "no"}],
    }
    [(_, got)] = read_records(write("chat.parquet", [record]))
    assert got == record


def test_hugging_face_json_builder(write, tmp_path):
    path = write("d.jsonl", RECORDS)
    rows = list(read_hf_dataset("json", "train", data_files=str(path), cache_dir=str(tmp_path)))
    assert [r for _, r in rows] == RECORDS
    assert rows[0][0] == "json:train[0]"


def test_dataset_id_routes_to_hugging_face(monkeypatch):
    calls = []

    def fake(path, split="train", **kwargs):
        calls.append((path, split, kwargs))
        yield f"{path}:{split}[0]", RECORDS[0]

    monkeypatch.setattr(readers, "read_hf_dataset", fake)
    assert list(read_records("owner/name")) == [("owner/name:train[0]", RECORDS[0])]
    list(read_records("owner/name:test"))
    list(read_records("owner/name:cfg:validation"))
    assert calls == [
        ("owner/name", "train", {}),
        ("owner/name", "test", {}),
        ("owner/name", "validation", {"name": "cfg"}),
    ]


def test_unloadable_dataset_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="could not load"):
        list(read_hf_dataset("json", "train", data_files=str(tmp_path / "nope.jsonl")))


def test_missing_file_says_it_is_neither_file_nor_dataset_id(tmp_path):
    with pytest.raises(DataError, match="neither a file nor a Hugging Face dataset id"):
        list(read_records(tmp_path / "missing.jsonl"))
    with pytest.raises(DataError, match="neither a file"):
        list(read_records("data/train.jsonl"))


@pytest.mark.parametrize("content", [b"", b"\n\n", b"[]"])
@pytest.mark.parametrize("name", ["e.jsonl", "e.json", "e.csv"])
def test_empty_file(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match="empty"):
        list(read_records(path))


def test_empty_gzip_file(tmp_path):
    path = tmp_path / "e.jsonl.gz"
    path.write_bytes(gzip.compress(b""))
    with pytest.raises(DataError, match="empty"):
        list(read_records(path))


def test_malformed_json_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(RECORDS[0]) + "\n" + '{"chosen": "x",\n')
    with pytest.raises(DataError, match=rf"{path}:2: malformed JSON \(Expecting"):
        list(read_records(path))


def test_malformed_json_file_names_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('[\n{"chosen": "x"},\n{"chosen" "y"}\n]')
    with pytest.raises(DataError, match=rf"{path}:3: malformed JSON"):
        list(read_records(path))


@pytest.mark.parametrize("name", ["latin.jsonl", "latin.jsonl.gz", "latin.json", "latin.csv"])
def test_non_utf8_names_line_and_byte_offset(tmp_path, name):
    data = b'[{"chosen": "a",\n"rejected": "caf\xe9"}]' if "json" in name else b"x\ncaf\xe9\n"
    if name.endswith(".jsonl") or name.endswith(".jsonl.gz"):
        data = b'{"chosen": "a", "rejected": "b"}\n{"chosen": "caf\xe9"}\n'
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    offset = data.index(b"\xe9")
    with pytest.raises(
        DataError, match=rf":2: not valid UTF-8 \(byte 0xe9 at byte offset {offset}\)"
    ):
        list(read_records(path))


def test_unsupported_extension(tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("hello")
    with pytest.raises(DataError, match=r"unsupported file type '\.txt'.*\.jsonl"):
        list(read_records(path))


def test_record_that_is_not_an_object(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("[1, 2]\n")
    with pytest.raises(DataError, match=rf"{path}:1: expected a JSON object"):
        list(read_records(path))


def test_corrupt_gzip_and_parquet(tmp_path):
    gz = tmp_path / "d.jsonl.gz"
    gz.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="gzip"):
        list(read_records(gz))
    table = tmp_path / "d.parquet"
    table.write_bytes(b"not parquet")
    with pytest.raises(DataError, match="parquet"):
        list(read_records(Path(table)))


@pytest.mark.parametrize("name", ["bom.jsonl", "bom.json", "bom.csv", "bom.jsonl.gz", "bom.csv.gz"])
def test_utf8_byte_order_mark_is_skipped(write, name):
    # Old code: "malformed JSON" at line 1, or a CSV header field named "\ufeffprompt".
    path = write(name, RECORDS)
    raw = path.read_bytes()
    plain = gzip.decompress(raw) if name.endswith(".gz") else raw
    marked = b"\xef\xbb\xbf" + plain
    path.write_bytes(gzip.compress(marked) if name.endswith(".gz") else marked)
    assert [record for _, record in read_records(path)] == RECORDS


def test_csv_locations_are_the_lines_rows_start_on(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('prompt,chosen,rejected\np1,"two\nlines",r1\np2,c2,r2\n')
    assert [loc for loc, _ in read_records(path)] == [f"{path}:2", f"{path}:4"]


def test_csv_unterminated_quote_says_so_with_the_line(tmp_path):
    # Old code: the open quote swallowed the rest of the file into one field, silently.
    path = tmp_path / "d.csv"
    path.write_text('prompt,chosen,rejected\np1,c1,r1\np2,"c2 never closed,r2\np3,c3,r3\n')
    with pytest.raises(DataError, match=rf"^{path}:3: unterminated quote"):
        list(read_records(path))
