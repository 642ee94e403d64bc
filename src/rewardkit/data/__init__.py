"""Preference data: read files or datasets, normalise formats, split by group, fingerprint.

>>> from rewardkit.data import load_pairs
>>> data = load_pairs("hh-rlhf-harmless-base-test.jsonl.gz")  # doctest: +SKIP
>>> parts = data.split((0.8, 0.1, 0.1), seed=0)  # doctest: +SKIP
"""

from rewardkit.data.dataset import PreferenceDataset
from rewardkit.data.fingerprint import fingerprint
from rewardkit.data.formats import FORMATS, chat_template_renderer, detect_format, render_plain
from rewardkit.data.load import load_pairs
from rewardkit.data.readers import read_hf_dataset, read_records
from rewardkit.data.records import PreferencePair
from rewardkit.data.split import DatasetSplit, split_pairs

__all__ = [
    "FORMATS",
    "DatasetSplit",
    "PreferenceDataset",
    "PreferencePair",
    "chat_template_renderer",
    "detect_format",
    "fingerprint",
    "load_pairs",
    "read_hf_dataset",
    "read_records",
    "render_plain",
    "split_pairs",
]
