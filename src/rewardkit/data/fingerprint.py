r"""Dataset fingerprints: the SHA-256 of one canonical serialization of the pairs' content.

The bytes hashed are defined here and only here. :func:`canonical_line` writes one JSON object
per pair with the content fields ``prompt, chosen, rejected, margin, tie, subset``, keys sorted,
no spaces, UTF-8, ending in ``"\n"``; :func:`fingerprint` hashes those lines **sorted**, so a
dataset is identified by the multiset of its normalised pairs. Left out on purpose:

* ``source`` (``"<format>:<file name>"``) and ``location``: the same records as ``.jsonl``,
  ``.jsonl.gz``, ``.json``, ``.parquet``, ``.csv`` or under another name are the same data;
* ``group``: derived from the content by the format adapter, for splitting;
* the order of the pairs: reading records in another order does not change the data (the
  split does not depend on it either, see :mod:`rewardkit.data.split`).

Rated examples (:class:`~rewardkit.data.records.RatedExample`) are fingerprinted the same way
over :data:`RATED_FIELDS`. Equal content gives equal fingerprints; any change to a content field, or a pair added or
removed (duplicates count), changes it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

from rewardkit.data.records import PreferencePair, RatedExample

FIELDS = ("prompt", "chosen", "rejected", "margin", "tie", "subset")
"""The content fields of a pair that a fingerprint covers."""

RATED_FIELDS = ("prompt", "response", "rating", "subset")
"""The content fields of a rated example that a fingerprint covers (its own keys, so it never equals a pair's)."""


def canonical_line(record: PreferencePair | RatedExample) -> bytes:
    r"""The canonical bytes of one record: sorted-key compact JSON of its content fields plus ``"\n"``, UTF-8.

    A pair contributes :data:`FIELDS`, a rated example :data:`RATED_FIELDS`.
    """
    names = RATED_FIELDS if isinstance(record, RatedExample) else FIELDS
    content = {name: getattr(record, name) for name in names}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8") + b"\n"


def fingerprint(records: Iterable[PreferencePair | RatedExample]) -> str:
    """Return the SHA-256 hex digest (64 characters) of the records' canonical lines, sorted."""
    digest = hashlib.sha256()
    for line in sorted(canonical_line(record) for record in records):
        digest.update(line)
    return digest.hexdigest()
