"""The remote benchmark: a smoke run per kind of remote, the byte counting, and the refusals."""

import importlib.util
import json

import pytest
import remote_vs_dvc as bench

needs_dvc = pytest.mark.skipif(importlib.util.find_spec("dvc") is None, reason="dvc is not installed (the bench extra)")


def _missing_s3() -> str | None:
    missing = [m for m in ("moto", "s3fs", "boto3", "dvc_s3") if importlib.util.find_spec(m) is None]
    return f"not installed: {', '.join(missing)} (S3 remote skipped)" if missing else None


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # inside DVC
@pytest.mark.parametrize("kind", ["dir", "s3"])
@needs_dvc
def test_a_smoke_run_pushes_and_clones_every_version_with_both_tools(kind, tmp_path, capsys):
    if kind == "s3" and _missing_s3():
        pytest.skip(_missing_s3())
    out = tmp_path / "out.json"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    assert bench.main(["--smoke", "--remote", kind, "--scratch", str(scratch), "--json", str(out)]) == 0
    assert list(scratch.iterdir()) == []  # repositories, remotes, moto's temp files: gone
    printed = capsys.readouterr().out
    assert f"push to a {bench.LABELS[kind]}" in printed and "after the first version, push moved" in printed
    result = json.loads(out.read_text())
    plan = result["plan"]
    assert plan == ["base", "head", "layers", "full"]
    s = result["summary"][kind]
    runs = result["runs"][kind]
    for version in s["versions"]:
        assert version["rewardkit_bytes"] > 0 and version["dvc_bytes"] > 0
        # the objects moved are what rewardkit says it sent; commits and the ref come on top
        objects = sum(b for area, b in runs["rewardkit"]["pushes"][version["version"]]["bytes_by_area"].items()
                      if area in ("objects", "manifest"))
        assert objects == version["rewardkit_report_bytes"]
    head, full = s["versions"][1], s["versions"][3]
    assert head["changed_bytes"] < full["changed_bytes"] == s["versions"][0]["changed_bytes"]  # every tensor
    assert head["rewardkit_bytes"] < 0.01 * head["dvc_bytes"]  # DVC sends the whole weights file again
    assert s["after_first"]["rewardkit_bytes"] < s["after_first"]["dvc_bytes"]
    assert s["target_met"] == (s["after_first"]["rewardkit_vs_changed"] <= bench.TARGET_PUSH_VS_CHANGED)
    for tool in bench.TOOLS:
        for which, clone in s["clones"][tool].items():
            assert clone.get("identical", "skipped" in clone), (tool, which)
    assert s["clones"]["dvc"]["all"]["bytes_fetched"] >= 4 * s["clones"]["dvc"]["last"]["bytes_fetched"] * 0.9
    if kind == "s3":
        assert s["server_peak_rss"]["rewardkit"] > 0 and s["server_peak_rss"]["dvc"] > 0


def test_bytes_moved_are_new_or_rewritten_keys():
    before = {"objects/ab/cd": (10, "1"), "refs/heads/main": (65, "1")}
    after = before | {"objects/ef/01": (7, "2"), "refs/heads/main": (65, "2")}
    new = bench.moved(before, after)
    assert new == {"objects/ef/01": 7, "refs/heads/main": 65}
    manifest = "ef01" + "0" * 60
    assert bench.by_area({"objects/ef/01": 7, "refs/heads/main": 65}) == {"objects": 7, "refs": 65}
    assert bench.by_area({f"objects/ef/{manifest[2:]}": 7, "commits/x.json": 3}, manifest) == \
        {"manifest": 7, "commits": 3}


def test_unknown_remote_kind_and_smoke_defaults(monkeypatch):
    with pytest.raises(SystemExit, match="unknown remote kind 'ftp'"):
        bench.check_setup(["ftp"])
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "moto" else real(name, *a))
    with pytest.raises(SystemExit, match=r"not installed: moto.*--remote dir"):
        bench.check_setup(["dir", "s3"])
    args = bench.parse_args(["--smoke"])
    assert (args.size_gib, args.versions) == (bench.SMOKE["size_gib"], bench.SMOKE["versions"])
    assert bench.parse_args(["--smoke", "--versions", "5"]).versions == 5
    assert bench.parse_args([]).size_gib == 1.0


def test_a_failed_push_is_tried_again_and_kept_and_one_that_always_fails_stops_the_run(capsys):
    calls = []

    def flaky() -> dict:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("dvc push exited with 1: ERROR: failed to transfer 'md5: 1f2e'")
        return {"seconds": 1.0}

    op = bench.attempt(flaky, "s3 dvc push v6")
    assert op == {"seconds": 1.0, "failed_attempts": ["RuntimeError: dvc push exited with 1: ERROR: failed to "
                                                      "transfer 'md5: 1f2e'"]}
    assert "s3 dvc push v6 failed" in capsys.readouterr().out

    def broken() -> dict:
        raise OSError("connection refused")

    with pytest.raises(RuntimeError, match=f"failed {bench.ATTEMPTS} times; last: OSError: connection refused"):
        bench.attempt(broken, "s3 rewardkit push v1")


@needs_dvc
def test_a_dvc_error_is_raised_with_what_dvc_said(tmp_path):
    """``dvc -q`` would hide DVC's own error; the benchmark keeps it for the report."""
    bench._git("init", "-q", cwd=tmp_path)
    bench.DvcTool.dvc("init", "-q", cwd=tmp_path)
    with pytest.raises(RuntimeError, match=r"dvc push exited with 1 in .*: ERROR: .*remote"):
        bench.DvcTool.dvc("push", cwd=tmp_path)
