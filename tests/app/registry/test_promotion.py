"""A promoted bi-encoder is embedded and indexed first, then swapped in while /v1/match keeps
answering: no errors and no response that mixes model versions (R4)."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from app.db import model_versions
from app.registry import folders
from models.artefacts import Manifest, ManifestError, write_manifest
from models.bi_encoder import BiEncoder
from tests.conftest import TINY_CONFIG
from tests.helpers import product, wait_job


def _artefact(folder, seed: int):
    torch.manual_seed(seed)
    BiEncoder.from_config(TINY_CONFIG, max_length=32).save(folder)
    write_manifest(folder, Manifest(kind="bi-encoder", backbone="tiny", metrics={"recall@10": 0.5 + seed / 100}))
    return folder


def test_register_refuses_pickles_and_bad_manifests(tmp_path, client):
    factory = client.app.state.services.factory
    folder = _artefact(tmp_path / "a", 1)
    (folder / "pytorch_model.bin").write_bytes(b"not really")
    with pytest.raises(ManifestError, match="pickled"):
        folders.register(factory, folder, tmp_path / "models")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ManifestError, match="manifest"):
        folders.register(factory, empty, tmp_path / "models")


def test_promote_during_traffic_then_rollback(tmp_path, client, admin_headers, settings):
    for n in range(1, 31):
        body = product(n)
        client.put(f"/v1/products/{body.pop('external_id')}", json=body)
    services = client.app.state.services
    row = folders.register(services.factory, _artefact(tmp_path / "b", 1), settings.model_dir)
    assert folders.register(services.factory, tmp_path / "b", settings.model_dir).version == row.version

    per_thread: list[list[tuple[int, str | None, list[str]]]] = [[], [], []]
    stop = threading.Event()

    def traffic(seen: list) -> None:
        while not stop.is_set():
            res = client.post("/v1/match", json={"offer": {"title": product(7)["title"]}, "top_k": 5})
            body = res.json() if res.status_code == 200 else {}
            seen.append(
                (
                    res.status_code,
                    body.get("model_versions", {}).get("encoder"),
                    [c["external_id"] for c in body.get("candidates", [])],
                )
            )

    threads = [threading.Thread(target=traffic, args=(seen,)) for seen in per_thread]
    for t in threads:
        t.start()
    try:
        res = client.post(f"/v1/admin/models/{row.version}/promote", headers=admin_headers)
        assert res.status_code == 202, res.text
        assert wait_job(client, res.json()["job_id"])["state"] == "completed"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and services.encoder.model_id != row.version:
            time.sleep(0.1)
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert services.encoder.model_id == row.version
    valid = {product(n)["external_id"] for n in range(1, 31)}
    for seen in per_thread:
        assert seen and all(code == 200 for code, _, _ in seen)
        versions = [v for _, v, _ in seen]
        assert set(versions) <= {"tiny-test", row.version}
        # Within one client, once the new model answered, the old one never does again.
        first_new = versions.index(row.version)
        assert all(v == row.version for v in versions[first_new:]), "a request went back to the old model"
        assert all(set(ids) <= valid and len(ids) == 5 for _, _, ids in seen)
    assert model_versions.active(services.factory, "bi-encoder").version == row.version

    res = client.post("/v1/admin/models/rollback", headers=admin_headers, params={"kind": "bi-encoder"})
    assert wait_job(client, res.json()["job_id"])["state"] == "completed"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and services.encoder.model_id != "tiny-test":
        time.sleep(0.1)
    assert services.encoder.model_id == "tiny-test"
    listed = client.get("/v1/admin/models", headers=admin_headers).json()["versions"]
    assert [v["status"] for v in listed] == ["retired"]


def test_promote_unknown_version_is_404(client, admin_headers):
    assert client.post("/v1/admin/models/nope/promote", headers=admin_headers).status_code == 404
