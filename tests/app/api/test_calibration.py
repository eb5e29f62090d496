"""Per-catalogue calibration through the API: refit from labelled pairs, decide with it, revert;
refusals (409) and bad bodies (4xx); every process picks a stored calibration up."""

from __future__ import annotations

import io
import time

import pytest

from app.db import jobs
from app.pipeline.calibration import CalibratedDecider
from app.pipeline.scoring import Decider
from tests.helpers import product

URL = "/v1/admin/calibration"
N_PRODUCTS = 30


def _load(client) -> None:
    for n in range(1, N_PRODUCTS + 1):
        body = product(n)
        assert client.put(f"/v1/products/{body.pop('external_id')}", json=body).status_code == 201


def _pair_scores(client, offers: list[str], per_offer: int = 3) -> list[tuple[str, str, float]]:
    """(offer title, product id, score) of each offer's top candidates, as /v1/match scores them."""
    pairs = []
    for title in offers:
        body = client.post("/v1/match", json={"offer": {"title": title}, "top_k": per_offer}).json()
        pairs += [(title, c["external_id"], c["score"]) for c in body["candidates"]]
    return pairs


def _import(client, rows: list[tuple[str, str, int]]) -> None:
    csv = "offer_title,product_external_id,label\n" + "".join(f"{t},{p},{y}\n" for t, p, y in rows)
    res = client.post("/v1/feedback/import", files={"file": ("labels.csv", io.BytesIO(csv.encode()))})
    assert res.status_code == 200 and res.json()["failed"] == 0, res.text


