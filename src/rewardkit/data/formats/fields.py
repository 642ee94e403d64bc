"""Field checks shared by the format adapters; each failure names the record and the field."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from rewardkit.errors import DataError


def quote_fields(fields: Sequence[str]) -> str:
    """Render field names for messages: ``('a', 'b', 'c')`` -> ``"'a', 'b' and 'c'"``."""
    quoted = [f"'{name}'" for name in fields]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} and {quoted[-1]}"


def require(location: str, record: Mapping[str, Any], fields: Sequence[str], fmt: str) -> None:
    """Check that ``record`` has every field of ``fields`` (the fields format ``fmt`` expects).

    Raises:
        DataError: ``"FILE:LINE: missing field 'rejected' (format hh-rlhf expects 'chosen'
            and 'rejected')"`` for the first missing field.
    """
    for name in fields:
        if record.get(name) is None:
            raise DataError(
                f"{location}: missing field '{name}' (format {fmt} expects {quote_fields(fields)})"
            )


def text(location: str, record: Mapping[str, Any], name: str, scalars: bool = False) -> str:
    """Return field ``name`` of ``record``, which must be a string.

    Args:
        location: The record, for messages.
        record: The raw record.
        name: The field.
        scalars: Also accept a bool or number and return ``str(value)`` (for sets whose
            export turned an answer "True" into ``true``).

    Raises:
        DataError: If the field is not a string (or, with ``scalars``, a bool or number).
    """
    value = record[name]
    if scalars and isinstance(value, bool | int | float):
        return str(value)
    if not isinstance(value, str):
        raise DataError(
            f"{location}: field '{name}' must be text, got {type(value).__name__} ({value!r:.60})"
        )
    return value


def label(location: str, name: str, value: Any, meanings: Mapping[int, str]) -> int:
    """Return an integer label that must be one of ``meanings`` (strings of digits are accepted).

    Args:
        location: The record, for messages.
        name: The field name (e.g. ``"annotator2"`` or ``"preference[3]"``), for messages.
        value: The raw label.
        meanings: Allowed labels and what each means, e.g. ``{0: "tie", 1: "first better"}``.

    Raises:
        DataError: If the label is not one of ``meanings``.
    """
    number = value
    if isinstance(value, str) and value.strip().isdigit():
        number = int(value)
    if isinstance(number, bool) or not isinstance(number, int) or number not in meanings:
        allowed = ", ".join(f"{key} ({meaning})" for key, meaning in meanings.items())
        raise DataError(f"{location}: field '{name}' is {value!r}; expected one of {allowed}")
    return number


def optional_float(location: str, record: Mapping[str, Any], name: str) -> float | None:
    """Return numeric field ``name`` as a finite float, None when absent or empty.

    Raises:
        DataError: If the field is present but not a number, or not finite (``NaN``,
            ``Infinity``, ``1e999``, ``"nan"``): one such margin would turn every loss into NaN.
    """
    value = record.get(name)
    if value is None or value == "":
        return None
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise DataError(f"{location}: field '{name}' must be a number, got {value!r:.60}") from None
    if not math.isfinite(number):
        raise DataError(f"{location}: field '{name}' must be a finite number, got {value!r:.60}")
    return number


def optional_text(record: Mapping[str, Any], name: str) -> str | None:
    """Return field ``name`` as a string, None when absent or empty."""
    value = record.get(name)
    return None if value is None or value == "" else str(value)
