"""Match-class metrics: precision / recall / F1 at a threshold, best-F1 threshold, PR-AUC,
precision/recall against threshold (PR curve).

Conventions (METHODS §0): F1 is the F1 of the positive (match) class; a pair is predicted a match
iff ``score >= threshold``; the threshold is chosen on the clean validation split and reused
unchanged on test and on noisy test copies. Values are fractions in [0, 1] (tables multiply by
100). The threshold sweep itself lives in :mod:`models.calibration` so that the serving side can
use it without importing training code; this module re-exports it next to the other metrics.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np

from models.calibration import ThresholdChoice, pr_sweep, threshold_for_best_f1, threshold_for_precision

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BinaryScores:
    """Confusion counts and the match-class metrics derived from them."""

    tp: int
    fp: int
    fn: int
    tn: int
    precision: float
    recall: float
    f1: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def _arrays(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1).astype(np.int64)
    if s.shape != y.shape:
        raise ValueError(f"scores and labels differ in length: {s.shape[0]} != {y.shape[0]}")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("labels must be 0/1")
    return s, y


def scores_at(scores: np.ndarray, labels: np.ndarray, threshold: float) -> BinaryScores:
    """Confusion counts, precision, recall and F1 of the rule ``score >= threshold``.

    Undefined ratios (no predicted / no actual positives) are 0, so an empty prediction scores
    F1 = 0 rather than NaN.
    """
    s, y = _arrays(scores, labels)
    pred = s >= threshold
    tp = int(np.sum(pred & (y == 1)))
    fp = int(np.sum(pred & (y == 0)))
    fn = int(np.sum(~pred & (y == 1)))
    tn = int(np.sum(~pred & (y == 0)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return BinaryScores(tp, fp, fn, tn, precision, recall, f1)


def precision_recall_f1(scores: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[float, float, float]:
    """``(precision, recall, f1)`` at ``threshold`` (fractions in [0, 1])."""
    r = scores_at(scores, labels, threshold)
    return r.precision, r.recall, r.f1


def f1_at(scores: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    return scores_at(scores, labels, threshold).f1


def best_f1_threshold(scores: np.ndarray, labels: np.ndarray) -> ThresholdChoice:
    """Threshold with the highest match-class F1 on this data (METHODS §0: use clean validation)."""
    return threshold_for_best_f1(scores, labels)


def pr_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the precision-recall curve as average precision (step-wise, no interpolation).

    ``sum_k (R_k - R_{k-1}) * P_k`` over the distinct thresholds, the same definition as
    scikit-learn's ``average_precision_score``; 0 when there are no positives.
    """
    s, y = _arrays(scores, labels)
    if s.size == 0 or y.sum() == 0:
        return 0.0
    sweep = pr_sweep(s, y)
    recall = np.r_[0.0, sweep["recall"]]
    return float(np.sum(np.diff(recall) * sweep["precision"]))


def pr_curve(scores: np.ndarray, labels: np.ndarray, points: int = 50) -> list[dict[str, float]]:
    """Precision and recall of ``score >= t`` at ``points`` evenly spaced thresholds over [0, 1].

    Meant for calibrated validation probabilities (the matcher's ``calibration.json`` keeps it
    for the UI's chart). Returns ``[{"threshold", "precision", "recall"}, ...]`` with thresholds
    ascending from 0.0 to 1.0 inclusive, as plain floats (JSON-ready).

    Conventions: a threshold at which nothing is predicted a match has **precision 1.0** (no
    false positives were made; the curve ends at (recall 0, precision 1) instead of dropping to
    0 or NaN); recall is 0.0 when there are no positive labels. Note that :func:`scores_at`
    uses 0 for the same undefined precision, because there it feeds F1.
    """
    if points < 2:
        raise ValueError(f"points must be >= 2, got {points}")
    s, y = _arrays(scores, labels)
    n_pos = int(y.sum())
    pos_scores = np.sort(s[y == 1])
    neg_scores = np.sort(s[y == 0])
    thresholds = np.linspace(0.0, 1.0, points)
    # Pairs with score >= t: everything from the first index where the sorted score reaches t.
    tp = pos_scores.size - np.searchsorted(pos_scores, thresholds, side="left")
    fp = neg_scores.size - np.searchsorted(neg_scores, thresholds, side="left")
    curve = []
    for t, tp_t, fp_t in zip(thresholds, tp, fp):
        predicted = int(tp_t + fp_t)
        curve.append(
            {
                "threshold": float(t),
                "precision": float(tp_t / predicted) if predicted else 1.0,
                "recall": float(tp_t / n_pos) if n_pos else 0.0,
            }
        )
    return curve


__all__ = [
    "BinaryScores",
    "ThresholdChoice",
    "best_f1_threshold",
    "f1_at",
    "pr_auc",
    "pr_curve",
    "precision_recall_f1",
    "scores_at",
    "threshold_for_best_f1",
    "threshold_for_precision",
]
