"""Query images of a fusion model: decoded, size-checked, read only below the allowed folder, URLs off by default."""

from __future__ import annotations

from fastapi.testclient import TestClient

from models.artefacts import Manifest
from models.recommender import RecommenderModel
from tests.app.api.test_recommend import _b64, _load, _png
from tests.conftest import make_settings, tiny_bi_encoder


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
