"""Read raw records from files (.jsonl, .json, .parquet, .csv, each optionally .gz) or Hugging Face.

Every reader yields ``(location, record)``: ``location`` is ``"path:LINE"`` (1-based) for JSON
lines and csv rows (the line the row starts on) and ``"path[INDEX]"`` (0-based) for JSON lists
and parquet rows, so that adapters can name the exact record in their messages. A UTF-8 byte
order mark at the start of a text file is skipped. Nothing here knows about preference formats.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from rewardkit.errors import DataError

Record = dict[str, Any]

EXTENSIONS = (".jsonl", ".json", ".parquet", ".csv")
"""File types :func:`read_records` understands; each may also end in ``.gz``."""

_DATASET_ID = re.compile(r"^[\w.-]+/[\w.-]+(:[\w.-]+){0,2}$")


def read_records(source: str | Path) -> Iterator[tuple[str, Record]]:
    """Yield every record of a data file or Hugging Face dataset, in order.

    Args:
        source: A path to a ``.jsonl``, ``.json``, ``.parquet`` or ``.csv`` file (each may end in
            ``.gz``), or, when no such path exists, a Hugging Face dataset id
            ``owner/name``, ``owner/name:split`` or ``owner/name:config:split`` (split defaults
            to ``train``). A ``.json`` file may hold a list of records, an object holding exactly
            one list of records (e.g. ``{"data": [...]}``), or JSON lines.

    Yields:
        ``(location, record)`` where ``record`` is the raw dict. CSV fields stay strings.

    Raises:
        DataError: If the path is missing and is not a dataset id, the extension is not
            supported, the file is empty, a line or the file is not valid JSON or UTF-8, a record
            is not a JSON object, or the dataset cannot be loaded.
    """
    path = Path(source)
    if not path.is_file():
        if path.exists():
            raise DataError(f"{source}: is a folder, not a file; pass a data file or a dataset id")
        if not _looks_like_dataset_id(str(source)):
            raise DataError(
                f"{source}: no such file, and it is neither a file nor a Hugging Face dataset "
                "id (owner/name[:config][:split]); check the path"
            )
        yield from _read_dataset_id(str(source))
        return
    suffix = _data_suffix(path)
    if suffix not in EXTENSIONS:
        raise DataError(
            f"{source}: unsupported file type '{suffix or 'no extension'}'; use one of "
            f"{', '.join(EXTENSIONS)}, optionally gzipped (e.g. .jsonl.gz)"
        )
    readers = {
        ".jsonl": _read_json_lines,
        ".json": _read_json,
        ".parquet": _read_parquet,
        ".csv": _read_csv,
    }
    count = 0
    with _open_binary(path) as stream:
        for item in readers[suffix](stream, str(source)):
            count += 1
            yield item
    if count == 0:
        raise DataError(f"{source}: the file is empty (no records); point at a file with data")


def read_hf_dataset(path: str, split: str = "train", **kwargs: Any) -> Iterator[tuple[str, Record]]:
    """Yield the rows of a Hugging Face dataset through :func:`datasets.load_dataset`.

    Args:
        path: A hub id (``"Anthropic/hh-rlhf"``) or a builder name (``"json"``, ``"parquet"``),
            as ``load_dataset``'s ``path``.
        split: The split to read.
        **kwargs: Passed on to ``load_dataset`` (``name`` for a config, ``data_files``,
            ``cache_dir``, ...).

    Yields:
        ``("PATH:SPLIT[INDEX]", row)`` for every row.

    Raises:
        DataError: If ``datasets`` cannot load the dataset or split, or the split is empty.
    """
    import datasets  # heavy import, only on this path

    try:
        rows = datasets.load_dataset(path, split=split, **kwargs)
    except Exception as error:  # datasets raises many unrelated types for "cannot load"
        raise DataError(
            f"{path}: could not load split '{split}' of this Hugging Face dataset "
            f"({type(error).__name__}: {error}); check the id, config and split, "
            "or pass a local file"
        ) from error
    if len(rows) == 0:
        raise DataError(f"{path}:{split}: the dataset split is empty (no records)")
    for index, row in enumerate(rows):
        yield f"{path}:{split}[{index}]", dict(row)


def _looks_like_dataset_id(text: str) -> bool:
    return bool(_DATASET_ID.match(text)) and _data_suffix(Path(text)) not in EXTENSIONS


def _read_dataset_id(source: str) -> Iterator[tuple[str, Record]]:
    name, *rest = source.split(":")
    config = rest[0] if len(rest) == 2 else None
    split = rest[-1] if rest else "train"
    kwargs = {"name": config} if config else {}
    yield from read_hf_dataset(name, split, **kwargs)


def _data_suffix(path: Path) -> str:
    """The last extension of ``path`` once ``.gz`` is removed, lower-cased ("" when none)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def _open_binary(path: Path) -> BinaryIO:
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return path.open("rb")


