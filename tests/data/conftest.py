"""Fixtures for the rewardkit.data tests: the shared real data and small file writers."""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"

Writer = Callable[[str, list[dict[str, Any]]], Path]


@pytest.fixture
def shared_data() -> Path:
    """The folder of real preference data next to the repository (skips when absent)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} not found")
    return SHARED_DATA


def encode(name: str, records: list[dict[str, Any]]) -> bytes:
    """The bytes of ``records`` in the format named by the extension of ``name`` (no gzip)."""
    stem = name.removesuffix(".gz")
    if stem.endswith(".jsonl"):
        return "".join(json.dumps(r) + "\n" for r in records).encode()
    if stem.endswith(".json"):
        return json.dumps(records).encode()
    if stem.endswith(".csv"):
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
        return text.getvalue().encode()
    if stem.endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        buffer = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(records), buffer)
        return buffer.getvalue()
    raise ValueError(name)


@pytest.fixture
def write(tmp_path: Path) -> Writer:
    """Write records to ``tmp_path / name`` in the format its extension says (.gz compressed)."""

    def writer(name: str, records: list[dict[str, Any]]) -> Path:
        data = encode(name, records)
        path = tmp_path / name
        path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
        return path

    return writer