def _labelled_below_the_scorers_threshold(client, own_match: float) -> tuple[list[tuple[str, str, int]], float, str]:
    """A catalogue whose true matches score below the scorer's own match threshold.

    Pairs from offers the tiny scorer scores in its review band get labels that say every pair
    scoring at least ``cut`` (chosen below the scorer's own match threshold) is a match. Returns
    the labels, the cut the refit should find (target precision 1.0), and an offer whose best
    candidate lies between that cut and the scorer's own match threshold.
    """
    offers = [f"Acme Widget {n}" for n in range(1, 21)] + [f"widget model {n} edition" for n in range(1, 11)]
    pairs = _pair_scores(client, offers)
    kept = [(t, p, s) for t, p, s in pairs if s < own_match]
    tops = {t: s for t, _, s in reversed(pairs)}  # each offer's best score (its first pair)
    below = {t: s for t, s in tops.items() if s < own_match}
    scores = sorted({s for _, _, s in kept})
    assert len(scores) >= 40 and below, "the tiny scorer should spread these pairs below its match threshold"
    # A boundary with a clear gap in the upper part of the labelled scores, at or below the best
    # score of some offer the scorer alone would not match.
    highest = max(below.values())
    gaps = [(scores[i] - scores[i - 1], i) for i in range(len(scores) // 2, len(scores)) if scores[i] <= highest]
    _, i = max(gaps)
    cut = scores[i]
    rows = [(t, p, int(s >= cut)) for t, p, s in kept]
    promoted = next(t for t, s in below.items() if s >= cut)
    return rows, (scores[i] + scores[i - 1]) / 2, promoted


def test_refit_moves_the_thresholds_as_the_labels_say_and_decides(client, admin_headers, settings):
    _load(client)
    own = {"match": settings.match_threshold, "review": settings.review_threshold}
    assert client.get(URL, headers=admin_headers).status_code == 404
    rows, expected_cut, matched = _labelled_below_the_scorers_threshold(client, own["match"])
    _import(client, rows)
    positives = sum(y for _, _, y in rows)
    before = client.post("/v1/match", json={"offer": {"title": matched}, "top_k": 3}).json()
    assert before["decision"] != "match" and before["thresholds"] == own

    res = client.post(URL, headers=admin_headers, json={"target_precision": 1.0})
    assert res.status_code == 200, res.text
    cal = res.json()
    assert cal["status"] == "active" and cal["scorer"] == "zero-shot-cosine-lexical"
    assert cal["n_labels"] == len(rows) and cal["n_positive"] == positives
    assert cal["n_negative"] == len(rows) - positives and cal["n_skipped"] == 0
    # Perfectly separated labels at target 1.0: the cut sits midway between the classes,
    # far below the scorer's own threshold, with every labelled match above it.
    assert cal["target_reached"] is True
    assert cal["match_threshold"] == pytest.approx(expected_cut, abs=2e-6)
    assert cal["match_threshold"] < own["match"]
    assert cal["precision"] == 1.0 and cal["recall"] == 1.0 and cal["n_accepted"] == positives
    assert 0.0 < cal["precision_low"] < 1.0 == cal["precision_high"]
    assert cal["review_threshold"] <= cal["match_threshold"]
    assert cal["own_match_threshold"] == own["match"] and cal["own_review_threshold"] == own["review"]
    assert cal["method"] == "temperature" and cal["calibrator"]["method"] == "temperature"
    assert client.get(URL, headers=admin_headers).json() == cal

    # The next match decides with it, and says so.
    body = client.post("/v1/match", json={"offer": {"title": matched}, "top_k": 3}).json()
    assert body["thresholds"] == {"match": cal["match_threshold"], "review": cal["review_threshold"]}
    assert body["model_versions"]["calibration"] == str(cal["id"])
    assert body["decision"] == "match"  # its top score is below the scorer's own match threshold

    # The default target (MATCH_PRECISION 0.95) may accept a few more pairs, never fewer.
    res = client.post(URL, headers=admin_headers, json={})
    assert res.status_code == 200, res.text
    default = res.json()
    assert default["id"] > cal["id"] and default["target_precision"] == settings.match_precision
    assert default["match_threshold"] <= cal["match_threshold"] and default["precision"] >= 0.95
    history = client.get(URL, headers=admin_headers).json()
    assert history["id"] == default["id"]

    # Revert: the scorer's own thresholds decide again.
    res = client.delete(URL, headers=admin_headers)
    assert res.status_code == 200 and res.json() == {"retired": 1, "thresholds": own}
    body = client.post("/v1/match", json={"offer": {"title": matched}, "top_k": 3}).json()
    assert body["thresholds"] == own and "calibration" not in body["model_versions"]
    assert client.get(URL, headers=admin_headers).status_code == 404
    assert client.delete(URL, headers=admin_headers).json()["retired"] == 0


def test_too_few_labels_or_one_class_is_409(client, admin_headers, settings):
    _load(client)
    assert settings.calibration_min_labels == 25
    res = client.post(URL, headers=admin_headers, json={})
    assert res.status_code == 409 and "0 labelled pairs" in res.json()["detail"]
    _import(client, [(f"Acme Widget {n}", product(n)["external_id"], 1) for n in range(1, 11)])
    res = client.post(URL, headers=admin_headers)  # no body at all: the defaults
    assert res.status_code == 409 and "at least 25" in res.json()["detail"]
    _import(client, [(f"Acme Widget Model {n}", product(n)["external_id"], 1) for n in range(1, 21)])
    res = client.post(URL, headers=admin_headers, json={})
    assert res.status_code == 409 and "both classes" in res.json()["detail"], res.text
    # Labels of products that left the catalogue do not count, and the message says so.
    for n in range(1, 10):
        assert client.delete(f"/v1/products/{product(n)['external_id']}").status_code == 204
    res = client.post(URL, headers=admin_headers, json={})
    assert res.status_code == 409 and "no longer in the catalogue" in res.json()["detail"]
    assert client.get(URL, headers=admin_headers).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"target_precision": "high"},
        {"target_precision": 1.5},
        {"target_precision": 0.2},
        {"target_precision": True},
        {"review_probability": 0},
        {"review_probability": 1.0},
        {"method": "magic"},
        {"unknown": 1},
        [],
        "0.95",
    ],
)
def test_bad_bodies_are_422(client, admin_headers, body):
    res = client.post(URL, headers=admin_headers, json=body)
    assert res.status_code == 422, res.text


