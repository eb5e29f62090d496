"""The recommender service with a trained (tiny PRIME) folder: prototypes and the automation threshold."""

from __future__ import annotations

import numpy as np
from fastapi.testclient import TestClient

from models.recommender import RecommenderModel
from tests.app.api.test_recommend import _load, _tiny_prime_folder
from tests.conftest import make_settings, tiny_bi_encoder
from tests.helpers import product


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
