"""POST /v1/match/jobs and GET /v1/match/jobs/{id}/results: upload or server-side feed,
progress through /v1/jobs/{id}, CSV and Parquet downloads, and every bad input a 4xx."""

from __future__ import annotations

import csv
import io
import json

import pyarrow.parquet as pq
import pytest

from app.core.config import Settings
from tests.conftest import make_settings
from tests.helpers import product, wait_job

CATALOGUE = [product(n) for n in range(1, 31)]


@pytest.fixture
def settings(tmp_path, db_url) -> Settings:
    return make_settings(tmp_path / "var", db_url, match_feed_chunk_rows=4, max_upload_bytes=200_000)


def _load_catalogue(client) -> None:
    data = "\n".join(json.dumps(p) for p in CATALOGUE).encode()
    res = client.post("/v1/ingest", files={"file": ("cat.jsonl", data)})
    assert wait_job(client, res.json()["job_id"])["state"] == "completed"


def _feed_csv(n: int, bad: bool = True) -> bytes:
    lines = ["offer_id,title,brand"]
    for i in range(n):
        p = CATALOGUE[i % len(CATALOGUE)]
        lines.append(f'offer-{i},"{p["title"]}",{p["brand"]}')
    if bad:
        lines.append(",A title without an id,Acme")
        lines.append("offer-blank,   ,Acme")
    return ("\n".join(lines) + "\n").encode()


def _submit(client, name: str, data: bytes, **form):
    return client.post("/v1/match/jobs", files={"file": (name, data)}, data=form)


def test_upload_csv_feed_and_download_csv_results(client):
    _load_catalogue(client)
    res = _submit(client, "offers.csv", _feed_csv(10), top_k="3")
    assert res.status_code == 202, res.text
    body = res.json()
    assert body["status_url"] == f"/v1/jobs/{body['job_id']}"
    assert body["results_url"] == f"/v1/match/jobs/{body['job_id']}/results"
    job = wait_job(client, body["job_id"])
    assert job["kind"] == "match_feed" and job["state"] == "completed_with_errors", job
    assert job["progress"] == {"rows_done": 12, "rows_total": 12, "fraction": 1.0}
    assert job["rows_ok"] == 10 and job["rows_failed"] == 2
    assert sorted((e["row"], e["field"]) for e in job["errors"]) == [(11, "offer_id"), (12, "title")]
    assert job["timings"]["chunks"] == job["timings"]["chunks_total"] == 3

    out = client.get(body["results_url"])
    assert out.status_code == 200
    assert out.headers["content-type"].startswith("text/csv")
    assert "attachment" in out.headers["content-disposition"]
    lines = out.text.splitlines()
    assert lines[0] == "row,offer_id,decision,match_id,top_score,candidate_ids,candidate_scores"
    assert len(lines) == 11
    rows = list(csv.DictReader(io.StringIO(out.text)))
    assert [r["row"] for r in rows] == [str(n) for n in range(1, 11)]
    assert rows[0]["offer_id"] == "offer-0" and json.loads(rows[0]["candidate_ids"])[0] == "p-00001"
    assert all(len(json.loads(r["candidate_scores"])) == 3 for r in rows)


def test_jsonl_feed_with_parquet_output_and_filters(client):
    _load_catalogue(client)
    offers = [{"id": i, "title": CATALOGUE[i]["title"]} for i in range(7)]
    data = "\n".join(json.dumps(o) for o in offers).encode()
    res = _submit(client, "offers.jsonl", data, output="parquet", top_k="2", brand="Acme")
    assert res.status_code == 202, res.text
    job = wait_job(client, res.json()["job_id"])
    assert job["state"] == "completed", job
    out = client.get(res.json()["results_url"])
    assert out.status_code == 200 and out.headers["content-type"] == "application/vnd.apache.parquet"
    table = pq.read_table(io.BytesIO(out.content))
    assert table.column_names == [
        "row",
        "offer_id",
        "decision",
        "match_id",
        "top_score",
        "candidate_ids",
        "candidate_scores",
    ]
    rows = table.to_pylist()
    assert [r["offer_id"] for r in rows] == [str(i) for i in range(7)]
    acme = {p["external_id"] for p in CATALOGUE if p["brand"] == "Acme"}
    assert all(set(r["candidate_ids"]) <= acme and len(r["candidate_ids"]) == 2 for r in rows)