def test_calibration_needs_the_admin_token(client, admin_headers):
    assert client.post(URL, json={}).status_code == 401
    assert client.get(URL, headers={"Authorization": "Bearer nope"}).status_code == 403
    assert client.delete(URL).status_code == 401
    res = client.post(URL, headers={**admin_headers, "Content-Type": "application/json"}, content=b"{not json")
    assert res.status_code == 422


def test_a_calibration_stored_elsewhere_reaches_the_serving_process_and_jobs(client, admin_headers, settings):
    """Another process (or a job) stores a calibration: this API process follows it like a
    promotion, and bulk match jobs build their decider from it."""
    from app.registry.calibration import RefitOptions, refit, revert
    from app.registry.scorers import serving_scorer

    _load(client)
    rows, _, _ = _labelled_below_the_scorers_threshold(client, settings.match_threshold)
    _import(client, rows)
    services = client.app.state.services
    runtime = services.runtime
    own = runtime.pipeline.decider
    assert isinstance(own, Decider) and not isinstance(own, CalibratedDecider)
    row = refit(
        settings,
        services.factory,
        runtime.pipeline.scorer,
        runtime.encoder,
        own,
        RefitOptions.from_settings(settings),
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not isinstance(services.runtime.pipeline.decider, CalibratedDecider):
        time.sleep(0.1)
    decider = services.runtime.pipeline.decider
    assert isinstance(decider, CalibratedDecider) and decider.calibration_id == row.id
    assert (decider.match_threshold, decider.review_threshold) == (row.match_threshold, row.review_threshold)
    assert decider.own == own
    assert services.runtime.index is runtime.index  # only the decider changed

    _, job_decider = serving_scorer(settings, services.factory, runtime.encoder.model_id)
    assert job_decider == decider
    # Another bi-encoder means other cosines: the zero-shot calibration does not apply to it.
    _, other = serving_scorer(settings, services.factory, "another-encoder")
    assert other == own

    revert(services.factory, runtime.pipeline.scorer, runtime.encoder.model_id)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and isinstance(services.runtime.pipeline.decider, CalibratedDecider):
        time.sleep(0.1)
    assert services.runtime.pipeline.decider == own


def _versions(client) -> dict[str, str]:
    return client.post("/v1/match", json={"offer": {"title": "Acme Widget 1"}, "top_k": 1}).json()["model_versions"]


def test_automatic_refit_after_every_n_labels(tmp_path, db_url, tiny_encoder, admin_headers):
    from fastapi.testclient import TestClient

    from app.main import create_app
    from tests.conftest import make_settings

    settings = make_settings(tmp_path / "var", db_url, calibrate_every_labels=30)
    app = create_app(settings, encoder=tiny_encoder, background_load=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        _load(client)
        rows, _, _ = _labelled_below_the_scorers_threshold(client, settings.match_threshold)
        assert len(rows) >= 40
        services = client.app.state.services

        def calibrate_jobs() -> dict[str, int]:
            return {
                state: n for kind, state, n in jobs.counts_by_kind_and_state(services.factory) if kind == "calibrate"
            }

        _import(client, rows[:20])  # not yet due
        assert calibrate_jobs() == {}
        _import(client, rows[20:])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and calibrate_jobs() != {"completed": 1}:
            time.sleep(0.1)
        assert calibrate_jobs() == {"completed": 1}
        cal = client.get(URL, headers=admin_headers).json()
        assert cal["n_labels"] == len(rows) and cal["labels_through"] >= len(rows)
        # The serving process follows the stored calibration.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "calibration" not in _versions(client):
            time.sleep(0.1)
        assert _versions(client)["calibration"] == str(cal["id"])
        # One more label is not another 30: no new job.
        title, pid, _ = rows[0]
        res = client.post(
            "/v1/feedback", json={"offer": {"title": title + " x"}, "product_external_id": pid, "label": "match"}
        )
        assert res.status_code == 201
        assert calibrate_jobs() == {"completed": 1}
    assert app.state.unhandled_errors == 0
