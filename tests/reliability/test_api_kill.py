"""R1 (API variant) and R2: SIGKILL the API process while its in-process queue runs an
ingestion; restart it; the job resumes from its checkpoint and completes, and afterwards the
database and the FAISS index agree exactly (same ids, no orphans either way, no duplicates).

The crash loop repeats ingest -> kill at a seeded random moment -> restart -> verify N times on
one data directory, each feed overlapping the previous one (updates and re-sent rows), so
replays, snapshots written mid-ingestion and replays of the change log are all exercised."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from app.db.base import make_engine, make_session_factory
from app.db.tables import Job, Product, ProductEmbedding
from app.search.vector_index import VectorIndex
from tests.conftest import ADMIN_TOKEN
from tests.helpers import product
from tests.reliability.conftest import ApiServer, service_env, wait_job_http

pytestmark = pytest.mark.chaos

SEED = 7
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _feed(path: Path, ids: range, revision: int) -> Path:
    rows = []
    for n in ids:
        row = product(n)
        if revision:
            row["title"] = f"{row['title']} rev {revision}"
        rows.append(json.dumps(row))
    path.write_text("\n".join(rows) + "\n")
    return path


def _submit(server: ApiServer, feed: Path) -> str:
    with server.client() as c:
        res = c.post("/v1/ingest", files={"file": (feed.name, feed.read_bytes(), "application/x-ndjson")})
    assert res.status_code == 202, res.text
    return res.json()["job_id"]


def _kill_mid_job(server: ApiServer, job_id: str, kill_after: int, total: int) -> dict:
    """Poll the job through the API and SIGKILL the server once `kill_after` rows are done."""
    deadline = time.monotonic() + 120
    body: dict = {}
    with server.client() as c:
        while time.monotonic() < deadline:
            body = c.get(f"/v1/jobs/{job_id}").json()
            if body["progress"]["rows_done"] >= kill_after or body["state"] != "queued" and body["state"] != "running":
                break
            time.sleep(0.02)
    server.kill()
    assert body.get("state") == "running", f"the job was not running at the kill ({body}); raise the feed size"
    assert 0 < body["progress"]["rows_done"] < total
    return body


def _verify(server: ApiServer, db_url: str, expected: dict[str, str], snapshot_dir: Path) -> None:
    """DB == index: same product ids, one vector each, nothing orphaned, nothing duplicated."""
    factory = make_session_factory(make_engine(db_url))
    with factory() as s:
        rows = dict(s.execute(select(Product.external_id, Product.title)).all())
        n_vectors = s.scalar(select(func.count(ProductEmbedding.product_id)))
        db_ids = set(s.scalars(select(Product.id)))
    factory.kw["bind"].dispose()
    assert rows == expected  # every product once, with the content of its latest feed
    assert n_vectors == len(expected)

    with server.client() as c:
        report = c.get("/v1/admin/index", headers=ADMIN).json()
        assert report["consistent"] and report["missing"] == 0 and report["orphans"] == 0, report
        assert report["stats"]["live"] == len(expected), report
        assert c.get("/readyz").json()["index"]["size"] == len(expected)

    # A snapshot on disk (written mid-ingestion or at shutdown) loads with a valid checksum,
    # holds no id twice and no id without a row.
    for path in snapshot_dir.glob("*.pmindex"):
        ids = VectorIndex.load(path).ids()
        assert len(np.unique(ids)) == len(ids)
        assert set(int(i) for i in ids) <= db_ids


def _start(tmp_path: Path, tiny_encoder_dir: Path) -> tuple[ApiServer, str]:
    data = tmp_path / "var"
    db_url = f"sqlite:///{data / 'productmatch.db'}"
    env = service_env(data, tiny_encoder_dir, INDEX_SNAPSHOT_EVERY="300")
    server = ApiServer(env, tmp_path / "api.log")
    server.start()
    return server, db_url


def test_sigkill_api_mid_ingestion_crash_loop(tmp_path, tiny_encoder_dir):
    """R1 + R2: N kill/restart cycles with a fixed seed. In each, the killed job resumes from its
    checkpoint in the restarted API (the same job, a second attempt), and the integrity check
    holds: DB == index, one row and one vector per product, snapshots load, nothing duplicated."""
    iterations, per_feed, shift = 3, 900, 300
    rng = random.Random(SEED)
    server, db_url = _start(tmp_path, tiny_encoder_dir)
    expected: dict[str, str] = {}
    try:
        for it in range(iterations):
            ids = range(1 + it * shift, 1 + it * shift + per_feed)  # overlaps the previous feed
            feed = _feed(tmp_path / f"feed-{it}.jsonl", ids, revision=it)
            job_id = _submit(server, feed)
            kill_after = rng.randint(100, per_feed - 250)
            killed = _kill_mid_job(server, job_id, kill_after, per_feed)

            server.start()  # same data folder and database: the job resumes, it does not restart
            with server.client() as c:
                done = wait_job_http(c, job_id)
            assert done["state"] == "completed", (it, done, server.tail())
            assert done["attempts"] >= 2, done
            assert done["rows_failed"] == 0 and done["progress"]["rows_done"] == per_feed
            assert done["rows_ok"] + done["rows_unchanged"] == per_feed  # chunk counters are exactly-once
            assert 0 < killed["progress"]["rows_done"] < per_feed
            for n in ids:
                expected[product(n)["external_id"]] = product(n)["title"] + (f" rev {it}" if it else "")
            _verify(server, db_url, expected, tmp_path / "var" / "index")
            engine = make_engine(db_url)
            with make_session_factory(engine)() as s:
                assert s.scalar(select(func.count(Job.id))) == it + 1  # one job per feed, none re-created
            engine.dispose()
        assert server.unhandled_errors() == 0
    finally:
        server.stop()
