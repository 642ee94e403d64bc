"""Fixtures for the benchmark scripts' tests: bench/ on the import path, as when a script runs."""

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))
