"""R3: a frozen query set gives identical match results (ranked ids, scores, decisions) and the
same recall@k / MRR before and after a restart, after an index rebuild + snapshot reloaded by a
fresh app, and (flat) after a rebuild from the database alone. Not "close": identical."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.pipeline.encoder import Encoder
from tests.conftest import ADMIN_TOKEN, make_settings
from tests.helpers import product, wait_job

N_PRODUCTS = 300
K = 10
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _frozen_queries() -> list[tuple[str, dict]]:
    """40 noisy offers (dropped words, lower case) with their true product; fixed seed."""
    rng = random.Random(11)
    out = []
    for n in rng.sample(range(1, N_PRODUCTS + 1), 40):
        words = product(n)["title"].split()
        del words[rng.randrange(len(words))]
        title = " ".join(words).lower() if rng.random() < 0.5 else " ".join(words)
        out.append((product(n)["external_id"], {"offer": {"title": title}, "top_k": K}))
    return out


def _run(client: TestClient, queries: list[tuple[str, dict]]) -> dict:
    res = client.post("/v1/match/batch", json={"items": [q for _, q in queries]})
    assert res.status_code == 200, res.text
    ranked, hits, rr = [], 0, 0.0
    for (truth, _), result in zip(queries, res.json()["results"]):
        ids = [c["external_id"] for c in result["candidates"]]
        ranked.append(
            (
                result["decision"],
                [
                    (c["external_id"], c["score"], c["retrieval_score"], c["lexical_score"])
                    for c in result["candidates"]
                ],
            )
        )
        if truth in ids:
            hits += 1
            rr += 1.0 / (ids.index(truth) + 1)
    return {"ranked": ranked, f"recall@{K}": hits / len(queries), "mrr": rr / len(queries)}


def _app(tmp_path: Path, url: str, encoder_dir: Path, kind: str) -> TestClient:
    # A fresh encoder read from its safetensors each time, as a restarted process would.
    encoder = Encoder.load(str(encoder_dir), max_length=32)
    settings = make_settings(tmp_path / "var", url, index_kind=kind)
    return TestClient(create_app(settings, encoder=encoder, background_load=False), raise_server_exceptions=False)


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_identical_results_after_restart_and_snapshot_reload(tmp_path, sqlite_url, tiny_encoder_dir, kind):
    queries = _frozen_queries()
    rows = "\n".join(f"{product(n)['external_id']},{product(n)['title']},{product(n)['brand']}" for n in range(1, 301))
    with _app(tmp_path, sqlite_url, tiny_encoder_dir, kind) as first:
        res = first.post(
            "/v1/ingest", files={"file": ("c.csv", ("external_id,title,brand\n" + rows + "\n").encode(), "text/csv")}
        )
        assert wait_job(first, res.json()["job_id"])["rows_ok"] == N_PRODUCTS
        before = _run(first, queries)
        assert before[f"recall@{K}"] > 0.1, before  # chance is 10/300; the tiny model is random
    snapshots = list((tmp_path / "var" / "index").glob(f"*.{kind}.pmindex"))
    assert snapshots, "the index snapshot is written at shutdown"

    with _app(tmp_path, sqlite_url, tiny_encoder_dir, kind) as restarted:  # loads that snapshot
        assert _run(restarted, queries) == before
        rebuilt = restarted.post("/v1/admin/index/rebuild", headers=ADMIN)
        assert rebuilt.status_code == 200, rebuilt.text
        assert _run(restarted, queries) == before  # after the swap to the rebuilt index

    with _app(tmp_path, sqlite_url, tiny_encoder_dir, kind) as reloaded:  # the rebuilt snapshot
        assert _run(reloaded, queries) == before

    if kind == "flat":  # exact search: even an index rebuilt from the rows alone gives the same answer
        for path in snapshots:
            path.unlink()
        with _app(tmp_path, sqlite_url, tiny_encoder_dir, kind) as from_rows:
            assert _run(from_rows, queries) == before
