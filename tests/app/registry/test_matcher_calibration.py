"""A catalogue calibration belongs to the scorer it was fitted for: a promoted matcher's version.

Refit while a trained matcher serves, step back to the zero-shot scorer (its own thresholds
decide, the matcher's calibration is not applied to other scores), promote the matcher again
(its calibration returns).
"""

from __future__ import annotations

import io

from app.db import model_versions
from app.pipeline.calibration import CalibratedDecider
from app.pipeline.scoring import ZeroShotScorer
from app.registry import folders
from tests.app.registry.test_matcher_serving import matcher_folder  # noqa: F401 - the module's fixture
from tests.helpers import product

URL = "/v1/admin/calibration"


def _labels(client) -> None:
    for n in range(1, 21):
        body = product(n)
        assert client.put(f"/v1/products/{body.pop('external_id')}", json=body).status_code == 201
    rows = []
    for n in range(1, 21):
        title = product(n)["title"]
        rows.append(f"{title},{product(n)['external_id']},match\n")
        rows.append(f"{title},{product(n % 20 + 1)['external_id']},no_match\n")
    csv = "offer_title,product_external_id,label\n" + "".join(rows)
    res = client.post("/v1/feedback/import", files={"file": ("labels.csv", io.BytesIO(csv.encode()))})
    assert res.status_code == 200 and res.json()["imported"] == 40, res.text


def test_matcher_calibration_is_keyed_by_its_version(client, admin_headers, settings, matcher_folder):  # noqa: F811
    services = client.app.state.services
    _labels(client)
    row = folders.register(services.factory, matcher_folder, settings.model_dir)
    model_versions.activate(services.factory, row.version)
    services.switch_if_needed()
    assert services.runtime.pipeline.scorer.name == row.version
    own = services.runtime.pipeline.decider

    res = client.post(URL, headers=admin_headers, json={"target_precision": 0.9})
    assert res.status_code == 200, res.text
    cal = res.json()
    assert cal["scorer"] == row.version and cal["scorer_key"] == f"matcher:{row.version}"
    assert cal["n_labels"] == 40 and cal["n_positive"] == 20 and cal["target_precision"] == 0.9
    assert (cal["own_match_threshold"], cal["own_review_threshold"]) == (own.match_threshold, own.review_threshold)
    assert 0.0 <= cal["review_threshold"] <= cal["match_threshold"]
    if cal["target_reached"]:
        assert cal["precision"] >= 0.9 and cal["n_accepted"] > 0
    else:  # the tiny random matcher may rank no cut clean: matches start above every labelled pair
        assert cal["precision"] is None and cal["match_threshold"] >= own.match_threshold
    body = client.post("/v1/match", json={"offer": {"title": product(3)["title"]}, "top_k": 3}).json()
    assert body["model_versions"] == {**body["model_versions"], "scorer": row.version, "calibration": str(cal["id"])}
    assert body["thresholds"] == {"match": cal["match_threshold"], "review": cal["review_threshold"]}

    # The zero-shot scorer serves again: the matcher's calibration does not decide for it.
    model_versions.deactivate(services.factory, "matcher")
    services.switch_if_needed()
    assert services.runtime.pipeline.scorer.name == ZeroShotScorer.name
    assert not isinstance(services.runtime.pipeline.decider, CalibratedDecider)
    assert client.get(URL, headers=admin_headers).status_code == 404

    # The matcher returns, and with it its calibration.
    model_versions.activate(services.factory, row.version)
    services.switch_if_needed()
    decider = services.runtime.pipeline.decider
    assert isinstance(decider, CalibratedDecider) and decider.calibration_id == cal["id"]
    assert client.get(URL, headers=admin_headers).json()["id"] == cal["id"]
    model_versions.deactivate(services.factory, "matcher")
