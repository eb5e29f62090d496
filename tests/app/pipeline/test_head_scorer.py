"""The default matcher's head as a serving scorer: its probabilities, precisions, cuts, and the
cosines it takes from the pipeline when the blocker is its own bi-encoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from app.pipeline.head_scorer import HeadScorer
from app.registry.scorers import pipeline_cosines_fit
from models.default_matcher import load_head
from tests.app.registry.default_matcher_fixtures import default_folder, known_cuts  # noqa: F401
from tests.conftest import make_settings
from tests.helpers import product

OFFER = {"title": "Acme Widget Model 3 blue edition", "brand": "Acme"}
CANDIDATES = [product(n) for n in range(1, 7)]


def _scores(scorer: HeadScorer, cosines: list[float] | None = None) -> list[float]:
    given = cosines if cosines is not None else [0.0] * len(CANDIDATES)
    return [c.score for c in scorer.score(OFFER, CANDIDATES, given)]


def test_precisions_keep_the_scores_close(default_folder: Path) -> None:  # noqa: F811
    fp32 = HeadScorer("v1", str(default_folder), precision="fp32")
    bf16 = HeadScorer("v1", str(default_folder), precision="bf16")
    int8 = HeadScorer("v1", str(default_folder), precision="int8")
    assert (fp32.precision, bf16.precision, int8.precision) == ("fp32", "bf16", "int8")
    assert (fp32.quantize, int8.quantize) == ("none", "int8")
    assert bf16.matcher.bi_encoder is not None and bf16.matcher.bi_encoder.precision == "bf16"
    body = int8.matcher.model.model.base_model
    assert not any(type(m) is torch.nn.Linear for m in body.modules()), "the cross-encoder body runs in int8"
    assert all(0.0 < s < 1.0 for s in _scores(fp32))
    # The head is the same function in every precision: what moves are its inputs, the
    # cross-encoder logits and the bi-encoder cosines (a tiny random head can amplify them).
    reference = fp32.matcher.score_pairs([OFFER] * len(CANDIDATES), CANDIDATES)
    spread = float(np.ptp(reference.logits))
    for other in (bf16, int8):
        got = other.matcher.score_pairs([OFFER] * len(CANDIDATES), CANDIDATES)
        assert np.abs(got.logits - reference.logits).max() < 0.1 * max(spread, 1.0)
        assert np.abs(got.cosines - reference.cosines).max() < 0.05
    with pytest.raises(ValueError, match="precision must be one of"):
        HeadScorer("v1", str(default_folder), precision="fp16")


def test_explanations_are_lea_word_pairs(default_folder: Path) -> None:  # noqa: F811
    scorer = HeadScorer("v1", str(default_folder), precision="fp32")
    plain = scorer.score(OFFER, CANDIDATES, [0.0] * len(CANDIDATES))
    explained = scorer.score(OFFER, CANDIDATES, [0.0] * len(CANDIDATES), explain=True)
    assert [c.score for c in explained] == [c.score for c in plain]
    assert all(c.explanation and all("weight" in p for p in c.explanation) for c in explained)
    assert scorer.score(OFFER, [], []) == []


def test_pipeline_cosines_replace_the_heads_own_bi_encoder(default_folder: Path) -> None:  # noqa: F811
    own = HeadScorer("v1", str(default_folder), precision="fp32")
    given = HeadScorer("v1", str(default_folder), precision="fp32", pipeline_cosines=True)
    assert given.matcher.bi_encoder is None and own.matcher.bi_encoder is not None
    cosines = own.matcher.score_pairs([OFFER] * len(CANDIDATES), CANDIDATES).cosines.tolist()
    np.testing.assert_allclose(_scores(given, cosines), _scores(own), atol=2e-6)
    assert _scores(given, [c - 0.5 for c in cosines]) != _scores(own), "the given cosines are used"
    with pytest.raises(ValueError, match="cosines"):
        given.score(OFFER, CANDIDATES, cosines[:2])


def test_cuts_need_useful_recall(default_folder: Path, tmp_path: Path) -> None:  # noqa: F811
    scorer = HeadScorer("v1", str(known_cuts(default_folder, tmp_path / "cuts")), precision="fp32")
    assert scorer.threshold == 0.45
    assert scorer.threshold_for_precision(0.95) == 0.6
    assert scorer.threshold_for_precision(0.9) == 0.3
    assert scorer.threshold_for_precision(0.98) is None  # never reached: the caller uses the best-F1 cut
    assert scorer.threshold_for_precision(0.95, min_recall=0.6) is None
    # Cuts on the top candidate of ranked lists, with their own coverage floor.
    assert scorer.top1_threshold_for_precision(0.95) == 0.35
    assert scorer.top1_threshold_for_precision(0.9) == 0.25
    assert scorer.top1_threshold_for_precision(0.98) is None
    assert scorer.top1_threshold_for_precision(0.95, min_coverage=0.75) is None
    pairwise_only = HeadScorer("v1", str(known_cuts(default_folder, tmp_path / "old", top1=False)), precision="fp32")
    assert pairwise_only.top1_threshold_for_precision(0.95) is None


def test_when_the_pipeline_cosines_are_the_heads(default_folder: Path, tmp_path: Path) -> None:  # noqa: F811
    head = load_head(default_folder)
    head.bi_encoder, head.bi_encoder_max_length = "minilm", 64
    settings = make_settings(tmp_path, "sqlite://")
    assert pipeline_cosines_fit(settings, head, "minilm-l6-v2-zero-shot")
    assert pipeline_cosines_fit(settings, head, "minilm-l6-v2-zero-shot+bf16")
    assert not pipeline_cosines_fit(settings, head, "tiny-test")  # another blocker
    assert not pipeline_cosines_fit(settings, head, "bi-encoder-20260101T000000Z-12345678")  # a promoted one
    assert not pipeline_cosines_fit(
        settings.model_copy(update={"encoder_max_length": 32}), head, "minilm-l6-v2-zero-shot"
    )
    assert pipeline_cosines_fit(settings, head, "minilm-l6-v2-zero-shot+bf16f")  # the fused CPU forward's
    # The served IVF-PQ re-ranks its hits on the exact vectors, so its scores are the cosines
    # (tests/app/search/test_ann_recall.py checks that they are).
    assert pipeline_cosines_fit(settings.model_copy(update={"index_kind": "ivfpq"}), head, "minilm-l6-v2-zero-shot")
    head.bi_encoder = "bi_encoder"  # the artefact's own sub-folder
    assert not pipeline_cosines_fit(settings, head, "minilm-l6-v2-zero-shot")
