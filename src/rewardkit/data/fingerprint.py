r"""Dataset fingerprints: the SHA-256 of one canonical serialization of the pairs.

The bytes hashed are defined here and only here (:func:`canonical_line`): one JSON object per
pair with the fields ``prompt, chosen, rejected, source, margin, subset, tie, group``
(``location`` is left out: moving a file does not change its data), keys sorted, no spaces,
UTF-8, each line ending in ``"\n"``. Equal pairs in equal order give equal fingerprints;
reordering pairs changes it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

from rewardkit.data.records import PreferencePair

FIELDS = ("prompt", "chosen", "rejected", "source", "margin", "subset", "tie", "group")


def canonical_line(pair: PreferencePair) -> bytes:
    r"""The canonical bytes of one pair: sorted-key compact JSON plus ``"\n"``, UTF-8."""
    content = {name: getattr(pair, name) for name in FIELDS}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8") + b"\n"


def fingerprint(pairs: Iterable[PreferencePair]) -> str:
    """Return the SHA-256 hex digest (64 characters) of the pairs' canonical lines, in order."""
    digest = hashlib.sha256()
    for pair in pairs:
        digest.update(canonical_line(pair))
    return digest.hexdigest()
