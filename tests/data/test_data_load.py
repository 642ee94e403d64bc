from __future__ import annotations

import pytest

from rewardkit.data import PreferenceDataset, load_pairs
from rewardkit.errors import DataError

TRL = [{"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(5)]
PANDA_TIE = {
    "instruction": "Do it.",
    "input": "",
    "response1": "a",
    "response2": "b",
    "annotator1": 0,
    "annotator2": 0,
    "annotator3": 1,
}


@pytest.mark.parametrize("name", ["d.jsonl", "d.json.gz", "d.parquet", "d.csv"])
def test_load_pairs_from_every_file_type(write, name):
    path = write(name, TRL)
    data = load_pairs(path)
    assert isinstance(data, PreferenceDataset)
    assert [p.prompt for p in data.pairs] == [f"q{i}" for i in range(5)]
    assert data.ties == [] and data.n_records == 5 and len(data) == 5
    assert data.formats == {str(path): "trl"}
    assert {p.source for p in data.pairs} == {f"trl:{name}"}


def test_conversational_from_parquet_with_renderer(write):
    record = {
        "chosen": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yes"}],
        "rejected": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "no"}],
    }
    path = write("chat.parquet", [record])
    [plain] = load_pairs(path).pairs
    assert (plain.prompt, plain.chosen) == ("User: hi\n\nAssistant:", " yes")
    [custom] = load_pairs(path, render_chat=lambda ms, **options: "|".join(m["content"] for m in ms)).pairs
    assert (custom.prompt, custom.chosen, custom.rejected) == ("hi", "|yes", "|no")


def test_several_sources_and_explicit_format(write):
    first = write("a.jsonl", TRL[:2])
    second = write("b.json", TRL[2:])
    data = load_pairs([first, str(second)], format="trl")
    assert len(data.pairs) == 5 and data.n_records == 5
    assert data.formats == {str(first): "trl", str(second): "trl"}
    assert [p.source for p in data.pairs] == ["trl:a.jsonl"] * 2 + ["trl:b.json"] * 3


def test_limit_keeps_first_pairs_per_source(write):
    first = write("a.jsonl", TRL)
    second = write("b.jsonl", TRL)
    data = load_pairs([first, second], limit=2)
    assert [p.prompt for p in data.pairs] == ["q0", "q1", "q0", "q1"]
    assert data.n_records == 4


def test_limit_cuts_inside_a_record(write):
    record = {
        "question": "Q",
        **{f"prediction {i}": f"a{i}" for i in range(1, 5)},
        "preference": [0, 1, 1, 2, 1, 1],
    }
    data = load_pairs(write("qa.json", [record, record]), limit=3)
    assert len(data.pairs) == 3 and len(data.ties) == 1 and data.n_records == 1


@pytest.mark.parametrize("limit", [0, -1, 1.5, True])
def test_bad_limit(write, limit):
    with pytest.raises(DataError, match="limit must be a positive number"):
        load_pairs(write("a.jsonl", TRL), limit=limit)


def test_ties_only_file(write):
    path = write("ties.json", [PANDA_TIE, PANDA_TIE, PANDA_TIE])
    with pytest.raises(DataError, match=r"ties.json: holds only ties \(3\) and no preference pair"):
        load_pairs(path)


def test_empty_file_and_no_sources(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    with pytest.raises(DataError, match="empty"):
        load_pairs(path)
    with pytest.raises(DataError, match="no data source"):
        load_pairs([])


def test_unknown_format_fails_before_reading(tmp_path):
    with pytest.raises(DataError, match="unknown format 'dpo'; choose one of: trl,"):
        load_pairs(tmp_path / "missing.jsonl", format="dpo")


def test_bad_later_record_names_its_line(write):
    chosen = "\n\nHuman: a\n\nAssistant: b"
    path = write("hh.jsonl", [{"chosen": chosen, "rejected": chosen + "c"}, {"chosen": chosen}])
    with pytest.raises(DataError, match=rf"{path}:2: missing field 'rejected' \(format hh-rlhf"):
        load_pairs(path)


def test_real_hh_rlhf(shared_data):
    data = load_pairs(shared_data / "hh-rlhf-harmless-base-test.jsonl.gz")
    assert len(data.pairs) == 2312 and data.ties == [] and data.n_records == 2312
    assert all(p.prompt.endswith("Assistant:") for p in data.pairs)
    assert all(p.chosen != p.rejected for p in data.pairs)
    assert data.pairs[0].source == "hh-rlhf:hh-rlhf-harmless-base-test.jsonl.gz"
    assert data.pairs[0].location.endswith(".jsonl.gz:1")


def test_real_qa_feedback(shared_data):
    data = load_pairs(shared_data / "qa-feedback-dev.json.gz")
    assert (len(data.pairs), len(data.ties), data.n_records) == (2616, 384, 500)
    assert len({p.group for p in data.pairs + data.ties}) == 500
    assert list(data.formats.values()) == ["qa-feedback"]


def test_real_pandalm(shared_data):
    data = load_pairs(shared_data / "pandalm-testset-v1.json.gz")
    assert (len(data.pairs), len(data.ties), data.n_records) == (894, 105, 999)
    assert len({p.group for p in data.pairs}) <= 170
    assert all(isinstance(p.subset, str) for p in data.pairs)


def test_real_limit_and_split_per_source(shared_data):
    files = [
        shared_data / name for name in ("qa-feedback-dev.json.gz", "pandalm-testset-v1.json.gz")
    ]
    data = load_pairs(files, limit=200)
    assert len(data.pairs) == 400
    parts = data.split((0.8, 0.1, 0.1), seed=0)
    for part in parts.values():
        assert {p.source.split(":")[0] for p in part.pairs} == {"qa-feedback", "pandalm"}


def test_identical_chosen_and_rejected_count_with_the_ties(write):
    # Old code: kept as a preference pair, teaching nothing but counted as data.
    same = {"prompt": "q", "chosen": "same text", "rejected": "same text"}
    data = load_pairs(write("d.jsonl", [*TRL, same]))
    assert len(data.pairs) == 5 and len(data.ties) == 1 and data.n_identical == 1
    assert data.ties[0].tie and data.ties[0].location.endswith("d.jsonl:6")
    with pytest.raises(DataError, match=r"holds only ties \(2\)"):
        load_pairs(write("same.jsonl", [same, same]))


def test_empty_responses_are_kept_and_counted(write):
    empty = [{"prompt": "q", "chosen": "an answer", "rejected": ""}, {"prompt": "q", "chosen": " ", "rejected": "x"}]
    records = [*TRL, *empty]
    data = load_pairs(write("d.csv", records))
    assert len(data.pairs) == 7 and data.n_empty == 2 and data.n_identical == 0


GOOD_LINE = '{"prompt": "q0", "chosen": "a", "rejected": "b", "margin": 1}\n'
NON_FINITE = {
    "nan.jsonl": GOOD_LINE + '{"prompt": "q", "chosen": "a", "rejected": "b", "margin": NaN}\n',
    "inf.jsonl": GOOD_LINE + '{"prompt": "q", "chosen": "a", "rejected": "b", "margin": 1e999}\n',
    "nan.csv": "prompt,chosen,rejected,margin\nq,a,b,nan\n",
}


@pytest.mark.parametrize("name", NON_FINITE)
def test_non_finite_margin_in_a_file_names_file_line_and_field(tmp_path, name):
    path = tmp_path / name
    path.write_text(NON_FINITE[name])
    with pytest.raises(DataError, match=rf"^{path}:2: field 'margin' must be a finite number"):
        load_pairs(path)