def _decode(data: bytes, path: str, offset: int = 0, line: int = 1) -> str:
    """Decode UTF-8; on failure name the line and the file byte offset of the first bad byte.

    ``offset`` and ``line`` say where ``data`` starts in the file; at offset 0 a byte order
    mark (``EF BB BF``, which Excel and Notepad write) is dropped.
    """
    try:
        return data.decode("utf-8-sig" if offset == 0 else "utf-8")
    except UnicodeDecodeError as error:
        line += data.count(b"\n", 0, error.start)
        raise DataError(
            f"{path}:{line}: not valid UTF-8 (byte 0x{data[error.start]:02x} at byte offset "
            f"{offset + error.start}); re-encode the file as UTF-8"
        ) from None


def _read_bytes(stream: BinaryIO, path: str) -> bytes:
    try:
        return stream.read()
    except (OSError, EOFError) as error:
        raise DataError(
            f"{path}: cannot read the file ({error}); is it a valid gzip file?"
        ) from None


def _as_record(value: Any, location: str) -> Record:
    if not isinstance(value, dict):
        raise DataError(
            f"{location}: expected a JSON object with named fields, got {type(value).__name__}"
        )
    return value


def _read_json_lines(stream: BinaryIO, path: str) -> Iterator[tuple[str, Record]]:
    offset = 0
    try:
        for number, raw in enumerate(stream, start=1):
            location = f"{path}:{number}"
            text = _decode(raw, path, offset, number)
            offset += len(raw)
            if not text.strip():
                continue
            try:
                value = json.loads(text)
            except json.JSONDecodeError as error:
                raise DataError(
                    f"{location}: malformed JSON ({error}); each line must hold one JSON object"
                ) from None
            yield location, _as_record(value, location)
    except (OSError, EOFError) as error:
        raise DataError(
            f"{path}: cannot read the file ({error}); is it a valid gzip file?"
        ) from None


def _read_json(stream: BinaryIO, path: str) -> Iterator[tuple[str, Record]]:
    data = _read_bytes(stream, path)
    text = _decode(data, path)
    if not text.strip():
        return
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        if error.msg != "Extra data":
            raise DataError(
                f"{path}:{error.lineno}: malformed JSON ({error}); fix the file or convert it "
                "to JSON lines"
            ) from None
        yield from _read_json_lines(io.BytesIO(data), path)  # a JSON-lines file named .json
        return
    records = _records_in(value)
    if records is None:
        yield f"{path}:1", _as_record(value, path)
        return
    for index, item in enumerate(records):
        yield f"{path}[{index}]", _as_record(item, f"{path}[{index}]")


def _records_in(value: Any) -> list[Any] | None:
    """The list of records in a parsed .json file, or None when ``value`` is a single record."""
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        lists = [v for v in value.values() if isinstance(v, list)]
        if len(lists) == 1 and lists[0] and all(isinstance(v, dict) for v in lists[0]):
            return lists[0]
    return None


def _read_parquet(stream: BinaryIO, path: str) -> Iterator[tuple[str, Record]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(pa.BufferReader(_read_bytes(stream, path)))
        batches = table.iter_batches()
        index = 0
        for batch in batches:
            for row in batch.to_pylist():
                yield f"{path}[{index}]", row
                index += 1
    except (pa.ArrowException, OSError) as error:
        raise DataError(f"{path}: not a readable parquet file ({error})") from None


def _read_csv(stream: BinaryIO, path: str) -> Iterator[tuple[str, Record]]:
    """Rows of a CSV file with a header line; strict quoting, so a broken quote is an error.

    Without ``strict`` the csv module reads an unterminated quote as one field running to the
    end of the file, and the damage shows only as a wrong field count far away.
    """
    reader = csv.DictReader(io.StringIO(_decode(_read_bytes(stream, path), path), newline=""), strict=True)
    start = 1  # line of the row about to be read
    try:
        if reader.fieldnames is None:  # reads the header
            return
        start = reader.line_num + 1
        for row in reader:
            yield f"{path}:{start}", dict(row)
            start = reader.line_num + 1
    except csv.Error as error:
        if "unexpected end of data" in str(error):
            raise DataError(
                f"{path}:{start}: unterminated quote: a field opened with '\"' on this row is never "
                "closed; close it, or double a quote inside a quoted field (\"\")"
            ) from None
        raise DataError(f"{path}:{reader.line_num}: malformed CSV ({error})") from None
