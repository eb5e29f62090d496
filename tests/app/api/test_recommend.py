"""POST /v1/recommend and /v1/recommend/batch: zero-shot and a saved (tiny) PRIME folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from models.artefacts import Manifest
from models.prime import LabelPrototypeNetwork
from models.recommender import RecommenderModel
from tests.conftest import make_settings, tiny_bi_encoder
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


def test_trained_model_prototypes_and_automation(tmp_path, db_url, tiny_encoder):
    from app.main import create_app

    folder = _tiny_prime_folder(tmp_path / "rec", ["p-00001", "p-00002"])
    settings = make_settings(tmp_path / "var", db_url, recommend_model_dir=folder)
    app = create_app(settings, encoder=tiny_encoder, background_load=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        _load(client, 4)
        body = client.post("/v1/recommend", json={"query": {"text": "anything"}, "top_k": 4}).json()
        assert body["model"].startswith("recommender:")
        flags = {it["external_id"]: it["prototype"] for it in body["items"]}
        assert flags == {"p-00001": True, "p-00002": True, "p-00003": False, "p-00004": False}
        # threshold -1 at the default target precision 0.95: the top-1 is automated
        assert body["automated"] is True and body["threshold"] == -1.0 and body["target_precision"] == 0.95
        assert [it["automated"] for it in body["items"]] == [True, False, False, False]
        # the seen product p-00001 is served by its stored vector (here: p-00002's title embedding)
        vec = RecommenderModel.load(folder).label_vectors(["p-00001"], ["ignored"])[0]
        assert np.allclose(vec, tiny_bi_encoder().encode([product(2)["title"]])[0], atol=1e-5)
    assert app.state.unhandled_errors == 0

    settings = make_settings(tmp_path / "var2", db_url, recommend_model_dir=folder, recommend_target_precision=0.98)
    app = create_app(settings, encoder=tiny_encoder, background_load=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        _load(client, 2)
        assert client.post("/v1/recommend", json={"query": {"text": "x1"}}).json()["automated"] is False

    settings = make_settings(tmp_path / "var3", db_url, recommend_model_dir=tmp_path / "missing")
    app = create_app(settings, encoder=tiny_encoder, background_load=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        res = client.post("/v1/recommend", json={"query": {"text": "x1"}})
        assert res.status_code == 503 and "missing" in res.json()["detail"]
    assert app.state.unhandled_errors == 0


# ------------------------------------------------------------------------------ query images


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


def test_fusion_model_uses_checked_images(tmp_path, db_url, tiny_encoder):
    from app.main import create_app
    from models.vixml import ImageFeatureExtractor, ImageFusionEncoder
    from tests.training.test_recommend_vixml import _TinyVision

    enc = tiny_bi_encoder()
    model = RecommenderModel(enc, "zero-shot", fusion=ImageFusionEncoder(enc, image_dim=8))
    folder = tmp_path / "vixml"
    model.save(folder, Manifest(kind="recommender", backbone="tiny"))
    images_dir = tmp_path / "images"
    images_dir.mkdir()
    (images_dir / "red.png").write_bytes(_png((200, 0, 0)))
    (tmp_path / "outside.png").write_bytes(_png((0, 0, 200)))
    settings = make_settings(
        tmp_path / "var", db_url, recommend_model_dir=folder, recommend_image_dir=images_dir,
        recommend_image_max_bytes=5_000,
    )  # fmt: skip
    app = create_app(settings, encoder=tiny_encoder, background_load=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        _load(client, 3)
        plain = client.post("/v1/recommend", json={"query": {"text": "widget"}}).json()
        assert plain["images_used"] == 0
        app.state.recommender.images._extractor = ImageFeatureExtractor(_TinyVision(), dim=8)

        def ask(*images: dict) -> object:
            return client.post("/v1/recommend", json={"query": {"text": "widget", "images": list(images)}})

        res = ask({"data_base64": _b64(_png((0, 200, 0)))}, {"path": "red.png"})
        assert res.status_code == 200, res.text
        body = res.json()
        assert body["images_used"] == 2 and body["items"][0]["score"] != plain["items"][0]["score"]
        bad = [
            ({"data_base64": "!!!not base64!!!"}, "base64"),
            ({"data_base64": _b64(b"GIF8 not really an image at all")}, "not a PNG"),
            ({"data_base64": _b64(b"\x89PNG\r\n\x1a\n" + b"0" * 50)}, "could not be decoded"),
            ({"data_base64": _b64(_png((1, 1, 1), size=100, noise=True))}, "exceeds the limit"),
            ({"path": "../outside.png"}, "outside the allowed"),
            ({"path": str(tmp_path / "outside.png")}, "outside the allowed"),
            ({"path": "missing.png"}, "no such image"),
            ({"url": "https://example.com/a.png"}, "disabled"),
        ]
        for image, reason in bad:
            res = ask(image)
            assert res.status_code == 422 and reason in res.json()["detail"], (image, res.text)
        settings.recommend_allow_image_urls = True
        res = ask({"url": "http://127.0.0.1:9/a.png"})
        assert res.status_code == 422 and "not a public address" in res.json()["detail"]
        settings.recommend_image_dir = None
        assert "disabled" in ask({"path": "red.png"}).json()["detail"]
    assert app.state.unhandled_errors == 0


def test_label_index_follows_a_replaced_model(tmp_path, db_url, tiny_encoder):
    import os
    import time

    from app.main import create_app

    folder = _tiny_prime_folder(tmp_path / "rec", ["p-00001", "p-00002"])
    settings = make_settings(tmp_path / "var", db_url, recommend_model_dir=folder)
    app = create_app(settings, encoder=tiny_encoder, background_load=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        _load(client, 3)
        first = client.post("/v1/recommend", json={"query": {"text": "w"}}).json()
        assert sum(it["prototype"] for it in first["items"]) == 2
        _tiny_prime_folder(folder, ["p-00003", "p-00001"])  # retrained: other seen products
        later = time.time() + 5
        os.utime(folder / "manifest.json", (later, later))  # a new manifest, even on coarse clocks
        second = client.post("/v1/recommend", json={"query": {"text": "w"}}).json()
        assert second["model"] != first["model"] or second["items"] != first["items"]
        flags = {it["external_id"]: it["prototype"] for it in second["items"]}
        assert flags == {"p-00001": True, "p-00002": False, "p-00003": True}
