"""A trained matcher, registered and promoted, reranks /v1/match candidates: calibrated
probabilities, precision-targeted thresholds, and LEA word-pair explanations."""

from __future__ import annotations

import time

import pytest
import torch

from app.db import model_versions
from app.registry import folders
from tests.helpers import product, wait_job
from tests.training.test_train_matcher import TINY, tiny_dataset
from training.train_matcher import train_matcher


@pytest.fixture(scope="module")
def matcher_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("matcher")
    train_matcher(
        tiny_dataset(),
        folder,
        arch="lea",
        augment="typo",
        epochs=1,
        batch_size=8,
        seed=1,
        tiny_config=TINY,
        progress=False,
    )
    return folder


def test_promoted_matcher_reranks_and_explains(client, admin_headers, settings, matcher_folder):
    for n in range(1, 13):
        body = product(n)
        client.put(f"/v1/products/{body.pop('external_id')}", json=body)
    services = client.app.state.services
    row = folders.register(services.factory, matcher_folder, settings.model_dir)
    assert row.kind == "matcher"
    res = client.post(f"/v1/admin/models/{row.version}/promote", headers=admin_headers)
    assert wait_job(client, res.json()["job_id"])["state"] == "completed"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and services.runtime.pipeline.scorer.name != row.version:
        time.sleep(0.1)
    assert services.runtime.pipeline.scorer.name == row.version
    assert services.encoder.model_id == "tiny-test"  # the blocker is untouched

    body = client.post("/v1/match", json={"offer": {"title": product(3)["title"]}, "top_k": 5, "explain": True}).json()
    assert body["model_versions"]["scorer"] == row.version
    assert len(body["candidates"]) == 5
    scores = [c["score"] for c in body["candidates"]]
    assert scores == sorted(scores, reverse=True) and all(0.0 <= s <= 1.0 for s in scores)
    explanation = body["candidates"][0]["explanation"]
    assert explanation and all("weight" in p and 0.0 <= p["similarity"] <= 1.0 for p in explanation)
    thresholds = body["thresholds"]
    decider = services.runtime.pipeline.decider
    assert thresholds == {"match": decider.match_threshold, "review": decider.review_threshold}
    assert 0.0 <= thresholds["review"] <= thresholds["match"] <= 1.0
    assert thresholds != {"match": settings.match_threshold, "review": settings.review_threshold}

    res = client.post("/v1/admin/models/rollback", headers=admin_headers, params={"kind": "matcher"})
    assert wait_job(client, res.json()["job_id"])["state"] == "completed"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and services.runtime.pipeline.scorer.name == row.version:
        time.sleep(0.1)
    assert services.runtime.pipeline.scorer.name == "zero-shot-cosine-lexical"


def test_int8_scorer_serves_the_same_ranking_closely(matcher_folder):
    from app.pipeline.rerank import CrossEncoderScorer

    offer = {"title": product(3)["title"]}
    candidates = [product(n) for n in range(1, 9)]
    cosines = [0.5] * len(candidates)
    fp32 = CrossEncoderScorer("v1", str(matcher_folder))
    int8 = CrossEncoderScorer("v1", str(matcher_folder), quantize="int8")
    assert int8.quantize == "int8" and fp32.quantize == "none"
    assert int8.calibration == fp32.calibration, "int8 keeps the fp32 calibration and thresholds"
    a = [c.score for c in fp32.score(offer, candidates, cosines)]
    b = [c.score for c in int8.score(offer, candidates, cosines, explain=True)]
    assert len(b) == len(a) and all(0.0 <= s <= 1.0 for s in b)
    assert max(abs(x - y) for x, y in zip(a, b)) < 0.1
    body = int8.model.model.base_model
    assert not any(type(m) is torch.nn.Linear for m in body.modules()), "the body really runs in int8"
    with pytest.raises(ValueError, match="int8"):
        CrossEncoderScorer("v1", str(matcher_folder), quantize="fp16")


def test_serving_scorer_quantises_when_the_setting_says_so(client, settings, matcher_folder):
    from app.registry.scorers import serving_scorer

    factory = client.app.state.services.factory
    row = folders.register(factory, matcher_folder, settings.model_dir)
    model_versions.activate(factory, row.version)
    try:
        scorer, decider = serving_scorer(settings.model_copy(update={"matcher_quantize": "int8"}), factory, "tiny-test")
        assert scorer.quantize == "int8" and scorer.name == row.version
        assert 0.0 <= decider.review_threshold <= decider.match_threshold <= 1.0
        plain, _ = serving_scorer(settings, factory, "tiny-test")
        assert plain.quantize == "none"
    finally:
        model_versions.deactivate(factory, "matcher")
