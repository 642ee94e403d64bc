"""bench/rl_reuse.py end to end at smoke size: every approach yields accuracies and a labels-to-target count."""

import math

import numpy as np
import pytest

pytest.importorskip("gymnasium", reason="the rl extra (gymnasium) is not installed")
pytest.importorskip("stable_baselines3", reason="the rl extra (stable-baselines3) is not installed")

from rl_reuse import APPROACHES, bootstrap, labels_needed, main  # noqa: E402


def test_smoke_run_reports_every_approach(capsys) -> None:
    summary = main(["--smoke", "--seeds", "1"])
    assert set(summary) == set(APPROACHES)
    for row in summary.values():
        assert list(row["accuracy"]) == [5, 20]
        assert all(0 <= m <= 1 and lo <= m <= hi for m, lo, hi in row["accuracy"].values())
        assert len(row["labels_needed"]) == 1
    out = capsys.readouterr().out
    assert "| approach | acc@5 | acc@20 |" in out and "wall time" in out


def test_labels_needed_and_bootstrap() -> None:
    assert labels_needed(np.array([0.5, 0.85, 0.95]), (5, 10, 20), 0.8) == 10
    assert labels_needed(np.array([0.5, 0.6]), (5, 10), 0.8) == math.inf
    mean, lo, hi = bootstrap(np.array([1.0, 2.0, 3.0]))
    assert mean == 2.0 and 1.0 <= lo <= mean <= hi <= 3.0
