"""Length-grouped batch order: batches of similar length, in a random order.

Dynamic padding pads each batch to its longest pair; with random batches a third of the
tokens were padding on product titles. Grouping (as the Hugging Face ``LengthGroupedSampler``
does) shuffles the pairs, cuts the shuffled order into mega-batches of ``mega`` batches, sorts
each mega-batch by length and cuts it into batches, then shuffles the batches. Every pair is
still used once per epoch and batch composition still changes every epoch; only pairs of very
different length rarely share a batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_MEGA_BATCHES = 50


def length_grouped_order(
    lengths: Sequence[int], batch_size: int, rng: np.random.Generator, mega: int = DEFAULT_MEGA_BATCHES
) -> np.ndarray:
    """A permutation of ``range(len(lengths))`` whose consecutive ``batch_size`` chunks group lengths."""
    if batch_size < 1 or mega < 1:
        raise ValueError("batch_size and mega must be >= 1")
    n = len(lengths)
    lens = np.asarray(lengths, dtype=np.int64)
    order = rng.permutation(n)
    span = batch_size * mega
    batches: list[np.ndarray] = []
    for start in range(0, n, span):
        block = order[start : start + span]
        # Longest first within the mega-batch; stable so equal lengths keep the shuffled order.
        block = block[np.argsort(-lens[block], kind="stable")]
        batches.extend(block[i : i + batch_size] for i in range(0, len(block), batch_size))
    # The only short batch is the last of the last mega-batch; keep it last so every other
    # batch is full, as with plain chunking.
    full, tail = batches, []
    if batches and len(batches[-1]) < batch_size:
        full, tail = batches[:-1], batches[-1:]
    shuffled = [full[i] for i in rng.permutation(len(full))] + tail
    return np.concatenate(shuffled) if shuffled else np.zeros(0, dtype=np.int64)


def padding_share(lengths: Sequence[int], order: np.ndarray, batch_size: int) -> float:
    """Share of padded positions when ``order`` is cut into batches of ``batch_size``."""
    lens = np.asarray(lengths, dtype=np.int64)
    real = padded = 0
    for start in range(0, len(order), batch_size):
        chunk = lens[order[start : start + batch_size]]
        real += int(chunk.sum())
        padded += int(chunk.max()) * len(chunk)
    return 0.0 if padded == 0 else 1.0 - real / padded


__all__ = ["DEFAULT_MEGA_BATCHES", "length_grouped_order", "padding_share"]
