"""kNN label-disagreement noise scores on pair embeddings (METHODS §7.2, MOIT detection step).

Every labelled pair is compared with its ``k`` nearest labelled pairs (cosine, self excluded):

1. first vote: the share ``v_i`` of neighbours labelled "match";
2. corrected label ``ĉ_i`` = the vote's winner *after dividing by the class priors* [ours]: with
   ~10 % matches a plain majority would call every pair a non-match, which makes the second
   vote constant (this is the class-imbalance problem the spec's pair adaptation points at);
3. second vote over the neighbours' corrected labels gives ``p_i(c)``; discrepancy
   ``d_i = -log clip(p_i(y_i), 0.01, 0.99)``. The noise probability is ``1 - q_i(y_i)`` with
   ``q_i(c) ∝ p_i(c) / π'_c`` the second vote balanced by the share ``π'`` of corrected labels
   [ours], for the same reason as in step 2: a true match with 7 matching neighbours among 25
   is a clear match at a 10 % base rate, not a 28 % one.

A pair is flagged when its balanced second-vote winner differs from its label (MOIT's "clean
if the kNN argmax equals the label"), or, with ``rate``, when it is among the ``rate`` share of
its labelled class with the highest discrepancy (the spec's per-class selection for pairs).

Pair features (spec): ``[u, v, |u - v|, u ⊙ v]`` of the two sides' bi-encoder embeddings
(:func:`pair_features`); the trainer can instead use the matcher's own [CLS] state (MOIT uses
the features of the network being trained), see :mod:`training.noise.detect`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import faiss
import numpy as np

logger = logging.getLogger(__name__)

_CLIP = (0.01, 0.99)


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def pair_features(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """L2-normalised ``[u, v, |u - v|, u ⊙ v]`` rows (float32) for side embeddings ``u``, ``v``."""
    u = np.asarray(u, dtype=np.float32)
    v = np.asarray(v, dtype=np.float32)
    if u.shape != v.shape:
        raise ValueError(f"side embeddings differ in shape: {u.shape} vs {v.shape}")
    return _unit(np.hstack([u, v, np.abs(u - v), u * v])).astype(np.float32)


def knn_indices(features: np.ndarray, k: int) -> np.ndarray:
    """(n, k') exact cosine neighbours of every row, self excluded, ``k' = min(k, n - 1)``.

    Ties are broken by row index (stable), so the result does not depend on batch order.
    """
    x = np.ascontiguousarray(_unit(np.asarray(features, dtype=np.float32)))
    n = x.shape[0]
    k = min(int(k), n - 1)
    if k < 1:
        raise ValueError("kNN detection needs at least two labelled pairs")
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    scores, found = index.search(x, k + 1)
    out = np.empty((n, k), dtype=np.int64)
    for i in range(n):
        keep = found[i] != i
        ids, sc = found[i][keep], scores[i][keep]
        # Rounded scores so float noise does not decide ties; then by index.
        order = np.lexsort((ids, -np.round(sc, 6)))
        out[i] = ids[order][:k]
    return out


def knn_noise_probability(
    features: np.ndarray,
    labels: np.ndarray | Sequence[int],
    *,
    k: int = 25,
    rate: float | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """``(p_noise (n,), flagged (n,) bool, details)`` from the two-round kNN vote.

    ``details`` holds ``corrected_labels`` (ĉ), ``discrepancy`` (d) and ``k`` (arrays per pair).
    """
    labels = np.asarray(labels, dtype=np.int64)
    if features.shape[0] != labels.shape[0]:
        raise ValueError(f"{features.shape[0]} feature rows for {labels.shape[0]} labels")
    neighbours = knn_indices(features, k)
    prior1 = float(labels.mean())
    prior1 = min(max(prior1, 1e-6), 1 - 1e-6)
    vote1 = labels[neighbours].mean(axis=1)
    corrected = (vote1 / prior1 > (1.0 - vote1) / (1.0 - prior1)).astype(np.int64)
    p_match = corrected[neighbours].mean(axis=1)
    p_label = np.where(labels == 1, p_match, 1.0 - p_match)
    discrepancy = -np.log(np.clip(p_label, *_CLIP))
    prior2 = min(max(float(corrected.mean()), 1e-6), 1 - 1e-6)
    odds1, odds0 = p_match / prior2, (1.0 - p_match) / (1.0 - prior2)
    q_match = odds1 / (odds1 + odds0)
    p_noise = np.where(labels == 1, 1.0 - q_match, q_match)
    if rate is None:
        flagged = p_noise > 0.5
    else:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be in [0, 1], got {rate}")
        flagged = np.zeros(labels.shape[0], dtype=bool)
        for c in (0, 1):
            members = np.flatnonzero(labels == c)
            n_drop = int(round(rate * members.size))
            if n_drop:
                order = members[np.lexsort((members, -discrepancy[members]))]
                flagged[order[:n_drop]] = True
    details = {"corrected_labels": corrected, "discrepancy": discrepancy, "k": int(neighbours.shape[1])}
    return p_noise, flagged, details


__all__ = ["knn_indices", "knn_noise_probability", "pair_features"]
