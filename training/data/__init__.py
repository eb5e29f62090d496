"""Benchmark data for training: typed records, format readers and typo noise.

Record serialisation lives in :mod:`models.product_text` (shared with serving).
"""

from __future__ import annotations

from training.data.readers import (
    FORMATS,
    data_root,
    load_dataset,
    read_deepmatcher,
    read_ditto,
    read_wdc_block,
    read_wdc_products,
)
from training.data.records import Pair, PairDataset, Record
from training.data.typos import (
    KBD,
    P_KBD,
    P_SIDE,
    P_WORD,
    TYPO_VERSION,
    TypoAugmenter,
    noisy_copy,
    typo,
    typo_serialized,
    typo_word,
)

__all__ = [
    "FORMATS",
    "KBD",
    "P_KBD",
    "P_SIDE",
    "P_WORD",
    "TYPO_VERSION",
    "Pair",
    "PairDataset",
    "Record",
    "TypoAugmenter",
    "data_root",
    "load_dataset",
    "noisy_copy",
    "read_deepmatcher",
    "read_ditto",
    "read_wdc_block",
    "read_wdc_products",
    "typo",
    "typo_serialized",
    "typo_word",
]
