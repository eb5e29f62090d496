"""The conflict-demotion study (benchmarks/study_conflict_demotion.py) on hand-made answers."""

from __future__ import annotations

import pytest

from benchmarks.e2e_metrics import Benchmark, Offer, OfferResult
from benchmarks.study_conflict_demotion import study


def _bench() -> Benchmark:
    products = [
        {"external_id": "p1", "title": "Avanti DWF18V3S 18-Inch Dishwasher"},
        {"external_id": "p2", "title": "Sony WH-1000XM5 Headphones Black"},
    ]
    offers = [
        Offer("a", {"title": "Avanti DWT18V3S Dishwasher 18-Inch"}, ("a",)),  # a sibling model
        Offer("b", {"title": "Sony WH-1000XM5 Wireless Headphones"}, ("b",)),
    ]
    pairs = [("a", "p1", 0), ("b", "p2", 1)]
    return Benchmark("hand", products, offers, pairs, known=list(pairs))


def test_a_conflicting_wrong_match_is_demoted_and_f1_rises() -> None:
    answers = {
        "a": OfferResult("match", ("p1",), 0.9, (0.9,)),
        "b": OfferResult("match", ("p2",), 0.95, (0.95,)),
    }
    out = study(_bench(), answers)
    assert out["automatic_matches"] == 2
    assert out["f1"] == pytest.approx(100 * 2 / 3, abs=0.01)  # one right match of two
    rule = out["rules"]["identifier"]
    assert (rule["demoted"], rule["demoted_wrong_matches"]) == (1, 1)
    assert rule["f1"] == pytest.approx(100.0)
    assert out["rules"]["colour"]["demoted"] == 0  # only one side names a colour


def test_offers_sent_to_review_are_not_read() -> None:
    answers = {"a": OfferResult("review", ("p1",), 0.5, (0.5,)), "b": OfferResult("no_match", ("p2",), 0.1, (0.1,))}
    out = study(_bench(), answers)
    assert out["automatic_matches"] == 0
    assert all(r["demoted"] == 0 for r in out["rules"].values())
