"""A trained matcher, registered and promoted, reranks /v1/match candidates: calibrated
probabilities, precision-targeted thresholds, and LEA word-pair explanations."""

from __future__ import annotations

import time

import pytest

from app.registry import store
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
    row = store.register(services.factory, matcher_folder, settings.model_dir)
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
