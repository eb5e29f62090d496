"""RERANK_DEPTH: the scorer reads only blocking's first N candidates; the rest follow unscored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from app.db import jobs
from app.db.base import make_engine, make_session_factory
from app.jobs.context import JobContext
from app.jobs.match_feed.runner import KIND, make_payload
from app.jobs.match_feed.writer import read_results
from app.jobs.runner import run_job
from app.main import create_app
from app.pipeline.encoder import Encoder
from tests.conftest import make_settings
from tests.helpers import product


def _serve(tmp_path: Path, db_url: str, encoder: Encoder, **overrides: object) -> TestClient:
    settings = make_settings(tmp_path / "var", db_url, **overrides)
    return TestClient(create_app(settings, encoder=encoder, background_load=False), raise_server_exceptions=False)


def _match(client: TestClient, title: str, k: int) -> dict:
    res = client.post("/v1/match", json={"offer": {"title": title}, "top_k": k})
    assert res.status_code == 200, res.text
    return res.json()


def test_only_the_first_candidates_are_scored_and_keep_their_full_depth_scores(
    tmp_path: Path, db_url: str, tiny_encoder: Encoder
) -> None:
    offers = [product(i)["title"] for i in (2, 5, 9)] + ["acme widget"]
    with _serve(tmp_path, db_url, tiny_encoder) as client:
        for i in range(1, 15):
            body = product(i)
            assert client.put(f"/v1/products/{body.pop('external_id')}", json=body).status_code in (200, 201)
        full = [_match(client, title, 8) for title in offers]
    # The same catalogue and index, served again with a shallower reranker.
    with _serve(tmp_path, db_url, tiny_encoder, rerank_depth=3) as client:
        shallow = [_match(client, title, 8) for title in offers]

    for whole, cut in zip(full, shallow):
        assert len(cut["candidates"]) == 8
        head, tail = cut["candidates"][:3], cut["candidates"][3:]
        assert sorted(c["retrieval_rank"] for c in head) == [1, 2, 3]
        assert [c["retrieval_rank"] for c in tail] == [4, 5, 6, 7, 8]  # blocking order
        assert all(c["score"] is None and c["lexical_score"] is None for c in tail)
        scores = [c["score"] for c in head]
        assert scores == sorted(scores, reverse=True)
        # A scored candidate's score is the one it gets when every candidate is scored.
        by_product = {c["external_id"]: c for c in whole["candidates"]}
        for c in head:
            assert c["score"] == pytest.approx(by_product[c["external_id"]]["score"], abs=1e-9)
            assert c["retrieval_rank"] == by_product[c["external_id"]]["retrieval_rank"]
        # The decision reads the best scored candidate, as at full depth when it is among the three.
        if whole["candidates"][0]["retrieval_rank"] <= 3:
            assert cut["decision"] == whole["decision"]
            assert cut["candidates"][0]["external_id"] == whole["candidates"][0]["external_id"]


def test_a_depth_beyond_top_k_scores_every_candidate(tmp_path: Path, db_url: str, tiny_encoder: Encoder) -> None:
    with _serve(tmp_path, db_url, tiny_encoder, rerank_depth=50) as client:
        for i in range(1, 8):
            body = product(i)
            client.put(f"/v1/products/{body.pop('external_id')}", json=body)
        body = _match(client, product(3)["title"], 5)
    assert all(c["score"] is not None for c in body["candidates"])


def test_rerank_depth_is_bounded() -> None:
    for bad in (-1, 101):
        with pytest.raises(ValidationError, match="rerank_depth"):
            make_settings(Path("var"), "sqlite://", rerank_depth=bad)


def test_review_items_keep_unscored_candidates(tmp_path: Path, sqlite_url: str, tiny_encoder: Encoder) -> None:
    # Every decision lands in the review band: match needs 1.0, review anything above 0.
    with _serve(
        tmp_path, sqlite_url, tiny_encoder, rerank_depth=2, match_threshold=1.0, review_threshold=0.0
    ) as client:
        for i in range(1, 8):
            body = product(i)
            client.put(f"/v1/products/{body.pop('external_id')}", json=body)
        assert _match(client, "acme widget", 4)["decision"] == "review"
        res = client.get("/v1/review")
        assert res.status_code == 200, res.text
        items = res.json()["items"]
    assert items
    scores = [c["score"] for c in items[0]["candidates"]]
    assert len(scores) == 4 and scores[2:] == [None, None] and None not in scores[:2]


@pytest.mark.parametrize("output", ["csv", "parquet"])
def test_feed_results_carry_null_scores_beyond_the_depth(
    tmp_path: Path, sqlite_url: str, tiny_encoder: Encoder, output: str
) -> None:
    settings = make_settings(tmp_path / "var", sqlite_url, rerank_depth=2)
    ctx = JobContext(settings, make_session_factory(make_engine(settings.database_url)), lambda: tiny_encoder)
    catalogue = tmp_path / "catalogue.jsonl"
    catalogue.write_text("\n".join(json.dumps(product(i)) for i in range(1, 21)) + "\n")
    job, _ = jobs.create_job(ctx.factory, "ingest", {"path": str(catalogue), "format": "jsonl"})
    assert run_job(ctx, job.id, "loader") == "completed"
    feed = tmp_path / "feed.jsonl"
    feed.write_text("\n".join(json.dumps({"offer_id": f"o{i}", "title": product(i)["title"]}) for i in range(1, 6)))
    payload = make_payload(settings, "feed-1", feed, "jsonl", output, 4)
    jobs.create_job(ctx.factory, KIND, payload, None, "feed-1")
    assert run_job(ctx, "feed-1", "w") == "completed"
    results = read_results(Path(jobs.get_job(ctx.factory, "feed-1").payload["output_path"]))
    assert len(results) == 5
    for r in results:
        scored, unscored = r["candidate_scores"][:2], r["candidate_scores"][2:]
        assert unscored == [None, None] and None not in scored
        assert r["top_score"] == scored[0] == max(scored)
