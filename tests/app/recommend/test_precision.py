"""A trained recommender serves in PRECISION: its encoder autocasts (or runs int8) and its label
index is keyed by a model id that carries the precision."""

from __future__ import annotations

import numpy as np
from fastapi.testclient import TestClient

from app.recommend.service import _Trained
from tests.app.api.test_recommend import _load, _tiny_prime_folder
from tests.conftest import make_settings
from tests.helpers import product

QUERIES = [product(n)["title"] for n in range(1, 6)] + ["usb cable 2m", "x"]


def test_the_recommender_encoder_follows_the_precision(tmp_path):
    folder = _tiny_prime_folder(tmp_path / "rec", ["p-00001", "p-00002"])
    served = {p: _Trained(folder, "1.0", p) for p in ("fp32", "bf16", "int8")}
    base = served["fp32"].model_id
    assert served["bf16"].model_id == f"{base}+bf16" and served["int8"].model_id == f"{base}+int8"
    assert served["bf16"].model.encoder.precision == "bf16"
    assert any("quantized" in type(m).__module__ for m in served["int8"].model.encoder.backbone.modules())
    fp32 = served["fp32"].encode_queries(QUERIES)
    for precision in ("bf16", "int8"):
        other = served[precision].encode_queries(QUERIES)
        assert float(np.min(np.sum(fp32 * other, axis=1))) > 0.95, precision
    # Seen labels keep their stored (trained) vectors whatever the precision.
    seen = {p: s.label_vectors(["p-00001"], ["ignored"]) for p, s in served.items()}
    np.testing.assert_array_equal(seen["bf16"], seen["fp32"])


def test_the_service_reports_the_tagged_model(tmp_path, db_url, tiny_encoder):
    from app.main import create_app

    folder = _tiny_prime_folder(tmp_path / "rec", ["p-00001", "p-00002"])
    settings = make_settings(tmp_path / "var", db_url, recommend_model_dir=folder, precision="bf16")
    app = create_app(settings, encoder=tiny_encoder, background_load=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        _load(client, 4)
        body = client.post("/v1/recommend", json={"query": {"text": "anything"}, "top_k": 4}).json()
        assert body["model"].startswith("recommender:") and body["model"].endswith("+bf16")
        assert len(body["items"]) == 4
    assert app.state.unhandled_errors == 0
