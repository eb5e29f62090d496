"""POST /v1/recommend and /v1/recommend/batch: zero-shot and a saved (tiny) PRIME folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.artefacts import Manifest
from models.prime import LabelPrototypeNetwork
from models.recommender import RecommenderModel
from tests.conftest import tiny_bi_encoder
from tests.helpers import product


def _load(client, n: int = 8) -> None:
    for i in range(1, n + 1):
        body = product(i)
        assert client.put(f"/v1/products/{body.pop('external_id')}", json=body).status_code in (200, 201)


def test_recommend_text_and_product_id(client):
    _load(client)
    res = client.post("/v1/recommend", json={"query": {"text": product(3)["title"]}, "top_k": 5})
    assert res.status_code == 200, res.text
    body = res.json()
    assert len(body["items"]) == 5
    assert body["items"][0]["external_id"] == "p-00003"
    scores = [it["score"] for it in body["items"]]
    assert scores == sorted(scores, reverse=True)
    assert body["model"].startswith("text:") and body["catalogue_version"] > 0
    # zero-shot has no validated threshold: never automated
    assert body["automated"] is False and body["threshold"] is None
    assert not any(it["prototype"] or it["automated"] for it in body["items"])

    res = client.post("/v1/recommend", json={"query": {"product_id": "p-00003"}, "top_k": 3}).json()
    assert len(res["items"]) == 3 and "p-00003" not in {it["external_id"] for it in res["items"]}


def test_recommend_refreshes_when_catalogue_changes(client):
    _load(client, 3)
    first = client.post("/v1/recommend", json={"query": {"text": "widget"}, "top_k": 10}).json()
    assert len(first["items"]) == 3
    body = product(9)
    client.put(f"/v1/products/{body.pop('external_id')}", json=body)
    second = client.post("/v1/recommend", json={"query": {"text": "widget"}, "top_k": 10}).json()
    assert len(second["items"]) == 4 and second["catalogue_version"] > first["catalogue_version"]
    assert client.delete("/v1/products/p-00009").status_code == 204
    third = client.post("/v1/recommend", json={"query": {"text": "widget"}, "top_k": 10}).json()
    assert {it["external_id"] for it in third["items"]} == {"p-00001", "p-00002", "p-00003"}


@pytest.mark.parametrize(
    "payload",
    [
        {"query": {}},
        {"query": {"text": "a", "product_id": "p-00001"}},
        {"query": {"text": "   "}},
        {"query": {"text": "!!!"}},
        {"query": {"text": "x" * 2001}},
        {"query": {"text": "ok"}, "top_k": 0},
        {"query": {"text": "ok"}, "top_k": 101},
        {"query": {"text": "ok"}, "extra": 1},
        {"query": {"product_id": "a/b"}},
    ],
)
def test_recommend_rejects_bad_requests(client, payload):
    assert client.post("/v1/recommend", json=payload).status_code == 422


def test_unknown_product_is_404_and_batch_limits(client, settings):
    _load(client, 2)
    res = client.post("/v1/recommend", json={"query": {"product_id": "nope"}})
    assert res.status_code == 404 and "nope" in res.json()["detail"]
    ok = client.post(
        "/v1/recommend/batch",
        json={"items": [{"query": {"text": "widget"}, "top_k": 1}, {"query": {"product_id": "p-00001"}}]},
    )
    assert ok.status_code == 200 and len(ok.json()["results"]) == 2
    assert ok.json()["results"][1]["items"][0]["external_id"] == "p-00002"
    too_many = {"items": [{"query": {"text": "w"}}] * 65}
    assert client.post("/v1/recommend/batch", json=too_many).status_code == 422
    settings.recommend_max_batch_items = 1
    two = {"items": [{"query": {"text": "w"}}] * 2}
    assert client.post("/v1/recommend/batch", json=two).status_code == 422


def _tiny_prime_folder(folder: Path, keys: list[str]) -> Path:
    enc = tiny_bi_encoder()
    titles = [product(int(k[2:]))["title"] for k in keys]
    text = enc.encode(titles)
    lpn = LabelPrototypeNetwork(enc.dim, 2, nhead=2, dim_feedforward=16).eval()
    model = RecommenderModel(
        enc, "prime", lpn=lpn, seen_keys=keys, seen_texts=titles, seen_vectors=text[::-1].copy(),
        prototypes=text, free_index=np.array([0, 1] * (len(keys) // 2)),
    )  # fmt: skip
    thresholds = {"0.95": {"threshold": -1.0}, "0.98": {"threshold": 2.0}}
    model.save(folder, Manifest(kind="recommender", backbone="tiny", metrics={"thresholds": thresholds}))
    return folder


def _png(colour: tuple[int, int, int], size: int = 16, noise: bool = False) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    img = Image.new("RGB", (size, size), colour)
    if noise:  # incompressible: a large file
        img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8))
    img.save(buf, format="PNG")
    return buf.getvalue()


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


def test_images_rejected_by_a_text_model(client):
    _load(client, 2)
    res = client.post(
        "/v1/recommend", json={"query": {"text": "widget", "images": [{"data_base64": _b64(_png((1, 2, 3)))}]}}
    )
    assert res.status_code == 422 and "no image input" in res.json()["detail"]
    four = {"query": {"text": "w", "images": [{"url": "https://example.com/a.png"}] * 4}}
    assert client.post("/v1/recommend", json=four).status_code == 422
    both = {"query": {"text": "w", "images": [{"url": "https://example.com/a.png", "path": "a.png"}]}}
    assert client.post("/v1/recommend", json=both).status_code == 422
