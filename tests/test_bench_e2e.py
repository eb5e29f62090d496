"""benchmarks/bench_e2e.py: the metrics on hand-made decisions, the benchmark reader, and one
whole run against the real service on a generated dozen-product catalogue."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import pytest

from benchmarks import bench_e2e
from benchmarks.e2e_metrics import (
    MATCH,
    NO_MATCH,
    REVIEW,
    Offer,
    OfferResult,
    Truth,
    evaluate,
    load_benchmark,
    offer_key,
    record_fields,
    redecide,
    reviewer_label,
)
from tests.training.test_eval_matcher import train_tiny_matcher, write_tiny_deepmatcher

# Test pairs of six offers; "c" has its true match (p8) labelled in the training split only.
PAIRS = [
    ("a", "p1", 1),
    ("a", "p2", 0),
    ("b", "p3", 1),
    ("c", "p4", 0),
    ("d", "p5", 1),
    ("d", "p6", 0),
    ("e", "p7", 0),
    ("f", "p10", 0),
]
KNOWN = [*PAIRS, ("c", "p8", 1)]
RESULTS = {
    "a": OfferResult(MATCH, ("p1", "p2")),  # right
    "b": OfferResult(REVIEW, ("p3",)),  # right product, left to a person
    "c": OfferResult(MATCH, ("p8", "p4")),  # right by the training split's label
    "d": OfferResult(MATCH, ("p6", "p5")),  # wrong: the true match is second
    "e": OfferResult(MATCH, ("p9",)),  # nobody knows: no label on p9, no true match known
    "f": OfferResult(NO_MATCH, ("p10",)),
}


def test_metrics_of_hand_made_decisions() -> None:
    m = evaluate(RESULTS, PAIRS, KNOWN)
    # Pairs: a-p1 tp, d-p6 fp, b-p3 and d-p5 fn.
    assert m["pairwise"]["tp"] == 1 and m["pairwise"]["fp"] == 1 and m["pairwise"]["fn"] == 2
    assert m["pairwise"]["precision"] == pytest.approx(0.5)
    assert m["pairwise"]["f1"] == pytest.approx(0.4)
    # Review counted as match adds b-p3.
    assert m["pairwise_review_as_match"]["f1"] == pytest.approx(2 / 3)
    assert m["offers"] == 6 and m["pairs"] == 8 and m["positive_pairs"] == 3
    assert m["decisions"] == {MATCH: 4, REVIEW: 1, NO_MATCH: 1}
    assert m["auto_share"] == pytest.approx(5 / 6)
    # Four automatic matches: a and c right, d wrong, e unjudged.
    assert m["auto_matches"] == 4 and m["auto_matches_unjudged"] == 1
    assert m["auto_match_precision"] == pytest.approx(0.5)
    assert m["auto_match_precision_judged"] == pytest.approx(2 / 3)
    # Offers with a true match in the test split: a, b, d.
    assert m["offers_with_match"] == 3
    assert m["coverage"] == pytest.approx(1 / 3)
    assert m["recall_at_1"] == pytest.approx(2 / 3)
    assert m["recall_at_10"] == pytest.approx(1.0)


def test_metrics_without_other_splits_and_for_missing_offers() -> None:
    # Judged on the test pairs alone, c's match is unjudged rather than right.
    m = evaluate(RESULTS, PAIRS)
    assert m["auto_match_precision"] == pytest.approx(0.25)
    assert m["auto_matches_unjudged"] == 2
    # An offer the service never answered is a no_match without candidates.
    partial = evaluate({k: v for k, v in RESULTS.items() if k != "a"}, PAIRS, KNOWN)
    assert partial["decisions"][NO_MATCH] == 2 and partial["pairwise"]["tp"] == 0
    assert partial["recall_at_10"] == pytest.approx(2 / 3)


def test_the_same_answers_decided_at_other_cuts(tmp_path: Path) -> None:
    scored = {
        k: OfferResult(v.decision, v.candidates, s)
        for (k, v), s in zip(RESULTS.items(), (0.9, 0.5, 0.8, 0.7, 0.3, 0.1))
    }
    again = redecide(scored, 0.75, 0.4)
    assert {k: r.decision for k, r in again.items()} == {
        "a": MATCH, "b": REVIEW, "c": MATCH, "d": REVIEW, "e": NO_MATCH, "f": NO_MATCH,
    }  # fmt: skip
    assert again["d"].candidates == RESULTS["d"].candidates and again["d"].top_score == 0.7
    kept = redecide({"x": OfferResult(REVIEW, ("p1", "p2"), 0.9, (0.9, 0.2))}, 0.5, 0.2)["x"]
    assert kept.decision == MATCH and kept.scores == (0.9, 0.2)  # the whole ranking is kept
    assert redecide({"x": OfferResult(MATCH)}, 0.5, 0.2)["x"].decision == NO_MATCH  # nothing retrieved
    m = evaluate(again, PAIRS, KNOWN)
    assert m["auto_match_precision"] == 1.0 and m["pairwise"]["fp"] == 0  # d's wrong top is no longer matched
    folder = tmp_path / "head"
    folder.mkdir()
    (folder / "head.json").write_text(json.dumps({
        "thresholds_for_precision": {"0.9": 0.6, "0.98": None},
        "top1_thresholds_for_precision": {"0.95": 0.85},
        "top1_threshold": 0.75,
    }))  # fmt: skip
    bench = bench_e2e.Benchmark("t", [], [], PAIRS, KNOWN)
    out = bench_e2e.other_cuts(folder, scored, bench, {"match": 0.75, "review": 0.4})
    assert {k: v["match_at"] for k, v in out.items()} == {
        "pairwise precision 0.9": 0.6, "top-1 precision 0.95": 0.85, "top-1 best F1": 0.75,
    }  # fmt: skip
    assert out["top-1 best F1"]["metrics"] == m
    assert out["top-1 precision 0.95"]["metrics"]["decisions"][MATCH] == 1


def test_reviewer_answers() -> None:
    knows = Truth(frozenset({"p1"}), frozenset({"p2"}))
    assert reviewer_label("p1", knows) == MATCH
    assert reviewer_label("p2", knows) == NO_MATCH
    assert reviewer_label("p3", knows) == NO_MATCH  # the true match is another product
    assert reviewer_label("p3", Truth(frozenset(), frozenset({"p2"}))) is None
    assert reviewer_label("p1", None) is None


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


def test_reader_maps_columns_and_merges_identical_offers(tmp_path: Path) -> None:
    header = ["id", "title", "manufacturer", "price"]
    _write_csv(
        tmp_path / "tableA.csv",
        header,
        [[0, " acme drill x1 ", "acme", "$1,299.00"], [1, "acme drill x1", "acme", "1299"], [2, "--", "", ""]],
    )
    _write_csv(tmp_path / "tableB.csv", header, [[10, "Acme X1 drill", "Acme", ""], [11, "...", "", "3"]])
    pairs = ["ltable_id", "rtable_id", "label"]
    _write_csv(tmp_path / "test.csv", pairs, [[0, 10, 1], [1, 11, 0], [2, 10, 0], [5, 10, 0]])
    _write_csv(tmp_path / "train.csv", pairs, [[1, 11, 0], [2, 10, 0]])
    bench = load_benchmark(tmp_path)
    assert bench.products == [{"external_id": "10", "title": "Acme X1 drill", "brand": "Acme"}]
    assert bench.products_skipped == 1 and bench.pairs_skipped == 1
    # Ids 0 and 1 are the same offer once stripped and priced; id 2 has no usable title.
    (offer,) = bench.offers
    assert offer.fields == {"title": "acme drill x1", "brand": "acme", "price": 1299.0}
    assert offer.left_ids == ("0", "1") and len(bench.unsendable) == 1
    assert [p[0] for p in bench.pairs].count(offer.key) == 2
    assert len(bench.known) == 5  # the three test pairs, and train's two of these offers
    # The service's dump of the offer (every field, nulls included) has the same key.
    dumped = {"title": "acme drill x1", "brand": "acme", "price": 1299.0, "category": None, "image_urls": []}
    assert offer_key(dumped) == offer.key
    assert record_fields({"name": "t" * 3000, "description": ""}) == {"title": "t" * 2000}


def test_other_columns_go_along_as_attributes_but_ids_and_clusters_do_not() -> None:
    row = {"id": "7", "title": "Sony DSC-W800", "modelno": " DSC-W800/B ", "cluster_id": "42", "page_url": "u",
           "pricecurrency": "USD", "empty": "", "note": "x" * 5000}  # fmt: skip
    fields = record_fields(row)
    assert fields is not None
    assert fields["attributes"] == {"modelno": "DSC-W800/B", "pricecurrency": "USD", "note": "x" * 1000}
    # The offer's identity is its matchable fields; its attributes do not split one offer in two.
    assert offer_key(fields) == offer_key({"title": "Sony DSC-W800"})
    wide = record_fields({"title": "t", **{f"c{i}": "v" * 900 for i in range(40)}})
    assert wide is not None and 0 < len(json.dumps(wide["attributes"])) <= 15_000  # within the schema's bound


# Offers of _write_dozen with no product in the catalogue: two vague ones (another model of the
# brand's product, say) and two unrelated ones.
NO_MATCH_OFFERS = (7, 9, 10, 11)


def _write_dozen(folder: Path) -> Path:
    """Twelve products; offers that match plainly, vaguely (the review band) or not at all."""
    folder.mkdir(parents=True)
    brands = ["acme", "globex", "initech", "hooli"]
    things = [("cordless drill", "d"), ("espresso machine", "e"), ("gaming monitor", "m")]
    products = [(b, t, f"{code}{100 + 7 * i}") for i, (b, (t, code)) in enumerate(itertools.product(brands, things))]
    _write_csv(
        folder / "tableB.csv",
        ["id", "name", "description", "price"],
        [[i, f"{b.title()} {t} {m.upper()} black", f"{b} {t}", 50 + i] for i, (b, t, m) in enumerate(products)],
    )
    left = [f"{b} {m} {t}" for b, t, m in products[:6]]  # plain
    left += [f"{b} {t}" for b, t, _ in products[6:10]]  # vague: no model code
    left += ["organic banana bread", "garden hose 20 m"]  # unrelated
    _write_csv(folder / "tableA.csv", ["id", "name", "price"], [[i, t, ""] for i, t in enumerate(left)])
    test = [[i, i, int(i not in NO_MATCH_OFFERS)] for i in range(10)] + [[i, (i + 1) % 12, 0] for i in range(12)]
    _write_csv(folder / "test.csv", ["ltable_id", "rtable_id", "label"], test)
    # The training split says that those offers match no product.
    train = [[i, j, 0] for i in NO_MATCH_OFFERS for j in range(12)]
    _write_csv(folder / "train.csv", ["ltable_id", "rtable_id", "label"], train)
    return folder


@pytest.mark.integration
def test_whole_run_through_the_service(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Where the service has the calibration refit, let four labels be enough for one.
    monkeypatch.setenv("CALIBRATION_MIN_LABELS", "2")
    data = _write_dozen(tmp_path / "dozen")
    out = tmp_path / "e2e.json"
    assert bench_e2e.main(["--data", str(data), "--labels", "2,4", "--out", str(out), "--no-default"]) == 0
    result = json.loads(out.read_text())
    assert result["dataset"]["offers"] == 12 and result["dataset"]["pairs"] == 22
    (run,) = result["runs"]
    assert run["scorer"] == "zero-shot" and run["ingest"]["rows_ok"] == 12
    assert run["model_versions"]["scorer"].startswith("zero-shot")
    m = run["metrics"]
    assert m["offers"] == 12 and sum(m["decisions"].values()) == 12
    assert m["offers_with_match"] == 8 and m["positive_pairs"] == 8
    # The plain offers find their product first; the unrelated ones are not matched.
    assert m["recall_at_10"] == 1.0 and m["recall_at_1"] >= 0.6
    assert m["pairwise"]["precision"] >= 0.8 and m["pairwise"]["recall"] >= 0.5
    assert run["latency"]["batches"] == 1
    study = run["labels"]
    assert study["steps"], study
    first = study["steps"][0]
    assert first["labels"] + first["skipped"] == first["items_answered"] <= study["queue_items_read"]
    # Every queued offer has a known truth here, so the reviewer labels until N or the queue ends.
    assert first["skipped"] == 0 and first["labels"] == min(2, study["queue_items_read"])
    if study["available"]:
        for step in study["steps"]:
            assert ("after" in step) == step["refit"]["ok"], step
            if step["refit"]["ok"]:
                assert step["offers_evaluated"] == 12 - step["labels"]
    else:
        assert first["refit"]["status"] in (404, 405)
    assert "| dozen | zero-shot | 12 |" in capsys.readouterr().out
    # Every offer's answer, ranked candidates with their scores, beside the result file.
    assert "answers" not in run
    answers = json.loads((tmp_path / "e2e_answers" / "e2e.json").read_text())["zero-shot"]
    assert len(answers) == 12  # an offer that could not be sent counts as no_match here too
    decisions = [decision for decision, _ in answers.values()]
    assert {d: decisions.count(d) for d in set(decisions)} == {k: v for k, v in m["decisions"].items() if v}
    for _, ranked in answers.values():  # [id, score, place in the blocking list]
        scores = [score for _, score, _ in ranked]
        assert scores == sorted(scores, reverse=True) and all(isinstance(c, str) for c, _, _ in ranked)
        assert sorted(place for _, _, place in ranked) == list(range(1, len(ranked) + 1))


@pytest.mark.integration
def test_a_shallow_rerank_depth_comes_back_unscored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RERANK_DEPTH", "2")
    out = tmp_path / "e2e.json"
    data = _write_dozen(tmp_path / "dozen")
    assert bench_e2e.main(["--data", str(data), "--out", str(out), "--no-default", "--top-k", "4"]) == 0
    assert json.loads(out.read_text())["service_env"]["RERANK_DEPTH"] == "2"
    answers = json.loads((tmp_path / "e2e_answers" / "e2e.json").read_text())["zero-shot"]
    for _, ranked in answers.values():
        assert [place for _, _, place in ranked[2:]] == [3, 4] and [s for _, s, _ in ranked[2:]] == [None, None]
        assert None not in [s for _, s, _ in ranked[:2]]


@pytest.mark.slow
@pytest.mark.integration
def test_trained_matcher_is_registered_promoted_and_compared(tmp_path: Path) -> None:
    data = write_tiny_deepmatcher(tmp_path / "tiny", seed=1)
    matcher = train_tiny_matcher(data, tmp_path / "matcher", arch="vanilla")
    out = tmp_path / "e2e.json"
    assert bench_e2e.main(["--data", str(data), "--matcher", str(matcher), "--out", str(out), "--no-default"]) == 0
    zero_shot, trained = json.loads(out.read_text())["runs"]
    assert zero_shot["scorer"] == "zero-shot" and zero_shot["version"] is None
    assert trained["scorer"] == "matcher" and trained["version"].startswith("matcher-")
    # The promoted version answered, with its own thresholds, on the same offers.
    assert trained["model_versions"]["scorer"] == trained["version"]
    assert trained["thresholds"] != zero_shot["thresholds"]
    assert trained["metrics"]["offers"] == zero_shot["metrics"]["offers"] == 15


def test_batches_respect_count_and_body_size(monkeypatch: pytest.MonkeyPatch) -> None:
    offers = [Offer(str(i), {"title": f"offer {i} é", "description": "x" * 300}, (str(i),)) for i in range(25)]
    monkeypatch.setattr(bench_e2e, "MAX_BATCH_BYTES", 2_000)
    batches = list(bench_e2e._batches(offers, 10, 10))
    assert [o.key for chunk, _ in batches for o in chunk] == [o.key for o in offers]
    for chunk, body in batches:
        assert len(chunk) <= 10 and len(body) <= 2_000
        items = json.loads(body)["items"]
        assert [i["offer"] for i in items] == [o.fields for o in chunk] and items[0]["top_k"] == 10
    assert len(batches) > 3  # the byte limit, not the count, cut them


def test_scorer_plans_name_each_scorer_by_its_settings(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    args = bench_e2e.parse_args(["--data", "x", "--default-matcher", str(empty)])
    # No shipped model: only the zero-shot run, with the zero-shot scorer forced.
    (only,) = bench_e2e.scorer_plans(args)
    assert only.name == "zero-shot" and only.env["SCORER"] == "zero-shot"
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    (shipped / "manifest.json").write_text("{}")
    args = bench_e2e.parse_args(["--data", "x", "--default-matcher", str(shipped), "--matcher", str(empty)])
    names = [(p.name, p.env["DEFAULT_MATCHER"], p.matcher) for p in bench_e2e.scorer_plans(args)]
    assert names == [
        ("zero-shot", "", None),
        ("default", str(shipped.resolve()), None),
        ("matcher", "", empty.resolve()),
    ]
    args = bench_e2e.parse_args(["--data", "x", "--default-matcher", str(shipped), "--no-default", "--no-zero-shot"])
    assert bench_e2e.scorer_plans(args) == []


def test_the_result_names_the_service_settings_the_environment_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MATCHER_QUANTIZE", "int8")
    monkeypatch.setenv("ADMIN_TOKEN", "secret")  # a credential, never written to a result file
    monkeypatch.setenv("SOMETHING_ELSE", "x")
    env = bench_e2e.service_settings_env()
    assert env["MATCHER_QUANTIZE"] == "int8"
    assert "ADMIN_TOKEN" not in env and "SOMETHING_ELSE" not in env
