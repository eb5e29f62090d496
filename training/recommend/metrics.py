"""Ranking metrics (P@k, R@k) and coverage at a target precision (METHODS §6.3).

Coverage: the top-1 recommendation of a query is automated when its score reaches a threshold
``t``; ``t`` is chosen on validation as the lowest score whose automated set still meets the
target precision (the largest such set), and test coverage / precision are reported at that
``t``. Every query counts in the denominator, including those whose product is not reachable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_TARGETS: tuple[float, ...] = (0.95, 0.98)


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and scores of the ``k`` best columns per row, best first (ties: lower index first)."""
    n_rows, n_cols = scores.shape
    k = max(1, min(k, n_cols))
    if k < n_cols:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        part = np.tile(np.arange(n_cols), (n_rows, 1))
    part_scores = np.take_along_axis(scores, part, axis=1)
    # lexsort: primary key score (descending), secondary column index (ascending) for stable ties.
    order = np.lexsort((part, -part_scores), axis=1)
    idx = np.take_along_axis(part, order, axis=1)
    return idx, np.take_along_axis(scores, idx, axis=1)


def precision_recall_at(ranked: np.ndarray, targets: Sequence[Sequence[int]], ks: Sequence[int]) -> dict[str, float]:
    """``p@k`` and ``r@k`` for every k (both reported; callers pick the ones they need)."""
    out: dict[str, float] = {}
    n = len(targets)
    if n == 0:
        return {**{f"p@{k}": float("nan") for k in ks}, **{f"r@{k}": float("nan") for k in ks}}
    sets = [set(int(t) for t in ts) for ts in targets]
    for k in ks:
        hits = np.array([len(set(ranked[i, :k].tolist()) & sets[i]) for i in range(n)], dtype=float)
        sizes = np.array([max(1, len(s)) for s in sets], dtype=float)
        out[f"p@{k}"] = float(np.mean(hits / k))
        out[f"r@{k}"] = float(np.mean(hits / sizes))
    return out


@dataclass(frozen=True)
class CoverageThreshold:
    target: float
    threshold: float  # +inf when no threshold reaches the target precision
    valid_coverage: float
    valid_precision: float | None


def choose_threshold(scores: np.ndarray, correct: np.ndarray, target: float) -> CoverageThreshold:
    """Lowest score threshold whose automated set reaches ``target`` precision (largest coverage).

    Cuts are only placed between distinct scores: ``s >= t`` automates every tied query.
    """
    scores = np.asarray(scores, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    n = len(scores)
    if n == 0:
        return CoverageThreshold(target, math.inf, 0.0, None)
    order = np.argsort(-scores, kind="stable")
    s, c = scores[order], correct[order]
    cum_correct = np.cumsum(c)
    sizes = np.arange(1, n + 1)
    precision = cum_correct / sizes
    # A prefix ending at i is a valid cut only if the next score is strictly lower.
    boundary = np.append(s[1:] < s[:-1], True)
    ok = np.flatnonzero((precision >= target) & boundary)
    if len(ok) == 0:
        return CoverageThreshold(target, math.inf, 0.0, None)
    last = int(ok[-1])
    return CoverageThreshold(target, float(s[last]), float(sizes[last] / n), float(precision[last]))


def coverage_at(scores: np.ndarray, correct: np.ndarray, threshold: float) -> tuple[float, float | None]:
    """Coverage (share of all queries automated) and precision of the automated set at ``threshold``."""
    scores = np.asarray(scores, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    if len(scores) == 0:
        return 0.0, None
    automated = scores >= threshold
    count = int(automated.sum())
    if count == 0:
        return 0.0, None
    return count / len(scores), float(correct[automated].mean())
