"""NGAME-style cluster batching (METHODS §4.6): similar queries share a batch.

Training queries are grouped by their (stale) embeddings into balanced clusters of ``c``; the
clusters are shuffled and concatenated into batches, so each batch's labels are hard in-batch
negatives for one another. ``c`` grows during training (4 -> 8 -> 16 at 1/6, 1/3, 1/2).
"""

from __future__ import annotations

import numpy as np

from models.prime import balanced_kmeans

CLUSTER_SIZES: tuple[int, ...] = (4, 8, 16)
MILESTONES: tuple[float, ...] = (1 / 6, 1 / 3, 1 / 2)


def cluster_size(
    progress: float, sizes: tuple[int, ...] = CLUSTER_SIZES, milestones: tuple[float, ...] = MILESTONES
) -> int:
    """Cluster size at ``progress`` in [0, 1) of training: ``sizes[i]`` after the i-th milestone."""
    passed = sum(1 for m in milestones if progress >= m - 1e-9)
    return sizes[min(passed, len(sizes) - 1)]


def cluster_batches(embeddings: np.ndarray, size: int, batch_size: int, seed: int) -> list[list[int]]:
    """Row indices in batches of ``batch_size``, built from shuffled balanced clusters of ``size``."""
    n = len(embeddings)
    if n == 0:
        return []
    rng = np.random.default_rng(seed)
    ids = balanced_kmeans(embeddings, leaf_size=max(1, size), seed=seed)
    groups = [np.flatnonzero(ids == c) for c in range(int(ids.max()) + 1)]
    order = rng.permutation(len(groups))
    flat = np.concatenate([groups[i] for i in order]).tolist()
    return [flat[i : i + batch_size] for i in range(0, n, batch_size)]
