"""Fit the calibrated head (:class:`models.match_head.MatchHead`) on the pooled validation set.

Weighted logistic regression (Newton's method, L2 on the standardised weights, not on the
intercept), every source weighted to the same total so no benchmark dominates. Thresholds are
chosen on *cross-fitted* probabilities (each pair scored by a head fitted without its fold), so
the cut is not read off the very scores the head was fitted to; the stored head is then fitted
on all pairs. Cuts: best F1, and the lowest cut whose monotone precision envelope reaches each
target (``models.calibration.threshold_for_precision``, envelope curve).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from models.calibration import log_loss, threshold_for_best_f1, threshold_for_precision
from models.match_head import MatchHead
from models.matcher_io import PRECISION_TARGETS
from training.default_recipe.mixture import source_weights
from training.metrics import pr_auc

logger = logging.getLogger(__name__)


def fit_logistic(
    x: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float = 1.0, iterations: int = 50
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """``(mean, scale, coef, intercept)`` of a weighted, L2-regularised logistic regression."""
    w = np.asarray(w, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    total = w.sum()
    mean = (w[:, None] * x).sum(0) / total
    scale = np.sqrt((w[:, None] * (x - mean) ** 2).sum(0) / total)
    scale = np.where(scale > 1e-9, scale, 1.0)  # a constant feature stays at z = 0
    z = np.concatenate([(x - mean) / scale, np.ones((x.shape[0], 1))], axis=1)
    beta = np.zeros(z.shape[1])
    penalty = np.full(z.shape[1], l2)
    penalty[-1] = 0.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ beta, -60, 60)))
        grad = z.T @ (w * (p - y)) + penalty * beta
        hess = (z * (w * p * (1 - p))[:, None]).T @ z + np.diag(penalty) + 1e-9 * np.eye(z.shape[1])
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return mean, scale, beta[:-1], float(beta[-1])


def logistic_probabilities(
    x: np.ndarray, mean: np.ndarray, scale: np.ndarray, coef: np.ndarray, intercept: float
) -> np.ndarray:
    """Probabilities of the rows of ``x`` under a fitted :func:`fit_logistic` head."""
    return 1.0 / (1.0 + np.exp(-np.clip(((x - mean) / scale) @ coef + intercept, -60, 60)))


def _folds(sources: Sequence[str], labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold of every pair, stratified by (source, label) so each fold sees every source."""
    rng = np.random.default_rng(seed)
    fold = np.zeros(len(labels), dtype=np.int64)
    keys = [f"{s}|{int(y)}" for s, y in zip(sources, labels, strict=True)]
    for key in sorted(set(keys)):
        idx = np.flatnonzero(np.asarray(keys) == key)
        fold[rng.permutation(idx)] = np.arange(idx.size) % k
    return fold


def cross_fitted(
    x: np.ndarray, y: np.ndarray, w: np.ndarray, sources: Sequence[str], k: int, l2: float, seed: int
) -> np.ndarray:
    """Out-of-fold probabilities of the head (every pair scored by a head not fitted on it)."""
    fold = _folds(sources, y, k, seed)
    out = np.zeros(len(y), dtype=np.float64)
    for f in range(k):
        test = fold == f
        if not test.any() or test.all():
            continue
        out[test] = logistic_probabilities(x[test], *fit_logistic(x[~test], y[~test], w[~test], l2))
    return out


