from __future__ import annotations

import time

from tests.helpers import product


def _setup(client, settings):
    for n in range(1, 6):
        body = product(n)
        client.put(f"/v1/products/{body.pop('external_id')}", json=body)


def _review_offer(client) -> dict:
    # The tiny test encoder scores near 1 for everything; move the thresholds so it reviews.
    services = client.app.state.services
    from app.pipeline.scoring import Decider

    services.runtime.pipeline.decider = Decider(1.01, 0.0)
    return client.post("/v1/match", json={"offer": {"title": "Acme widget 3"}, "top_k": 3}).json()


def test_review_band_decisions_are_queued_and_labelled(client, settings):
    _setup(client, settings)
    body = _review_offer(client)
    assert body["decision"] == "review"
    queue = client.get("/v1/review").json()["items"]
    assert len(queue) == 1
    item = queue[0]
    assert item["offer"]["title"] == "Acme widget 3"
    assert [c["external_id"] for c in item["candidates"]] == [c["external_id"] for c in body["candidates"]]
    assert item["top_score"] == body["candidates"][0]["score"]

    res = client.post(
        "/v1/feedback",
        json={"review_id": item["id"], "product_external_id": "p-00003", "label": "match", "reviewer": "ann"},
    )
    assert res.status_code == 201, res.text
    assert res.json()["offer"]["title"] == "Acme widget 3" and res.json()["source"] == "review"
    assert client.get("/v1/review").json()["items"] == []


def test_labels_are_kept_and_latest_wins(client, settings):
    assert client.put("/v1/products/p-1", json={"title": "Globex thing 1"}).status_code == 201
    offer = {"title": "Globex thing"}
    first = client.post(
        "/v1/feedback",
        json={"offer": offer, "offer_external_id": "o1", "product_external_id": "p-1", "label": "match"},
    )
    assert first.status_code == 201
    time.sleep(0.01)
    client.post(
        "/v1/feedback",
        json={
            "offer": offer,
            "offer_external_id": "o1",
            "product_external_id": "p-1",
            "label": "no_match",
            "note": "different capacity",
        },
    )
    page = client.get("/v1/feedback", params={"offer_external_id": "o1", "product_external_id": "p-1"}).json()
    assert [i["label"] for i in page["items"]] == ["no_match", "match"]
    assert page["effective_label"] == "no_match"


def test_feedback_bad_input(client):
    assert client.put("/v1/products/p", json={"title": "Globex thing"}).status_code == 201
    assert client.post("/v1/feedback", json={"product_external_id": "p", "label": "match"}).status_code == 422
    assert (
        client.post(
            "/v1/feedback", json={"offer": {"title": "x"}, "product_external_id": "p", "label": "maybe"}
        ).status_code
        == 422
    )
    res = client.post("/v1/feedback", json={"review_id": "nope", "product_external_id": "p", "label": "match"})
    assert res.status_code == 404


def test_feedback_import_csv(client):
    for n in range(1, 5):
        assert client.put(f"/v1/products/p-{n}", json={"title": f"Acme widget {n}"}).status_code == 201
    data = (
        b"offer_title,product_external_id,label,reviewer\n"
        b"Acme widget,p-1,match,bob\n"
        b",p-2,match,bob\n"
        b"Other,p-3,perhaps,bob\n"
        b"Third,p-4,0,\n"
    )
    res = client.post("/v1/feedback/import", files={"file": ("labels.csv", data)})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["imported"] == 2 and body["failed"] == 2
    assert [(e["row"], e["field"]) for e in body["errors"]] == [(2, "offer_title"), (3, "label")]
    bad = client.post("/v1/feedback/import", files={"file": ("x.csv", b"a,b\n1,2\n")})
    assert bad.status_code == 422 and "offer_title" in bad.text