def test_results_before_completion_is_409_and_unknown_is_404(client, settings):
    from app.db import jobs
    from app.jobs.match_feed.runner import KIND

    assert client.get("/v1/match/jobs/nope/results").status_code == 404
    # A job that is not a match job is not found here either.
    job, _ = jobs.create_job(client.app.state.services.factory, "ingest", {"path": "x", "format": "csv"})
    assert client.get(f"/v1/match/jobs/{job.id}/results").status_code == 404
    queued, _ = jobs.create_job(
        client.app.state.services.factory, KIND, {"output": "csv", "output_path": "/nowhere.csv"}
    )
    res = client.get(f"/v1/match/jobs/{queued.id}/results")
    assert res.status_code == 409 and "queued" in res.json()["detail"]
    jobs.finish(client.app.state.services.factory, queued.id, None, jobs.FAILED, "the feed vanished")
    res = client.get(f"/v1/match/jobs/{queued.id}/results")
    assert res.status_code == 409 and "the feed vanished" in res.json()["detail"]


def test_bad_requests_are_4xx(client):
    good = _feed_csv(2, bad=False)
    cases = [
        (("offers.xlsx", good), {}, 422, "format"),
        (("offers.csv", good), {"format": "xml"}, 422, "format"),
        (("offers.csv", good), {"output": "xlsx"}, 422, None),
        (("offers.csv", good), {"engine": "spark"}, 422, None),
        (("offers.csv", good), {"top_k": "0"}, 422, None),
        (("offers.csv", good), {"top_k": "101"}, 422, None),
        (("empty.csv", b""), {}, 422, "empty"),
        (("binary.csv", b"\x00\x01PK\x03\x04" * 50), {}, 415, "binary"),
        (("latin1.csv", "offer_id,title\n1,Caf\u00e9\n".encode("latin-1")), {}, 422, "UTF-8"),
        (("noid.csv", b"name,title\nx,y\n"), {}, 422, "id column"),
        (("dupes.csv", b"offer_id,title,title\n1,a,b\n"), {}, 422, "repeats"),
    ]
    for (name, data), form, code, word in cases:
        res = _submit(client, name, data, **form)
        assert res.status_code == code, (name, form, res.text)
        if word:
            assert word in str(res.json()["detail"]), (name, res.text)
    assert client.post("/v1/match/jobs", data={"top_k": "3"}).status_code == 422  # no source
    both = client.post("/v1/match/jobs", files={"file": ("a.csv", good)}, data={"path": "a.csv"})
    assert both.status_code == 422


def test_upload_over_the_limit_is_413(client, settings):
    big = b"offer_id,title\n" + b"".join(b"o%d,Some title %d\n" % (i, i) for i in range(20_000))
    assert len(big) > settings.max_upload_bytes
    res = _submit(client, "big.csv", big)
    assert res.status_code == 413


def test_server_side_feed_is_confined(client, settings):
    _load_catalogue(client)
    allowed = settings.ingest_allowed_dir
    allowed.mkdir(parents=True, exist_ok=True)
    (allowed / "offers.csv").write_bytes(_feed_csv(3, bad=False))
    res = client.post("/v1/match/jobs", data={"path": "offers.csv", "top_k": "2"})
    assert res.status_code == 202, res.text
    assert wait_job(client, res.json()["job_id"])["state"] == "completed"
    assert len(client.get(res.json()["results_url"]).text.splitlines()) == 4
    for bad in ("../secret.csv", "/etc/passwd", "sub/../../x.csv"):
        assert client.post("/v1/match/jobs", data={"path": bad}).status_code == 403, bad
    assert client.post("/v1/match/jobs", data={"path": "missing.csv"}).status_code == 404


def test_server_side_feed_over_its_limit_is_413(tmp_path, sqlite_url, tiny_encoder):
    from fastapi.testclient import TestClient

    from app.main import create_app

    settings = make_settings(tmp_path / "var", sqlite_url, match_feed_max_bytes=100)
    settings.ingest_allowed_dir.mkdir(parents=True, exist_ok=True)
    (settings.ingest_allowed_dir / "offers.csv").write_bytes(_feed_csv(10))
    app = create_app(settings, encoder=tiny_encoder, background_load=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        res = client.post("/v1/match/jobs", data={"path": "offers.csv"})
        assert res.status_code == 413 and "100 bytes" in res.json()["detail"]