def fit_head(
    features: np.ndarray,
    labels: np.ndarray,
    sources: Sequence[str],
    feature_names: Sequence[str],
    *,
    signals: str,
    margin: bool,
    folds: int = 5,
    l2: float = 1.0,
    seed: int = 0,
    bi_encoder: str = "minilm",
    bi_encoder_max_length: int = 64,
) -> MatchHead:
    """The head fitted on all pairs, with thresholds and validation numbers from cross-fitting."""
    y = np.asarray(labels, dtype=np.float64)
    if y.sum() == 0 or y.sum() == y.size:
        raise ValueError("the head needs both matches and non-matches in the validation set")
    w = source_weights(sources)
    oof = cross_fitted(features, y, w, sources, max(2, folds), l2, seed)
    best = threshold_for_best_f1(oof, y)
    for_precision = {str(t): threshold_for_precision(oof, y, t, curve="envelope") for t in PRECISION_TARGETS}
    mean, scale, coef, intercept = fit_logistic(features, y, w, l2)
    valid: dict[str, Any] = {
        "pairs": int(y.size),
        "positives": int(y.sum()),
        "cross_fitted": {
            "folds": max(2, folds),
            "best_f1": best.to_dict(),
            "for_precision": {k: (None if v is None else v.to_dict()) for k, v in for_precision.items()},
            "pr_auc": pr_auc(oof, y.astype(np.int64)),
            "log_loss": log_loss(oof, y),
        },
        "per_source": per_source_metrics(oof, y, sources, best.threshold),
    }
    head = MatchHead(
        feature_names=tuple(feature_names),
        signals=signals,
        margin=margin,
        mean=mean,
        scale=scale,
        coef=coef,
        intercept=intercept,
        threshold=best.threshold,
        thresholds_for_precision={k: (None if v is None else v.threshold) for k, v in for_precision.items()},
        bi_encoder=bi_encoder,
        bi_encoder_max_length=bi_encoder_max_length,
        valid=valid,
    )
    logger.info(
        "head: %s; cross-fitted pooled valid F1 %.4f at %.4f (P %.3f R %.3f), PR-AUC %.4f",
        ", ".join(f"{n} {c:+.2f}" for n, c in zip(feature_names, coef, strict=True)),
        best.f1,
        best.threshold,
        best.precision,
        best.recall,
        valid["cross_fitted"]["pr_auc"],
    )
    return head


def leave_source_out(
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    sources: Sequence[str],
    predict_x: np.ndarray,
    predict_sources: Sequence[str],
    l2: float = 1.0,
) -> np.ndarray:
    """Probabilities of the ``predict_x`` rows, each from a head fitted without its source.

    What a new catalogue meets is a head that never saw it: these scores, unlike in-source
    cross-fitting, carry the spread between catalogues into the cuts chosen on them.
    """
    fit_names = np.asarray(list(sources))
    pred_names = np.asarray(list(predict_sources))
    out = np.zeros(len(pred_names), dtype=np.float64)
    for name in sorted(set(pred_names)):
        keep = fit_names != name
        if len(set(y[keep].tolist())) < 2:
            raise ValueError(f"leaving {name} out leaves no fitting set with both classes")
        sel = pred_names == name
        out[sel] = logistic_probabilities(predict_x[sel], *fit_logistic(x[keep], y[keep], w[keep], l2))
    return out


def f1_at(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """Precision, recall and F1 of ``scores >= threshold``."""
    pred = np.asarray(scores) >= threshold
    y = np.asarray(labels).astype(bool)
    tp = float((pred & y).sum())
    precision = tp / max(1.0, float(pred.sum()))
    recall = tp / max(1.0, float(y.sum()))
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"f1": f1, "precision": precision, "recall": recall}


def per_source_metrics(
    scores: np.ndarray, labels: np.ndarray, sources: Sequence[str], threshold: float
) -> dict[str, dict[str, float]]:
    """Each source's F1 at the pooled threshold and at its own best threshold."""
    out: dict[str, dict[str, float]] = {}
    names = np.asarray(list(sources))
    for name in sorted(set(sources)):
        sel = names == name
        y = np.asarray(labels)[sel]
        row = {"pairs": int(sel.sum()), **f1_at(np.asarray(scores)[sel], y, threshold)}
        if y.sum():
            row["oracle_f1"] = threshold_for_best_f1(np.asarray(scores)[sel], y).f1
        out[name] = row
    return out


__all__ = [
    "cross_fitted",
    "f1_at",
    "fit_head",
    "fit_logistic",
    "leave_source_out",
    "logistic_probabilities",
    "per_source_metrics",
]
