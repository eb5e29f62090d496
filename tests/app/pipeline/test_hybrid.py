"""Hybrid blocking in the service: dense pool + BM25 candidates, one fused score, cut to k."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from app.main import create_app
from app.pipeline.encoder import Encoder
from tests.conftest import make_settings

CODES = [f"QX-{4000 + 37 * i}" for i in range(30)]


def _catalogue(client: TestClient) -> None:
    for i, code in enumerate(CODES):
        body = {"title": f"Industrial widget {code} {['steel', 'brass', 'zinc'][i % 3]}", "brand": "Acme"}
        assert client.put(f"/v1/products/w-{i}", json=body).status_code in (200, 201)


def _serve(tmp_path: Path, db_url: str, encoder: Encoder, **overrides: object) -> TestClient:
    settings = make_settings(tmp_path / "var", db_url, **overrides)
    return TestClient(create_app(settings, encoder=encoder, background_load=False), raise_server_exceptions=False)


def test_hybrid_blocking_finds_the_part_number(tmp_path: Path, db_url: str, tiny_encoder: Encoder) -> None:
    # The tiny encoder is random: dense order is noise, so finding all 30 codes at k=1 is BM25's doing.
    with _serve(tmp_path, db_url, tiny_encoder, blocking_lexical_weight=5.0) as client:
        _catalogue(client)
        for i in (0, 7, 29):
            res = client.post("/v1/match", json={"offer": {"title": f"acme {CODES[i]}"}, "top_k": 1})
            assert res.status_code == 200, res.text
            body = res.json()
            assert [c["external_id"] for c in body["candidates"]] == [f"w-{i}"]
            assert body["model_versions"]["blocking"] == "hybrid-bm25(pool=200,lexical=50,weight=5)"
            assert "lexical" in body["timings_ms"]
        # Filters still apply to the pool.
        res = client.post(
            "/v1/match", json={"offer": {"title": CODES[3]}, "top_k": 5, "filters": {"brand": "Globex"}}
        ).json()
        assert res["candidates"] == []


def test_weight_zero_serves_dense_blocking(tmp_path: Path, db_url: str, tiny_encoder: Encoder) -> None:
    with _serve(tmp_path, db_url, tiny_encoder, blocking_lexical_weight=0.0) as client:
        _catalogue(client)
        found = 0
        for i, code in enumerate(CODES):
            body = client.post("/v1/match", json={"offer": {"title": f"acme {code}"}, "top_k": 1}).json()
            assert "blocking" not in body["model_versions"]
            found += body["candidates"][0]["external_id"] == f"w-{i}"
        assert found < len(CODES)  # a random encoder does not know part numbers


def test_lexical_channel_brings_in_what_the_dense_pool_misses(
    tmp_path: Path, db_url: str, tiny_encoder: Encoder
) -> None:
    # A dense pool of one random product: only BM25's own candidates can find the part number.
    with _serve(tmp_path, db_url, tiny_encoder, blocking_pool=1, blocking_lexical_weight=5.0) as client:
        _catalogue(client)
        services = client.app.state.services
        lexicon = services.pipeline.rescorer.lexicon
        with lexicon.at(services.index.index.version) as live:  # the change log replayed since start-up
            assert len(live) == len(CODES)
        for i in (2, 11, 23):
            body = client.post("/v1/match", json={"offer": {"title": f"acme {CODES[i]}"}, "top_k": 1}).json()
            assert [c["external_id"] for c in body["candidates"]] == [f"w-{i}"]
        # A deleted product the lexicon still lists is never served; filters apply to BM25 candidates.
        assert client.delete("/v1/products/w-5").status_code in (200, 204)
        body = client.post("/v1/match", json={"offer": {"title": f"acme {CODES[5]}"}, "top_k": 3}).json()
        assert "w-5" not in [c["external_id"] for c in body["candidates"]]
        body = client.post(
            "/v1/match", json={"offer": {"title": CODES[6]}, "top_k": 3, "filters": {"brand": "Globex"}}
        ).json()
        assert body["candidates"] == []


@pytest.mark.parametrize(
    "bad", [{"blocking_pool": 0}, {"blocking_lexical_weight": -1.0}, {"blocking_lexical_candidates": -1}]
)
def test_bad_blocking_settings_are_refused(tmp_path: Path, sqlite_url: str, bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        make_settings(tmp_path, sqlite_url, **bad)
