"""Load preference pairs from files or Hugging Face datasets: read, detect format, adapt."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from itertools import chain
from pathlib import Path

from rewardkit.data.dataset import PreferenceDataset
from rewardkit.data.formats import ChatRenderer, detect_format, get_adapter
from rewardkit.data.rated import looks_rated
from rewardkit.data.readers import read_records
from rewardkit.data.records import PreferencePair
from rewardkit.errors import DataError


def load_pairs(
    sources: str | Path | Sequence[str | Path],
    format: str | None = None,
    limit: int | None = None,
    render_chat: ChatRenderer | None = None,
) -> PreferenceDataset:
    r"""Load and normalise preference data from one or more sources.

    A pair whose chosen and rejected texts are identical expresses no preference and is
    counted with the ties (:attr:`PreferenceDataset.n_identical`); empty responses are kept
    (:attr:`PreferenceDataset.n_empty`).

    Args:
        sources: A path or Hugging Face dataset id, or a list of them (see
            :func:`rewardkit.data.read_records`).
        format: One of :data:`rewardkit.data.FORMATS`; None detects each source's format
            from its first record.
        limit: Keep at most this many non-tie pairs per source: the first ones, in order
            (ties read up to that point are kept). None keeps all.
        render_chat: Renders messages to text for conversational data (a
            :class:`~rewardkit.data.formats.ChatRenderer`, e.g.
            ``chat_template_renderer(lambda: tokenizer)``); default :func:`render_plain`,
            ``"User: hi\n\nAssistant: hello"``.

    Returns:
        The pairs, the ties, the record count and the format of each source. Pairs name their
        source as ``"<format>:<file name>"`` (the id for Hugging Face datasets).

    Raises:
        DataError: If no source is given, ``format`` or ``limit`` is invalid, a source cannot
            be read, a record does not match its format, a source holds no preference pair
            (e.g. only ties), or (format None) its first record is a rated example.
    """
    if isinstance(sources, str | Path):
        sources = [sources]
    if not sources:
        raise DataError("no data source given; pass a file path or a dataset id")
    if format is not None:
        get_adapter(format)  # fail on an unknown name before reading anything
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise DataError(f"limit must be a positive number of pairs, got {limit!r}")
    pairs: list[PreferencePair] = []
    ties: list[PreferencePair] = []
    n_records = 0
    formats: dict[str, str] = {}
    for source in sources:
        loaded = _load_source(source, format, limit, render_chat)
        pairs += loaded.pairs
        ties += loaded.ties
        n_records += loaded.n_records
        formats.update(loaded.formats)
    return PreferenceDataset(pairs=pairs, ties=ties, n_records=n_records, formats=formats)


def _load_source(
    source: str | Path, format: str | None, limit: int | None, render_chat: ChatRenderer | None
) -> PreferenceDataset:
    records = read_records(source)
    first = next(records)  # read_records raises on an empty source
    if format is None and looks_rated(first[1]):
        raise DataError(f"{first[0]}: holds rated examples (response and rating), not preference pairs "
                        "(chosen and rejected); train on them with --objective mse")
    name = format or detect_format(first[1], first[0])
    to_pairs = get_adapter(name, render_chat)
    label = Path(source).name if Path(source).is_file() else str(source)
    source_name = f"{name}:{label}"
    pairs: list[PreferencePair] = []
    ties: list[PreferencePair] = []
    n_records = 0
    for location, record in chain([first], records):
        n_records += 1
        for pair in to_pairs(location, record, source_name):
            if pair.identical:  # identical texts prefer nothing: a tie
                pair = replace(pair, tie=True)
            (ties if pair.tie else pairs).append(pair)
        if limit is not None and len(pairs) >= limit:
            del pairs[limit:]
            break
    if not pairs:
        held = f"only ties ({len(ties)})" if ties else "no pairs"
        raise DataError(
            f"{source}: holds {held} and no preference pair; a reward model needs records "
            "where one response is preferred"
        )
    return PreferenceDataset(pairs, ties, n_records, {str(source): name})
