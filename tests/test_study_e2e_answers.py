"""The studies on saved end-to-end answers (benchmarks/study_e2e_answers.py) on hand-made answers."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.e2e_metrics import Benchmark, OfferResult
from benchmarks.study_e2e_answers import _best_f1_cut, audit_study, oracle_cut


def _bench() -> Benchmark:
    pairs = [("a", "p1", 1), ("b", "p2", 0), ("c", "p3", 1), ("d", "p4", 0)]
    return Benchmark("hand", [], [], pairs, known=list(pairs))


def test_oracle_cut_finds_the_cut_that_separates_the_labels() -> None:
    results = {
        "a": OfferResult("match", ("p1",), 0.9, (0.9,)),
        "b": OfferResult("match", ("p2",), 0.8, (0.8,)),  # a wrong match above a right one
        "c": OfferResult("review", ("p3",), 0.7, (0.7,)),
        "d": OfferResult("no_match", ("p4",), 0.1, (0.1,)),
    }
    best = oracle_cut(results, _bench())
    assert best["cut"] == pytest.approx(0.7)  # accepting a, b, c: F1 0.8 beats a alone (0.667)
    assert best["pairwise"]["f1"] == pytest.approx(0.8)


def test_best_f1_cut_weighs_the_labels() -> None:
    scores, labels = np.array([0.9, 0.6, 0.3]), np.array([1.0, 0.0, 1.0])
    assert _best_f1_cut(scores, labels, np.ones(3)) == pytest.approx(0.3)
    assert _best_f1_cut(scores, labels, np.array([1.0, 10.0, 1.0])) == pytest.approx(0.9)  # a heavy false match


def test_audit_study_labels_review_items_then_refits() -> None:
    results = {
        "a": OfferResult("review", ("p1",), 0.5, (0.5,)),
        "b": OfferResult("review", ("p2",), 0.4, (0.4,)),
        "c": OfferResult("match", ("p3",), 0.9, (0.9,)),
        "d": OfferResult("match", ("p4",), 0.8, (0.8,)),
    }
    rows = audit_study(results, _bench(), (0.7, 0.3), shares=[0.0], steps=[2], target_precision=0.9)
    assert {r["refit"] for r in rows} == {"service refit", "weighted best-F1 cut"}
    assert all(r["labels"] == 2 for r in rows)  # the two review items; no audit at share 0
    best = next(r for r in rows if r["refit"] == "weighted best-F1 cut")
    assert best["match_cut"] == pytest.approx(0.5)  # the labelled match's score
    assert best["f1_before"] == pytest.approx(best["f1_after"])  # c and d are decided alike at 0.7 and 0.5
