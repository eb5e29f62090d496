"""Ranked validation lists, top-1 cuts and leave-one-source-out head scores of the default recipe,
and ``productmatch train default-head`` (refit a trained folder's head) on the tiny benchmarks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from app.cli import build_parser
from models.bi_encoder import BiEncoder
from models.default_matcher import load_default_matcher
from models.match_head import HEAD_FILE, MatchHead
from tests.training.default_recipe_fixtures import SOURCES, TINY, tiny_config, write_all
from training.default_recipe.head import fit_logistic, leave_source_out
from training.default_recipe.ranked import (
    UNKNOWN,
    decision_stats,
    ranked_lists_of,
    top1_cuts,
    top_of_lists,
)
from training.default_recipe.refit import config_from_manifest, refit_head
from training.default_recipe.sources import load_source
from training.default_recipe.train import train_default


def _encoder() -> BiEncoder:
    torch.manual_seed(0)
    return BiEncoder.from_config(TINY)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_all(tmp_path_factory.mktemp("ranked-data"))


@pytest.fixture(scope="module")
def trained(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ranked-model") / "model"
    train_default(out, tiny_config(), data_root=data_root, bi_encoder=_encoder(), progress=False)
    return out


def test_ranked_lists_label_candidates_like_the_service_would_be_judged(data_root: Path) -> None:
    catalogue = load_source(SOURCES[0], data_root)  # unique products: one record per product
    lists = ranked_lists_of(catalogue, _encoder(), k=5, offers_per_source=4, seed=0)
    valid_offers = {p.left_id for p in catalogue.valid}
    assert len(lists) == 4 and {r.offer_id for r in lists} <= valid_offers
    positives = {(p.left_id, p.right_id) for p in catalogue.valid if p.label == 1}
    for r in lists:
        assert len(r.candidates) == len(r.candidate_ids) == len(r.cosines) == 5
        assert len(set(r.candidate_ids)) == 5 and r.has_match
        for cid, label in zip(r.candidate_ids, r.labels, strict=True):
            expected = 1 if (r.offer_id, cid) in positives else 0  # another product of a catalogue is wrong
            assert label == expected
    crawl = load_source(SOURCES[1], data_root)  # offers of a crawl: an unlabelled candidate is unknown
    for r in ranked_lists_of(crawl, _encoder(), k=5, offers_per_source=3, seed=0):
        for cid, label in zip(r.candidate_ids, r.labels, strict=True):
            pair = next((p for p in crawl.valid if (p.left_id, p.right_id) == (r.offer_id, cid)), None)
            assert label == (UNKNOWN if pair is None else pair.label)


def test_absent_products_are_taken_out_of_the_ranking(data_root: Path) -> None:
    catalogue = load_source(SOURCES[0], data_root)
    present = ranked_lists_of(catalogue, _encoder(), k=5, offers_per_source=6, seed=0)
    absent = ranked_lists_of(catalogue, _encoder(), k=5, offers_per_source=6, absent_share=0.99, seed=0)
    matches = {(p.left_id, p.right_id) for p in catalogue.train + catalogue.valid if p.label == 1}
    assert [r.offer_id for r in absent] == [r.offer_id for r in present]
    assert all(r.has_match for r in present) and not any(r.has_match for r in absent)
    for r in absent:
        assert r.fully_judged and set(r.labels) == {0}  # every candidate is known to be wrong
        assert not any((r.offer_id, c) in matches for c in r.candidate_ids)
    clustered = load_source(SOURCES[2], data_root)  # complete cluster ids judge every candidate
    lists = ranked_lists_of(clustered, _encoder(), k=4, offers_per_source=5, absent_share=0.5, seed=0)
    assert all(r.fully_judged and UNKNOWN not in r.labels for r in lists)
    assert {r.has_match for r in lists} == {True, False}
    crawl = load_source(SOURCES[1], data_root)  # not fully judged: nothing is taken out
    assert all(r.has_match for r in ranked_lists_of(crawl, _encoder(), k=4, offers_per_source=5, absent_share=0.99))


def test_top1_decisions_and_cuts_on_known_lists() -> None:
    # Four offers with 2 candidates each, one without candidates; labels per candidate.
    sizes = [2, 2, 2, 2, 0]
    labels = np.array([1, 0, 0, 1, 0, UNKNOWN, 1, 0])
    probs = np.array([0.9, 0.1, 0.2, 0.8, 0.7, 0.3, 0.6, 0.5])
    has_match = np.array([True, True, True, True, True])
    top = top_of_lists(sizes, labels, has_match, ["a"] * 5, probs)
    np.testing.assert_allclose(top.scores, [0.9, 0.8, 0.7, 0.6, 0.0])
    assert top.correct.tolist() == [1, 1, 0, 1, 0]  # the empty list of an offer with a match is wrong
    stats = decision_stats(top, 0.75)
    assert (stats["right"], stats["wrong"], stats["coverage"], stats["precision"]) == (2, 0, 0.4, 1.0)
    best, table = top1_cuts(top, (0.95, 0.7))
    assert table["0.95"] is not None and table["0.95"]["precision"] == 1.0 and table["0.95"]["right"] == 2
    assert table["0.7"] is not None and table["0.7"]["right"] == 3 and table["0.7"]["wrong"] == 1
    assert best["f1"] == pytest.approx(max(decision_stats(top, c)["f1"] for c in (0.9, 0.8, 0.7, 0.6, 0.0)))
    with pytest.raises(ValueError, match="probabilities"):
        top_of_lists(sizes, labels, has_match, ["a"] * 5, probs[:-1])


def test_leave_source_out_scores_a_source_with_a_head_that_never_saw_it() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3))
    y = (x[:, 0] + 0.3 * rng.normal(size=300) > 0).astype(float)
    sources = ["a"] * 100 + ["b"] * 100 + ["c"] * 100
    w = np.ones(300)
    probs = leave_source_out(x, y, w, sources, x, sources)
    flipped = y.copy()
    flipped[:100] = 1 - flipped[:100]  # source a's labels change: a's own scores must not
    again = leave_source_out(x, flipped, w, sources, x, sources)
    np.testing.assert_allclose(probs[:100], again[:100])
    assert not np.allclose(probs[100:], again[100:])
    mean, scale, coef, b = fit_logistic(x[100:], y[100:], w[100:])
    np.testing.assert_allclose(probs[:100], 1 / (1 + np.exp(-(((x[:100] - mean) / scale) @ coef + b))))
    with pytest.raises(ValueError, match="both classes"):
        leave_source_out(x, np.r_[np.ones(100), np.zeros(200)], w, ["a"] * 100 + ["b"] * 200, x, sources)


def test_the_recipe_stores_top1_cuts_beside_the_pairwise_ones(trained: Path) -> None:
    head = MatchHead.from_dict(json.loads((trained / HEAD_FILE).read_text()))
    top1 = head.valid["top1"]
    assert top1["scored_by"] == "leave-one-source-out" and top1["settings"]["k"] == 10
    assert set(head.top1_thresholds_for_precision) == {"0.9", "0.95", "0.98"}
    assert head.top1_threshold == top1["best_f1"]["threshold"]
    for key, cut in head.top1_thresholds_for_precision.items():
        stats = top1["for_precision"][key]
        assert (cut is None) == (stats is None)
        if stats is not None:
            assert stats["threshold"] == cut and stats["offers"] > 0 and 0.0 <= stats["coverage"] <= 1.0
    assert head.thresholds_for_precision and head.valid["fit"] == "pairs"
    assert MatchHead.from_dict(head.to_dict()).top1_thresholds_for_precision == head.top1_thresholds_for_precision


def test_refit_head_writes_a_new_folder_and_leaves_the_old_one(trained: Path, data_root: Path, tmp_path: Path) -> None:
    before = (trained / HEAD_FILE).read_text()
    out = tmp_path / "refit"
    result = refit_head(trained, out, data_root=data_root, head_fit="ranked", margin=True, ranked_k=4)
    assert (trained / HEAD_FILE).read_text() == before
    head = load_default_matcher(out).head
    assert head.margin and head.feature_names[-2:] == ("margin", "single_candidate")
    assert head.valid["fit"] == "ranked" and head.valid["top1"]["settings"]["k"] == 4
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"]["config"]["head_fit"] == "ranked" and len(manifest["settings"]["head_refits"]) == 1
    assert manifest["metrics"]["valid_pooled"]["fit"] == "ranked"
    assert result["out_dir"] == str(out)
    with pytest.raises(FileExistsError):
        refit_head(trained, out, data_root=data_root)
    cfg = config_from_manifest(json.loads((trained / "manifest.json").read_text())["settings"])
    assert cfg.head_fit == "pairs" and cfg.valid_per_source == tiny_config().valid_per_source
    assert cfg.sources == SOURCES  # the folder's own sources, read back from its manifest


def test_refit_head_can_take_another_signal_set(trained: Path, data_root: Path, tmp_path: Path) -> None:
    old = load_default_matcher(trained).head
    assert old.signals == "pair_signals_v2"  # the recipe's default
    refit_head(trained, tmp_path / "v1", data_root=data_root, signals="pair_signals", ranked_k=4)
    matcher = load_default_matcher(tmp_path / "v1")  # checks the stored names against the set's
    head = matcher.head
    assert head.signals == "pair_signals" and head.n_signals == old.n_signals - 3
    assert "quantity_conflict" in old.feature_names and "quantity_conflict" not in head.feature_names
    assert len(head.coef) == len(head.feature_names)
    manifest = json.loads((tmp_path / "v1" / "manifest.json").read_text())
    assert manifest["settings"]["config"]["signals"] == "pair_signals"
    assert config_from_manifest(manifest["settings"]).signals == "pair_signals"  # a later refit keeps it


def test_cli_wires_default_head() -> None:
    args = build_parser().parse_args(
        ["train", "default-head", "--model", "m", "--out", "o", "--head-fit", "both", "--no-margin", "--ranked-k", "5"]
    )
    assert (args.model, args.out, args.head_fit, args.margin, args.ranked_k) == ("m", "o", "both", False, 5)
    assert args.signals is None
    assert build_parser().parse_args(["train", "default-head", "--model", "m", "--signals", "pair_signals_v2"]).signals
    argv = ["train", "default", "--out", "o", "--head-fit", "ranked", "--ranked-offers", "0"]
    train = build_parser().parse_args(argv)
    assert (train.head_fit, train.ranked_offers) == ("ranked", 0)
