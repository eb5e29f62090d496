"""Match-class metrics: counts, F1 at a threshold, best-F1 search, PR-AUC against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score

from training.metrics import best_f1_threshold, f1_at, pr_auc, pr_curve, precision_recall_f1, scores_at


def test_scores_at_counts_and_ratios() -> None:
    scores = np.array([0.9, 0.8, 0.4, 0.3, 0.6])
    labels = np.array([1, 0, 1, 0, 1])
    r = scores_at(scores, labels, 0.5)
    assert (r.tp, r.fp, r.fn, r.tn) == (2, 1, 1, 1)
    assert r.precision == pytest.approx(2 / 3) and r.recall == pytest.approx(2 / 3)
    assert r.f1 == pytest.approx(2 / 3)
    assert precision_recall_f1(scores, labels, 0.5) == (r.precision, r.recall, r.f1)
    # The threshold is inclusive.
    assert scores_at(scores, labels, 0.9).tp == 1


def test_empty_prediction_is_zero_not_nan() -> None:
    r = scores_at(np.array([0.1, 0.2]), np.array([1, 0]), 0.5)
    assert r.precision == 0.0 and r.recall == 0.0 and r.f1 == 0.0
    assert scores_at(np.array([0.1, 0.2]), np.array([0, 0]), 0.0).recall == 0.0


def test_f1_matches_sklearn_and_best_threshold_is_the_max() -> None:
    rng = np.random.default_rng(0)
    labels = (rng.random(400) < 0.2).astype(int)
    scores = labels * 0.8 + rng.normal(0, 0.5, 400)
    for t in (-0.5, 0.0, 0.3, 0.7, 1.2):
        assert f1_at(scores, labels, t) == pytest.approx(f1_score(labels, scores >= t, zero_division=0))
    best = best_f1_threshold(scores, labels)
    exhaustive = max(f1_score(labels, scores >= t, zero_division=0) for t in np.unique(scores))
    assert best.f1 == pytest.approx(exhaustive)
    assert f1_at(scores, labels, best.threshold) == pytest.approx(best.f1)


def test_pr_auc_equals_average_precision() -> None:
    rng = np.random.default_rng(1)
    labels = (rng.random(300) < 0.3).astype(int)
    scores = np.round(labels * 0.5 + rng.normal(0, 0.5, 300), 1)  # rounding creates ties
    assert pr_auc(scores, labels) == pytest.approx(average_precision_score(labels, scores))
    assert pr_auc(np.array([0.9, 0.1]), np.array([1, 0])) == pytest.approx(1.0)
    assert pr_auc(np.array([0.9, 0.1]), np.array([0, 0])) == 0.0


def test_pr_curve_sweeps_evenly_spaced_thresholds() -> None:
    rng = np.random.default_rng(2)
    labels = (rng.random(200) < 0.3).astype(int)
    probs = np.clip(labels * 0.4 + rng.random(200) * 0.6, 0.0, 1.0)
    probs[:3] = [0.0, 1.0, 0.5]  # scores exactly on a threshold count as predicted (>=)
    curve = pr_curve(probs, labels, points=21)
    assert [p["threshold"] for p in curve] == pytest.approx(np.linspace(0.0, 1.0, 21))
    for point in curve:
        r = scores_at(probs, labels, point["threshold"])
        assert point["recall"] == pytest.approx(r.recall)
        assert point["precision"] == pytest.approx(r.precision if r.tp + r.fp else 1.0)
        assert all(type(v) is float for v in point.values())  # JSON-ready
    assert curve[0]["recall"] == 1.0 and curve[0]["precision"] == pytest.approx(labels.mean())
    recalls = [p["recall"] for p in curve]
    assert recalls == sorted(recalls, reverse=True)
    assert len(pr_curve(probs, labels)) == 50


def test_pr_curve_precision_is_one_when_nothing_is_predicted() -> None:
    curve = pr_curve(np.array([0.2, 0.4, 0.6]), np.array([0, 1, 1]), points=3)  # t = 0, 0.5, 1
    assert curve == [
        {"threshold": 0.0, "precision": pytest.approx(2 / 3), "recall": 1.0},
        {"threshold": 0.5, "precision": 1.0, "recall": 0.5},
        {"threshold": 1.0, "precision": 1.0, "recall": 0.0},  # nothing predicted: the 1.0 convention
    ]
    assert [p["recall"] for p in pr_curve(np.array([0.3, 0.9]), np.array([0, 0]), points=2)] == [0.0, 0.0]
    with pytest.raises(ValueError):
        pr_curve(np.array([0.3]), np.array([1]), points=1)


def test_length_mismatch_raises() -> None:
    with pytest.raises(ValueError):
        scores_at(np.array([0.1]), np.array([0, 1]), 0.5)
