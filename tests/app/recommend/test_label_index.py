"""The label index follows a replaced model folder."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.app.api.test_recommend import _load, _tiny_prime_folder
from tests.conftest import make_settings


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
