"""Evaluate a recommender on a :class:`~training.recommend.benchmark.RecommendBenchmark`.

A recommender is anything with ``encode_queries(texts) -> (n, d)`` and
``label_vectors(keys, texts) -> (n_labels, d)`` (unit vectors, exact inner product search),
an ``automation`` attribute (``cosine`` - the top-1 score, ``margin`` - top-1 minus top-2, or
``pair`` - the ALC pair-head probability, which needs ``pair_head`` / ``pair_probabilities``).
Coverage is reported for the model's own score and, under ``coverage_by_score``, for each.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Protocol

import numpy as np

from models.recommender import automation_score
from training.recommend.benchmark import QuerySet, RecommendBenchmark
from training.recommend.metrics import DEFAULT_TARGETS, choose_threshold, coverage_at, precision_recall_at, top_k

logger = logging.getLogger(__name__)

RANK_DEPTH = 100


class Recommender(Protocol):
    def encode_queries(self, texts: list[str]) -> np.ndarray: ...

    def label_vectors(self, keys: list[str], texts: list[str]) -> np.ndarray: ...


def _rank(rec: Recommender, queries: QuerySet, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    q = rec.encode_queries(queries.texts) if len(queries) else np.zeros((0, labels.shape[1]), dtype=np.float32)
    if len(queries) == 0:
        empty = np.zeros((0, min(RANK_DEPTH, labels.shape[0])), dtype=np.int64)
        return empty, empty.astype(np.float32), q
    ranked, scores = top_k(q @ labels.T, RANK_DEPTH)
    return ranked, scores, q


def _score_sets(
    rec: Any, q: np.ndarray, labels: np.ndarray, ranked: np.ndarray, scores: np.ndarray
) -> dict[str, np.ndarray]:
    """Every automation score the model offers: top-1 cosine, top-1 minus top-2 margin, pair head."""
    if len(ranked) == 0:
        return {"cosine": np.zeros(0), "margin": np.zeros(0)}
    top1 = labels[ranked[:, 0]]
    out = {name: automation_score(name, q, top1, scores) for name in ("cosine", "margin")}
    if getattr(rec, "pair_head", None) is not None:
        out["pair"] = np.asarray(rec.pair_probabilities(q, top1), dtype=np.float64)
    return out


def _ranking_metrics(ranked: np.ndarray, targets: list[list[int]]) -> dict[str, float]:
    m = precision_recall_at(ranked, targets, (1, 5, 10, 100))
    return {"p@1": m["p@1"], "p@5": m["p@5"], "r@10": m["r@10"], "r@100": m["r@100"]}


def _clean(value: float | None) -> float | None:
    if value is None or (isinstance(value, float) and (math.isnan(value) or math.isinf(value))):
        return None
    return round(float(value), 6)


def evaluate_recommender(
    rec: Recommender, bench: RecommendBenchmark, targets: tuple[float, ...] = DEFAULT_TARGETS
) -> dict[str, Any]:
    """Test P@1, P@5, R@10, R@100; coverage / precision at each target precision (threshold on valid).

    Seen and unseen test queries are also reported separately (``seen`` / ``unseen``).
    """
    labels = np.asarray(rec.label_vectors(bench.label_keys, bench.label_texts), dtype=np.float32)
    ranked, scores, q = _rank(rec, bench.test, labels)
    correct = np.array([int(ranked[i, 0]) in set(t) for i, t in enumerate(bench.test.targets)], dtype=bool)
    kind = getattr(rec, "automation", "cosine")
    test_sets = _score_sets(rec, q, labels, ranked, scores)
    auto = test_sets[kind]
    out: dict[str, Any] = dict(_ranking_metrics(ranked, bench.test.targets))

    threshold_split = "valid"
    if bench.valid is not None and len(bench.valid):
        v_ranked, v_scores, v_q = _rank(rec, bench.valid, labels)
        v_correct = np.array([int(v_ranked[i, 0]) in set(t) for i, t in enumerate(bench.valid.targets)], dtype=bool)
        valid_sets = _score_sets(rec, v_q, labels, v_ranked, v_scores)
        out["valid_p@1"] = float(v_correct.mean())
    else:
        # No validation split: the threshold would have to be fitted on test itself; say so.
        logger.warning("%s has no valid queries: coverage thresholds are chosen on test", bench.name)
        threshold_split, valid_sets, v_correct = "test", test_sets, correct
    v_auto = valid_sets[kind]
    thresholds: dict[str, Any] = {}
    for target in targets:
        choice = choose_threshold(v_auto, v_correct, target)
        cov, prec = coverage_at(auto, correct, choice.threshold)
        out[f"coverage@{target:g}"] = cov
        out[f"precision@{target:g}"] = prec
        thresholds[f"{target:g}"] = {
            "threshold": _clean(choice.threshold),
            "valid_coverage": _clean(choice.valid_coverage),
            "valid_precision": _clean(choice.valid_precision),
        }
    out["thresholds"] = thresholds
    out["automation"] = kind
    # The same coverage protocol for every automation score the model offers (ALC: pair head).
    by_score: dict[str, Any] = {}
    for name, values in test_sets.items():
        entry: dict[str, Any] = {}
        for target in targets:
            choice = choose_threshold(valid_sets[name], v_correct, target)
            cov, prec = coverage_at(values, correct, choice.threshold)
            entry[f"coverage@{target:g}"], entry[f"precision@{target:g}"] = _clean(cov), _clean(prec)
            entry[f"threshold@{target:g}"] = _clean(choice.threshold)
        by_score[name] = entry
    out["coverage_by_score"] = by_score
    out["threshold_split"] = threshold_split
    out["queries"] = len(bench.test)
    out["labels"] = bench.n_labels
    for name, mask in (("seen", bench.test.seen), ("unseen", ~bench.test.seen)):
        idx = np.flatnonzero(mask)
        if len(idx) == 0:
            continue
        part = _ranking_metrics(ranked[idx], [bench.test.targets[i] for i in idx])
        part["queries"] = len(idx)
        for target in targets:
            t = thresholds[f"{target:g}"]["threshold"]
            cov, prec = coverage_at(auto[idx], correct[idx], math.inf if t is None else t)
            part[f"coverage@{target:g}"], part[f"precision@{target:g}"] = cov, prec
        out[name] = {k: _clean(v) if isinstance(v, float) else v for k, v in part.items()}
    return {k: _clean(v) if isinstance(v, float) else v for k, v in out.items()}


def calibrate_thresholds(
    rec: Recommender, bench: RecommendBenchmark, targets: tuple[float, ...] = DEFAULT_TARGETS
) -> dict[str, Any]:
    """Automation thresholds chosen on the validation queries (stored in the model's manifest)."""
    if bench.valid is None or len(bench.valid) == 0:
        return {}
    labels = np.asarray(rec.label_vectors(bench.label_keys, bench.label_texts), dtype=np.float32)
    ranked, scores, q = _rank(rec, bench.valid, labels)
    correct = np.array([int(ranked[i, 0]) in set(t) for i, t in enumerate(bench.valid.targets)], dtype=bool)
    auto = _score_sets(rec, q, labels, ranked, scores)[getattr(rec, "automation", "cosine")]
    out: dict[str, Any] = {"valid_p@1": _clean(float(correct.mean())), "valid_queries": len(bench.valid)}
    for target in targets:
        choice = choose_threshold(auto, correct, target)
        out[f"{target:g}"] = {
            "threshold": _clean(choice.threshold),
            "valid_coverage": _clean(choice.valid_coverage),
            "valid_precision": _clean(choice.valid_precision),
        }
    return out
