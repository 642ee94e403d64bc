"""Preference data and rated examples (read, normalise formats, split by group, fingerprint); RL transitions.

>>> from rewardkit.data import load_pairs
>>> data = load_pairs("hh-rlhf-harmless-base-test.jsonl.gz")  # doctest: +SKIP
>>> parts = data.split((0.8, 0.1, 0.1), seed=0)  # doctest: +SKIP
"""

from rewardkit.data.dataset import PreferenceDataset
from rewardkit.data.fingerprint import fingerprint
from rewardkit.data.formats import FORMATS, chat_template_renderer, detect_format, render_plain
from rewardkit.data.load import load_pairs
from rewardkit.data.rated import RatedDataset, load_rated
from rewardkit.data.readers import read_hf_dataset, read_records
from rewardkit.data.records import PreferencePair, RatedExample
from rewardkit.data.split import DatasetSplit, split_pairs
from rewardkit.lazy import lazy_exports

# RL transitions and segments need numpy: imported on first use, so the CLI starts as fast as before.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        name: "rewardkit.data.transitions"
        for name in (
            "Segments",
            "Transitions",
            "load_segments",
            "load_transitions",
            "save_segments",
            "save_transitions",
            "segments_from_transitions",
        )
    },
)

__all__ = [
    "FORMATS",
    "DatasetSplit",
    "PreferenceDataset",
    "PreferencePair",
    "RatedDataset",
    "RatedExample",
    "Segments",
    "Transitions",
    "chat_template_renderer",
    "detect_format",
    "fingerprint",
    "load_pairs",
    "load_rated",
    "load_segments",
    "load_transitions",
    "read_hf_dataset",
    "read_records",
    "render_plain",
    "save_segments",
    "save_transitions",
    "segments_from_transitions",
    "split_pairs",
]
