"""bench/rl_protocol.py end to end at smoke size: every cell scored on the true return, the target check printed."""

import json
import math

import numpy as np
import pytest

pytest.importorskip("gymnasium", reason="the rl extra (gymnasium) is not installed")
pytest.importorskip("stable_baselines3", reason="the rl extra (stable-baselines3) is not installed")

from rl_protocol import Cell, main, normalised, summarise  # noqa: E402


def test_smoke_run_scores_every_cell(tmp_path, capsys) -> None:
    out = tmp_path / "protocol.json"
    summary = main(["--smoke", "--quiet", "--json", str(out)])
    cells = summary["tasks"]["CartPole-v1"]
    assert list(cells) == ["random", "true", "true+norm", "prefs@10", "prefs@20", "zero", "shuffled"]
    for cell in cells.values():
        assert len(cell["returns"]) == 2 and len(cell["seconds"]) == 2  # 2 seeds
        assert all(1 <= r <= 500 for r in cell["returns"])  # CartPole returns are episode lengths
    best = max(cells["true"]["score"][0], cells["true+norm"]["score"][0])  # R_true: the better reference
    assert best == pytest.approx(1.0) and cells["random"]["score"][0] == pytest.approx(0.0)
    assert json.loads(out.read_text())["tasks"]["CartPole-v1"]["true"]["returns"] == cells["true"]["returns"]
    printed = capsys.readouterr().out
    assert "NOT met" in printed and "wall time" in printed  # no 700-query cell in a smoke run


def test_normalised_score_and_target_and_leak_checks() -> None:
    cells = {"random": Cell([10.0, 30.0]), "true": Cell([110.0, 130.0]), "true+norm": Cell([50.0, 60.0]),
             "prefs@700": Cell([110.0, 120.0]), "zero": Cell([20.0, 20.0]), "shuffled": Cell([80.0, 80.0])}
    scores = normalised(cells)
    assert scores["true"][0] == pytest.approx(1.0) and scores["random"][0] == pytest.approx(0.0)
    assert scores["prefs@700"][0] == pytest.approx(0.95)
    assert scores["prefs@700"][1] <= 0.95 <= scores["prefs@700"][2]
    summary = summarise({"A": cells})
    assert summary["target_reached_on"] == ["A"] and not summary["target_met"]  # 1 task < 3
    assert summary["leaks"] == ["A shuffled"]  # score 0.6: a leaking control; zero (0.0) does not
    assert summary["controls_below_random"] == []
    cells["zero"] = Cell([-20.0, -20.0])  # score -0.4: worse than random, no leak
    assert summarise({"A": cells})["controls_below_random"] == ["A zero"]
    cells["true+norm"] = Cell([200.0, 220.0])  # the better reference sets the scale: (115 - 20) / (210 - 20)
    assert normalised(cells)["prefs@700"][0] == pytest.approx(0.5)
    flat = {"random": Cell([5.0]), "true": Cell([5.0]), "prefs@700": Cell([9.0]), "zero": Cell([5.0]),
            "shuffled": Cell([5.0])}
    assert all(math.isnan(v[0]) for v in normalised(flat).values())  # R_true == R_random: no scale
    assert np.isfinite(normalised(cells)["zero"][0])


def test_records_of_parallel_runs_join_into_one_report(tmp_path, capsys) -> None:
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    base = ["--smoke", "--quiet", "--seeds", "1", "--queries", "10", "--extra-queries", ""]
    main([*base, "--records", str(first)])
    main([*base, "--first-seed", "1", "--records", str(second)])
    main([*base, "--first-seed", "1", "--queries", "20", "--no-baselines", "--records", str(second)])
    rows = [json.loads(line) for line in second.read_text().splitlines()]
    assert {r["seed"] for r in rows} == {1} and rows[-1]["cell"] == "prefs@20"
    out = tmp_path / "joined.json"
    summary = main(["--report", str(first), str(second), "--json", str(out)])
    cells = summary["tasks"]["CartPole-v1"]
    assert list(cells) == ["random", "true", "true+norm", "prefs@10", "prefs@20", "zero", "shuffled"]
    assert len(cells["true"]["returns"]) == 2 and len(cells["prefs@20"]["returns"]) == 1  # seeds 0, 1 and 1
    assert json.loads(out.read_text())["tasks"]["CartPole-v1"]["prefs@10"]["returns"] == cells["prefs@10"]["returns"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"env": "CartPole-v1"}\n')
    with pytest.raises(SystemExit, match="bad.jsonl:1: not a protocol record"):
        main(["--report", str(bad)])
    with pytest.raises(SystemExit, match="missing.jsonl: no such records file"):
        main(["--report", str(tmp_path / "missing.jsonl")])
