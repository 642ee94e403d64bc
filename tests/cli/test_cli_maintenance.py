"""`rewardkit fsck` and `rewardkit gc`: exit codes, what they print, bad durations."""

import json
import os
import time

import pytest
import torch
from cli_helpers import write_jsonl

from rewardkit.cli.maintenance import parse_duration
from rewardkit.store import Repository


@pytest.fixture
def repo_path(tmp_path):
    """./.rewardkit (the cli fixture runs in tmp_path) with two commits and an orphan object, all 3 hours old."""
    path = tmp_path / ".rewardkit"
    with Repository.init(path) as repo:
        for seed in (0, 1):
            g = torch.Generator().manual_seed(seed)
            repo.commit_tensors({"w": torch.randn(64, 64, generator=g), "b": torch.zeros(2)},
                                {"config.json": b"{}"}, f"commit {seed}")
        orphan = repo.objects.put_tensor(torch.arange(100.0)).id
        stamp = time.time() - 3 * 3600
        for id in repo.objects.ids():
            os.utime(repo.objects.path(id), (stamp, stamp))
    return path, orphan


def test_fsck_of_a_sound_repository_exits_0(cli, repo_path):
    path, orphan = repo_path
    code, out, err = cli("fsck")
    assert code == 0, err
    assert "ok: nothing is wrong; and 1 more finding(s), for information only" in out
    assert orphan in out and "dangling" in out
    code, out, _ = cli("fsck", "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"] and report["commits"] == 2
    assert [(f["problem"], f["name"], f["error"]) for f in report["findings"]] == [("dangling", orphan, False)]


@pytest.mark.parametrize("damage", ["flip", "delete", "truncate db"])
def test_fsck_names_the_damage_and_exits_1(cli, repo_path, damage):
    path, _ = repo_path
    with Repository.open(path) as repo:
        victim = repo.manifest("main").tensors["w"].id
        file = repo.objects.path(victim)
    if damage == "flip":
        file.chmod(0o644)
        data = bytearray(file.read_bytes())
        data[100] ^= 0x10
        file.write_bytes(bytes(data))
    elif damage == "delete":
        file.unlink()
    else:
        data = (path / "meta.db").read_bytes()
        (path / "meta.db").write_bytes(data[: len(data) // 2])
    code, out, err = cli("fsck", "--json")
    assert code == 1 and err == ""
    errors = [f for f in json.loads(out)["findings"] if f["error"]]
    if damage == "truncate db":
        assert [(f["problem"], f["item"]) for f in errors] == [("damaged", "database")]
        assert "meta.db" in errors[0]["detail"]
        return
    assert [(f["problem"], f["name"]) for f in errors] == [("corrupt" if damage == "flip" else "missing", victim)]
    code, out, _ = cli("fsck")
    assert code == 1 and "1 error(s): the repository is damaged" in out
    code, _, err = cli("checkout", "main", "--to", "out")
    assert code == 2 and f"object {victim}" in err and err.count("\n") == 1


def test_gc_dry_run_then_gc(cli, repo_path):
    path, orphan = repo_path
    before = sorted(p.name for p in (path / "objects").rglob("*"))
    code, out, _ = cli("gc", "--dry-run")
    assert code == 0 and f"would remove object {orphan}" in out and "would remove 1 objects (421 B)" in out
    assert sorted(p.name for p in (path / "objects").rglob("*")) == before
    code, out, _ = cli("gc", "--grace", "1d")  # everything is 3 hours old: nothing goes
    assert code == 0 and "removed 0 objects" in out and "1 unreachable objects younger" in out
    code, out, _ = cli("gc", "--json")
    assert code == 0 and json.loads(out)["removed_objects"] == [orphan]
    assert cli("fsck")[0] == 0
    code, out, _ = cli("gc", "--expire-reflog", "0", "--grace", "1d", "--dry-run")  # every entry is older than now
    assert code == 0 and "would expire 2 reflog entries first" in out
    code, _, err = cli("gc", "--expire-reflog", "soon")
    assert code == 2 and err.count("\n") == 1 and "--expire-reflog" in err


@pytest.mark.parametrize("bad", ["2x", "-1h", "h", "1.5.2m", ""])
def test_a_bad_grace_period_is_a_one_line_error(cli, repo_path, bad):
    code, _, err = cli("gc", "--grace", bad)
    assert code == 2 and err.count("\n") == 1 and "--grace" in err and "e.g. 30s, 10m, 2h, 1d or 0" in err


@pytest.mark.parametrize(("text", "seconds"), [("0", 0), ("30s", 30), ("10m", 600), ("2h", 7200), ("1d", 86400),
                                                ("90", 90), ("1.5h", 5400), ("2H", 7200)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_checkout_score_and_eval_refuse_a_flipped_byte_naming_the_object(cli, tmp_path, tiny_model_dir):
    assert cli("init")[0] == 0
    assert cli("commit", tiny_model_dir, "-m", "first")[0] == 0
    with Repository.open(tmp_path / ".rewardkit") as repo:
        victim = max(repo.manifest("main").tensors.values(), key=lambda t: t.shape[0]).id
        path = repo.objects.path(victim)
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": "p", "chosen": "good", "rejected": "bad"}])
    commands = [("checkout", "main", "--to", "out"), ("score", "main", "hello"),
                ("eval", "--data", pairs, "--model", "main")]
    for command in commands:
        code, _, err = cli(*command)
        assert code == 2 and f"object {victim}" in err and "corrupt" in err and err.count("\n") == 1, (command, err)
    code, out, _ = cli("fsck")
    assert code == 1 and victim in out
