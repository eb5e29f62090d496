"""Dependency outages against a real uvicorn server, with our own Redis and PostgreSQL servers
(stopped and restarted here; the shared ones are never touched).

Redis down: matching and catalogue reads keep answering (matching never touches Redis; there is
no cache to bypass), job submissions answer 503 with a clear message and store nothing (no job
row, no upload file), job status reads keep working, and once Redis is back new jobs run and a
job whose queue entry was lost with Redis (no persistence) is re-queued from the database.

PostgreSQL restart: requests that need the database answer 503 (never 500) while it is down,
/healthz stays 200, and the same API process recovers by itself when it is back.
"""

from __future__ import annotations

import time

import httpx
import pytest
from sqlalchemy import func, select

from app.db.base import make_engine, make_session_factory
from app.db.tables import Job
from tests.conftest import ADMIN_TOKEN
from tests.helpers import product
from tests.reliability.conftest import ApiServer, WorkerProcess, service_env, wait_job_http

pytestmark = pytest.mark.chaos

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _csv(ids: range) -> bytes:
    lines = ["external_id,title,brand"]
    lines += [f"{product(n)['external_id']},{product(n)['title']},{product(n)['brand']}" for n in ids]
    return ("\n".join(lines) + "\n").encode()


def _upload(c: httpx.Client, ids: range) -> httpx.Response:
    return c.post("/v1/ingest", files={"file": ("feed.csv", _csv(ids), "text/csv")})


def _match(c: httpx.Client, n: int) -> httpx.Response:
    return c.post("/v1/match", json={"offer": {"title": product(n)["title"]}, "top_k": 3})


def _eventually(fn, timeout: float = 30.0, every: float = 0.25):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"condition not met in {timeout}s (last: {last})")


def _job_count(db_url: str) -> int:
    engine = make_engine(db_url)
    try:
        with make_session_factory(engine)() as s:
            return int(s.scalar(select(func.count(Job.id))) or 0)
    finally:
        engine.dispose()


def test_redis_outage_keeps_matching_refuses_jobs_and_recovers(tmp_path, tiny_encoder_dir, own_redis, processes):
    data = tmp_path / "var"
    db_url = f"sqlite:///{data / 'productmatch.db'}"
    env = service_env(data, tiny_encoder_dir, REDIS_URL=own_redis.url, QUEUE_NAME="outage")
    server = ApiServer(env, tmp_path / "api.log")
    worker = WorkerProcess(env, tmp_path / "worker.log")
    processes.extend([server, worker])
    server.start()
    worker.start()
    uploads = data / "uploads"

    with server.client() as c:
        res = _upload(c, range(1, 41))
        assert res.status_code == 202, res.text
        first = wait_job_http(c, res.json()["job_id"])
        assert first["state"] == "completed", first
        assert _match(c, 5).status_code == 200

        # A job accepted while Redis is up, whose queue entry dies with Redis: the worker is
        # stopped first so that nobody takes it before the outage.
        worker.stop()
        res = _upload(c, range(41, 61))
        assert res.status_code == 202, res.text
        stranded = res.json()["job_id"]

        own_redis.stop()
        jobs_before = _job_count(db_url)
        files_before = sorted(p.name for p in uploads.iterdir())
        for n in (1, 7, 13):
            res = _match(c, n)
            assert res.status_code == 200, res.text
            assert res.json()["candidates"], res.text
        batch = c.post("/v1/match/batch", json={"items": [{"offer": {"title": product(3)["title"]}}] * 3})
        assert batch.status_code == 200, batch.text
        assert c.get("/v1/products/p-00002").status_code == 200
        assert c.get(f"/v1/jobs/{stranded}").json()["state"] == "queued"  # status reads need no Redis
        ready = c.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"]["queue"] is False, ready.text

        refused = _upload(c, range(61, 71))
        assert refused.status_code == 503, refused.text
        assert "queue" in refused.json()["detail"] and "not submitted" in refused.json()["detail"]
        assert refused.headers.get("retry-after")
        rollback = c.post("/v1/admin/models/rollback", headers=ADMIN)
        assert rollback.status_code == 503, rollback.text
        # Nothing half-stored: no job row and no upload file for the refused submissions.
        assert _job_count(db_url) == jobs_before
        assert sorted(p.name for p in uploads.iterdir()) == files_before

        own_redis.start()  # same port, empty: the stranded job's queue entry is gone
        worker.start()
        back = _eventually(lambda: (r := _upload(c, range(61, 71))).status_code == 202 and r)
        resumed = wait_job_http(c, back.json()["job_id"])
        assert resumed["state"] == "completed", resumed
        recovered = wait_job_http(c, stranded)  # re-queued by the reaper from the database
        assert recovered["state"] == "completed", recovered
        assert c.get("/readyz").json()["checks"]["queue"] is True
        total = c.get("/v1/products", params={"limit": 200}).json()["items"]
        assert len(total) == 70
    assert server.unhandled_errors() == 0, server.tail()


