"""The studies on saved end-to-end answers (benchmarks/study_e2e_answers.py) on hand-made answers."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.e2e_metrics import Benchmark, OfferResult
from benchmarks.study_e2e_answers import (
    _best_f1_cut,
    audit_study,
    expected_f1_cut,
    oracle_cut,
    unsupervised_cut_study,
)


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


def test_expected_f1_cut_reads_the_chance_each_top_candidate_is_right() -> None:
    scores = np.array([0.9, 0.8, 0.3, 0.2])
    # Sure of the two high ones, sure the low ones are wrong: the cut keeps exactly the high ones.
    assert expected_f1_cut(scores, np.array([1.0, 1.0, 0.0, 0.0])) == pytest.approx(0.8)
    # When the low ones are as likely right as the high ones, accepting everything is best.
    assert expected_f1_cut(scores, np.full(4, 0.9)) == pytest.approx(0.2)
    assert expected_f1_cut(np.zeros(0), np.zeros(0)) is None


def test_unsupervised_cut_study_reports_each_label_free_cut_beside_the_served_one() -> None:
    results = {
        "a": OfferResult("match", ("p1",), 0.95, (0.95,)),
        "b": OfferResult("no_match", ("p2",), 0.1, (0.1,)),
        "c": OfferResult("match", ("p3",), 0.9, (0.9,)),
        "d": OfferResult("no_match", ("p4",), 0.05, (0.05,)),
    }
    study = unsupervised_cut_study(results, _bench(), (0.5, 0.2))
    assert study["served"]["cut"] == 0.5 and study["served"]["f1"] == pytest.approx(1.0)
    for name in ("plug-in", "mixture"):
        assert 0.05 <= study[name]["cut"] <= 0.95 and 0.0 <= study[name]["f1"] <= 1.0
    assert study["plug-in"]["f1"] == pytest.approx(1.0)  # calibrated scores this far apart cut between them
    fitted = study["beta_mixture"]
    assert fitted["means"][fitted["right_component"]] == max(fitted["means"])  # "right" is the upper component


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


def test_rerank_depth_keeps_only_the_blocking_s_first_candidates() -> None:
    from benchmarks.study_e2e_answers import at_rerank_depth, rerank_depth_study

    results = {
        # the right product p1 came third from blocking; the scorer put it first
        "a": OfferResult("match", ("p1", "x1", "x2"), 0.9, (0.9, 0.6, 0.2), (3, 1, 2)),
        "c": OfferResult("match", ("p3", "x3"), 0.8, (0.8, 0.1), (1, 2)),
    }
    cuts = (0.7, 0.4)
    at_two = at_rerank_depth(results, 2, cuts)
    assert at_two["a"].candidates == ("x1", "x2") and at_two["a"].decision == "review"  # 0.6: between the cuts
    assert at_two["c"] == results["c"]  # nothing beyond depth 2 to lose
    assert at_rerank_depth(results, 3, cuts) == results
    rows = rerank_depth_study(results, _bench(), cuts, [2, 3])
    assert [r["depth"] for r in rows] == [2, 3]
    assert rows[0]["recall"] == pytest.approx(0.5) and rows[1]["recall"] == pytest.approx(1.0)


def test_rerank_depth_needs_answers_with_blocking_ranks() -> None:
    from benchmarks.study_e2e_answers import at_rerank_depth

    with pytest.raises(ValueError, match="blocking ranks"):
        at_rerank_depth({"a": OfferResult("match", ("p1",), 0.9, (0.9,))}, 5, (0.7, 0.4))


def test_rerank_depth_cannot_replay_deeper_than_the_service_scored() -> None:
    from benchmarks.study_e2e_answers import at_rerank_depth

    # Served with RERANK_DEPTH=1: the second candidate came back unscored.
    served = {"a": OfferResult("match", ("p1", "x1"), 0.9, (0.9, None), (1, 2))}
    assert at_rerank_depth(served, 1, (0.7, 0.4)) == {"a": OfferResult("match", ("p1",), 0.9, (0.9,), (1,))}
    with pytest.raises(ValueError, match="deeper than the RERANK_DEPTH"):
        at_rerank_depth(served, 2, (0.7, 0.4))
