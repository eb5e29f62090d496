"""The default matcher's head and the cuts it decides with.

The head (``head.py``) is fitted on the pooled validation pairs, the ranked lists' judged
candidates, or both (``RecipeConfig.head_fit``). Its match cuts are then chosen where the service
decides: on the top candidate of the ranked validation lists (``ranked.py``) of the *fully
judged* sources (every candidate labelled: catalogues of unique products, complete clusters;
all sources when none is), each source scored by a head fitted *without* it, so the cuts carry
the spread between catalogues a new catalogue meets rather than the in-source fit.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from models.lea import LeaCrossEncoder
from models.match_head import MatchHead, SignalFn, candidate_margins, feature_matrix, signal_rows
from models.matcher_io import PRECISION_TARGETS
from models.product_text import serialize_product
from training.default_recipe.head import fit_head, leave_source_out
from training.default_recipe.mixture import source_weights
from training.default_recipe.ranked import (
    UNKNOWN,
    RankedList,
    per_source_stats,
    subset,
    top1_cuts,
    top_decisions,
)

logger = logging.getLogger(__name__)

HEAD_FITS = ("pairs", "ranked", "both")


def ranked_features(
    model: LeaCrossEncoder,
    lists: Sequence[RankedList],
    fields: Sequence[str],
    signal_fn: SignalFn | None,
    n_signals: int,
    margin: bool,
    batch_size: int = 128,
) -> np.ndarray:
    """The head's feature rows of every list's candidates (flattened in list order), with the
    retrieval cosines and the margin over each list, as the service computes them."""
    pairs = [p for r in lists for p in r.pairs()]
    if not pairs:
        return np.zeros((0, 2 + n_signals + (2 if margin else 0)), dtype=np.float64)
    names = list(fields)
    texts = [(serialize_product(p.left, names), serialize_product(p.right, names)) for p in pairs]
    logits = model.predict_logits(texts, batch_size=batch_size).astype(np.float64)
    cosines = np.asarray([c for r in lists for c in r.cosines], dtype=np.float64)
    rows = signal_rows(signal_fn, [p.left for p in pairs], [p.right for p in pairs], n_signals)
    margins = candidate_margins(logits, [(p.source, p.left_id) for p in pairs]) if margin else None
    return feature_matrix(logits, cosines, rows, margins)


def _fit_rows(
    fit: str,
    pair_x: np.ndarray,
    pair_y: np.ndarray,
    pair_sources: Sequence[str],
    lists: Sequence[RankedList],
    ranked_x: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    if fit not in HEAD_FITS:
        raise ValueError(f"head_fit must be one of {HEAD_FITS}, got {fit!r}")
    labels = np.asarray([y for r in lists for y in r.labels], dtype=np.int64)
    judged = labels != UNKNOWN
    ranked_sources = [r.source for r in lists for _ in r.candidates]
    xs, ys, ss = [], [], []
    if fit in ("pairs", "both"):
        xs.append(pair_x)
        ys.append(np.asarray(pair_y, dtype=np.float64))
        ss += list(pair_sources)
    if fit in ("ranked", "both"):
        xs.append(ranked_x[judged])
        ys.append(labels[judged].astype(np.float64))
        ss += [s for s, keep in zip(ranked_sources, judged, strict=True) if keep]
    return np.concatenate(xs), np.concatenate(ys), ss


def fit_head_and_cuts(
    pair_x: np.ndarray,
    pair_y: np.ndarray,
    pair_sources: Sequence[str],
    lists: Sequence[RankedList],
    ranked_x: np.ndarray,
    feature_names: Sequence[str],
    *,
    fit: str = "pairs",
    signals: str,
    margin: bool,
    folds: int = 5,
    l2: float = 1.0,
    seed: int = 0,
    bi_encoder: str = "minilm",
    bi_encoder_max_length: int = 64,
    ranked_settings: dict[str, Any] | None = None,
) -> MatchHead:
    """The head fitted on the ``fit`` rows, with pairwise cuts from cross-fitting on them and
    top-1 cuts from the ranked lists (none without lists)."""
    x, y, sources = _fit_rows(fit, pair_x, pair_y, pair_sources, lists, ranked_x)
    head = fit_head(x, y, sources, feature_names, signals=signals, margin=margin, folds=folds, l2=l2, seed=seed,
                    bi_encoder=bi_encoder, bi_encoder_max_length=bi_encoder_max_length)  # fmt: skip
    head.valid["fit"] = fit
    if not lists:
        return head
    ranked_sources = [r.source for r in lists for _ in r.candidates]
    try:
        probs = leave_source_out(x, y, source_weights(sources), sources, ranked_x, ranked_sources, l2)
        scored_by = "leave-one-source-out"
    except ValueError as exc:
        # One source, or one whose absence leaves a single class: the cuts are read off the
        # head's own fit, which flatters them; the folder says so.
        logger.warning("top-1 cuts from the head's own fit: %s", exc)
        probs = head.apply(ranked_x)
        scored_by = "in-source"
    top = top_decisions(lists, probs)
    judged = np.asarray([r.fully_judged for r in lists], dtype=bool)
    basis = subset(top, judged) if judged.any() else top
    best, table = top1_cuts(basis, PRECISION_TARGETS)
    head = replace(
        head,
        top1_threshold=best["threshold"],
        top1_thresholds_for_precision={k: (None if v is None else v["threshold"]) for k, v in table.items()},
    )
    serving = table.get("0.95") or best
    head.valid["top1"] = {
        "scored_by": scored_by,
        "cuts_from": sorted(set(basis.sources)),
        "settings": dict(ranked_settings or {}),
        "best_f1": best,
        "for_precision": table,
        "per_source_at_0.95": per_source_stats(top, serving["threshold"]),
    }
    logger.info(
        "top-1 cuts (%s): best offer-F1 %.3f at %.4f (P %.3f, coverage %.3f); precision 0.95 at %s",
        scored_by,
        best["f1"],
        best["threshold"],
        best["precision"],
        best["coverage"],
        "none" if table.get("0.95") is None else f"{serving['threshold']:.4f} (coverage {serving['coverage']:.3f})",
    )
    return head


__all__ = ["HEAD_FITS", "fit_head_and_cuts", "ranked_features"]
