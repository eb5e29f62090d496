"""Hybrid blocking: dense and BM25 candidates, ranked by one fused score, cut to k.

Per query the candidates are the dense blocker's top ``pool`` plus BM25's top
``lexical_candidates`` (an inverted-index search over the catalogue); each is scored
``cosine + weight * bm25 / max(bm25 among the query's candidates)`` and the best k go on to the
matcher. Normalising by the best lexical score keeps the weight meaningful across queries whose
BM25 scales differ by orders of magnitude, and candidates without any shared word keep their
dense order. The pool bounds the cost of the lexical re-scoring.

Why it helps: a contrastively trained blocker learns that brands and model words matter, and
then buries an offer whose labelled partner shares rare tokens but little meaning; BM25 keeps
those within reach (docs/benchmarks/blocker.md lists the cases), and intact part numbers keep
typo-noised queries in play.
"""

from __future__ import annotations

import numpy as np

#: Dense candidates per query, BM25 candidates per query, and the BM25 share of the fused
#: score. The weight was chosen on the validation splits of Amazon-Google and WDC Products;
#: the grid on every benchmark is in docs/benchmarks/blocker.md.
DEFAULT_POOL = 200
DEFAULT_LEXICAL_CANDIDATES = 50
DEFAULT_LEXICAL_WEIGHT = 0.3


def fuse(cosines: np.ndarray, lexical: np.ndarray, weight: float) -> np.ndarray:
    """``cosines + weight * lexical / max(lexical)`` along the last axis (the candidates)."""
    cos = np.asarray(cosines, dtype=np.float64)
    lex = np.asarray(lexical, dtype=np.float64)
    if cos.shape != lex.shape:
        raise ValueError(f"cosines {cos.shape} and lexical scores {lex.shape} differ in shape")
    if weight < 0:
        raise ValueError(f"weight must be >= 0, got {weight}")
    if lex.size == 0 or weight == 0:
        return cos
    top = lex.max(axis=-1, keepdims=True)
    scaled = np.divide(lex, top, out=np.zeros_like(lex), where=top > 0)
    return cos + weight * scaled


def hybrid_order(cosines: np.ndarray, lexical: np.ndarray, weight: float) -> np.ndarray:
    """Candidate positions in fused order: higher fused score first, ties kept in input order."""
    return np.argsort(-fuse(cosines, lexical, weight), kind="stable")
