"""The serving precision tags every stored vector: a PRECISION change re-embeds the catalogue
beside the old vectors (restart and promotion alike), and an index never mixes precisions."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

import models.precision as precision_module
from app.db import products as repo
from app.main import create_app
from app.pipeline.encoder import VECTOR_TAGS, Encoder, tagged_model_id
from app.registry import folders
from app.registry.encoder_provider import load_version_encoder
from models.artefacts import Manifest, write_manifest
from models.bi_encoder import BiEncoder
from models.packed_linear import onednn_bf16_available
from tests.conftest import ADMIN_TOKEN, TINY_CONFIG, make_settings
from tests.helpers import product, wait_job

# With BERT's 0.02 init a tiny random model's bf16 vectors match its fp32 ones to ~1e-7 in
# cosine, too close to tell which precision an index holds; 0.2 makes bf16 visibly different.
LOUD = {**TINY_CONFIG, "initializer_range": 0.2}
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# A served bf16 BERT encodes through the fused forward where this CPU's oneDNN runs bf16.
BF16_TAG = VECTOR_TAGS["bf16-fused" if onednn_bf16_available() else "bf16"]


def _save_encoder(folder: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    BiEncoder.from_config(LOUD, max_length=32).save(folder)
    return folder


@pytest.fixture(scope="module")
def loud_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save_encoder(tmp_path_factory.mktemp("loud-encoder"), seed=0)


def test_the_tag_follows_the_resolved_precision(
    loud_encoder_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert tagged_model_id("m", "fp32") == "m"  # what every vector stored before carried
    assert tagged_model_id("m", "bf16") == "m+bf16"
    assert tagged_model_id("m", "int8") == "m+int8"
    assert tagged_model_id("m", "bf16-fused") == "m+bf16f"
    with pytest.raises(ValueError, match="resolved precision"):
        tagged_model_id("m", "auto")

    path = str(loud_encoder_dir)
    loaded = {p: Encoder.load(path, max_length=32, precision=p) for p in ("fp32", "bf16", "int8")}
    assert {p: e.model_id for p, e in loaded.items()} == {
        "fp32": path,
        "bf16": f"{path}{BF16_TAG}",
        "int8": f"{path}+int8",
    }
    assert {e.version for e in loaded.values()} == {path}
    assert loaded["bf16"].model.precision == "bf16" and loaded["fp32"].model.precision == "fp32"
    assert Encoder.load(path, max_length=32, quantize="int8").model_id == f"{path}+int8"  # the older spelling
    with pytest.raises(ValueError, match="contradicts"):
        Encoder.load(path, max_length=32, quantize="int8", precision="bf16")

    monkeypatch.setattr(precision_module, "cpu_bf16_flags", lambda: ())
    assert Encoder.load(path, max_length=32, precision="auto").model_id == path
    monkeypatch.setattr(precision_module, "cpu_bf16_flags", lambda: ("avx512_bf16",))
    assert Encoder.load(path, max_length=32, precision="auto").model_id == f"{path}{BF16_TAG}"

    monkeypatch.delenv("PRECISION")  # the suite's fp32 pin would contradict the older knob
    settings = make_settings(tmp_path / "var", "sqlite://", encoder_quantize="int8")
    registered = load_version_encoder(settings, "v7", path)
    assert (registered.version, registered.model_id) == ("v7", "v7+int8")


def _app(tmp_path: Path, url: str, encoder_dir: Path, precision: str) -> TestClient:
    settings = make_settings(
        tmp_path / "var", url, encoder=str(encoder_dir), encoder_max_length=32, precision=precision
    )
    return TestClient(create_app(settings, background_load=False), raise_server_exceptions=False)


def _put(client: TestClient, ns: range) -> None:
    for n in ns:
        body = product(n)
        assert client.put(f"/v1/products/{body.pop('external_id')}", json=body).status_code in (200, 201)


def _stored(client: TestClient, model_id: str) -> dict[int, np.ndarray]:
    factory = client.app.state.services.factory  # type: ignore[attr-defined]
    with factory() as session:
        ids = [int(i) for i in repo.embedded_ids(session, model_id)]
        return {pid: vec for pid, (vec, _, _) in repo.vectors_for(session, ids, model_id).items()}


def _assert_index_holds(client: TestClient, vectors: dict[int, np.ndarray]) -> None:
    """The serving index holds exactly these vectors: each finds itself at inner product 1."""
    index = client.app.state.services.index  # type: ignore[attr-defined]
    assert sorted(index.index.ids().tolist()) == sorted(vectors)
    ids = list(vectors)
    found = index.index.search(np.stack([vectors[i] for i in ids]), 1)
    assert [row[0] for row in found.ids] == ids
    np.testing.assert_allclose([row[0] for row in found.scores], 1.0, atol=5e-7)


def test_a_precision_change_re_embeds_beside_and_never_mixes(
    tmp_path: Path, db_url: str, loud_encoder_dir: Path
) -> None:
    fp32_id, bf16_id = str(loud_encoder_dir), f"{loud_encoder_dir}{BF16_TAG}"
    with _app(tmp_path, db_url, loud_encoder_dir, "fp32") as client:
        _put(client, range(1, 13))
        res = client.post("/v1/match", json={"offer": {"title": product(3)["title"]}, "top_k": 3})
        assert res.json()["model_versions"]["encoder"] == fp32_id
    fp32_before = _stored(client, fp32_id)
    assert len(fp32_before) == 12

    # Restart in bf16: every product is embedded again under the bf16 id before serving.
    with _app(tmp_path, db_url, loud_encoder_dir, "bf16") as client:
        assert client.get("/readyz").status_code == 200
        res = client.post("/v1/match", json={"offer": {"title": product(3)["title"]}, "top_k": 3})
        assert res.json()["model_versions"]["encoder"] == bf16_id
        bf16 = _stored(client, bf16_id)
        assert sorted(bf16) == sorted(fp32_before), "the whole catalogue was re-embedded in bf16"
        cosines = [float(bf16[p] @ fp32_before[p]) for p in bf16]
        assert min(cosines) > 0.99 and max(cosines) < 1 - 2e-6, "bf16 vectors: close, yet told apart below"
        assert _stored(client, fp32_id).keys() == fp32_before.keys(), "the fp32 vectors stay beside"
        _assert_index_holds(client, bf16)  # not the fp32 snapshot written at the first shutdown
        _put(client, range(13, 15))  # written while bf16 serves: only bf16 vectors exist for them

    index_dir = tmp_path / "var" / "index"
    snapshots = sorted(p.name for p in index_dir.glob("*.pmindex"))
    assert len(snapshots) == 2, f"one snapshot per precision: {snapshots}"

    # Back to fp32: its snapshot is reused, and the products added meanwhile get fp32 vectors.
    with _app(tmp_path, db_url, loud_encoder_dir, "fp32") as client:
        fp32_after = _stored(client, fp32_id)
        assert len(fp32_after) == 14
        for pid, vec in fp32_before.items():
            np.testing.assert_array_equal(fp32_after[pid], vec)
        _assert_index_holds(client, fp32_after)


def test_a_promoted_version_is_prepared_and_served_under_its_tagged_id(
    tmp_path: Path, db_url: str, loud_encoder_dir: Path
) -> None:
    with _app(tmp_path, db_url, loud_encoder_dir, "bf16") as client:
        _put(client, range(1, 11))
        services = client.app.state.services  # type: ignore[attr-defined]
        artefact = _save_encoder(tmp_path / "artefact", seed=1)
        write_manifest(artefact, Manifest(kind="bi-encoder", backbone="tiny", metrics={"recall@10": 0.5}))
        row = folders.register(services.factory, artefact, services.settings.model_dir)
        res = client.post(f"/v1/admin/models/{row.version}/promote", headers=ADMIN)
        assert wait_job(client, res.json()["job_id"])["state"] == "completed"
        tagged = f"{row.version}{BF16_TAG}"
        # The promote job embedded and indexed under the id serving uses, not the bare version.
        assert len(_stored(client, tagged)) == 10 and not _stored(client, row.version)
        assert any(p.name.startswith(f"{row.version}_bf16") for p in (tmp_path / "var" / "index").glob("*.pmindex"))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and services.encoder.model_id != tagged:
            time.sleep(0.1)
        assert services.encoder.model_id == tagged and services.encoder.version == row.version
        # The provider recognises the loaded version despite the tag: no reload on every refresh.
        assert services.provider.refresh() is services.provider.refresh()
        _assert_index_holds(client, _stored(client, tagged))