def test_postgres_restart_fails_cleanly_then_recovers(tmp_path, tiny_encoder_dir, own_postgres, processes):
    data = tmp_path / "var"
    env = service_env(data, tiny_encoder_dir, DATABASE_URL=own_postgres.url)
    server = ApiServer(env, tmp_path / "api.log")
    processes.append(server)
    server.start()
    pid = server.proc.pid  # type: ignore[union-attr]

    with server.client() as c:
        res = _upload(c, range(1, 31))
        assert res.status_code == 202, res.text
        assert wait_job_http(c, res.json()["job_id"])["state"] == "completed"
        assert _match(c, 4).status_code == 200

        own_postgres.stop("fast")  # terminates every open connection, like a restart
        outage = {
            "match": _match(c, 4),
            "batch": c.post("/v1/match/batch", json={"items": [{"offer": {"title": "acme widget"}}]}),
            "list": c.get("/v1/products"),
            "get": c.get("/v1/products/p-00001"),
            "put": c.put("/v1/products/new-1", json={"title": "Brand new widget"}),
            "delete": c.delete("/v1/products/p-00002"),
            "job": c.get(f"/v1/jobs/{res.json()['job_id']}"),
            "ingest": _upload(c, range(31, 36)),
            "admin-index": c.get("/v1/admin/index", headers=ADMIN),
        }
        for name, answer in outage.items():
            assert answer.status_code == 503, (name, answer.status_code, answer.text)
            assert "database is unavailable" in answer.json()["detail"], (name, answer.text)
        assert c.get("/healthz").status_code == 200
        assert c.get("/readyz").status_code == 503
        assert not list((data / "uploads").glob("*.csv"))[1:], "a refused upload left a file behind"

        own_postgres.start()
        _eventually(lambda: c.get("/readyz").status_code == 200, timeout=30)
        assert _match(c, 4).status_code == 200
        put = c.put("/v1/products/new-1", json={"title": "Brand new widget"})
        assert put.status_code == 201, put.text
        assert c.delete("/v1/products/p-00002").status_code == 204
        res = _upload(c, range(31, 36))
        assert res.status_code == 202, res.text
        assert wait_job_http(c, res.json()["job_id"])["state"] == "completed"
        report = c.get("/v1/admin/index", headers=ADMIN).json()
        assert report["consistent"] and report["stats"]["live"] == 30 + 1 - 1 + 5, report
    assert server.proc.pid == pid and server.proc.poll() is None  # recovered without a restart
    assert server.unhandled_errors() == 0, server.tail()


class _FlakyQueue:
    """Answers the ping, then fails the push: Redis went away between the two."""

    def ping(self) -> bool:
        return True

    def push(self, job_id: str) -> None:
        from app.jobs.queue import QueueUnavailable

        raise QueueUnavailable("Redis is unavailable: connection reset")


@pytest.mark.parametrize("flaky", [False, True], ids=["redis-down", "push-fails-after-ping"])
def test_every_job_submission_is_all_or_nothing(tmp_path, sqlite_url, tiny_encoder, flaky):
    """Each job-creating endpoint answers 503 and leaves no job row and no file behind."""
    from fastapi.testclient import TestClient

    from app.db import model_versions
    from app.main import create_app
    from app.registry import folders
    from tests.conftest import make_settings
    from tests.reliability.conftest import free_port

    dead_redis = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    settings = make_settings(tmp_path / "var", sqlite_url, redis_url=dead_redis)
    app = create_app(settings, encoder=tiny_encoder, background_load=False)
    with TestClient(app, raise_server_exceptions=False) as c:
        services = app.state.services
        if flaky:
            services.queue = _FlakyQueue()
        from tests.reliability.test_security import _artefact

        version = folders.register(services.factory, _artefact(tmp_path / "m"), settings.model_dir).version
        # A rollback needs an active version to take out of service (else 409 "nothing to roll back").
        model_versions.activate(services.factory, version)
        calls = {
            "ingest": lambda: _upload(c, range(1, 4)),
            "promote": lambda: c.post(f"/v1/admin/models/{version}/promote", headers=ADMIN),
            "rollback": lambda: c.post("/v1/admin/models/rollback", headers=ADMIN),
            "retrain": lambda: c.post(
                "/v1/admin/retrain", headers=ADMIN, json={"target": "matcher", "sources": ["feedback"]}
            ),
            "match-feed": lambda: c.post("/v1/match/jobs", files={"file": ("feed.csv", _csv(range(1, 4)), "text/csv")}),
        }
        for name, call in calls.items():
            res = call()
            assert res.status_code == 503, (name, res.text)
            assert "not submitted" in res.json()["detail"], (name, res.text)
        assert _job_count(sqlite_url) == 0
        uploads = settings.upload_dir
        assert not uploads.exists() or not any(uploads.iterdir())
        assert _match(c, 1).status_code == 200  # matching never needs the queue
    assert app.state.unhandled_errors == 0
