"""Queues and at-least-once execution, on the in-process queue and on the real Redis."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta, timezone

from sqlalchemy import update

from app.db import jobs
from app.db.base import make_engine, make_session_factory
from app.db.tables import Job
from app.jobs.context import JobContext
from app.jobs.queue import InProcessQueue, RedisQueue
from app.jobs.runner import run_job
from app.jobs.worker import Worker
from tests.conftest import make_settings
from tests.helpers import product


def _feed(path, n):
    path.write_text("\n".join(json.dumps(product(i)) for i in range(1, n + 1)))
    return path


def _ctx(settings, encoder):
    return JobContext(settings, make_session_factory(make_engine(settings.database_url)), lambda: encoder)


def _signature(factory):
    from sqlalchemy import select

    from app.db.tables import Product

    with factory() as s:
        return sorted(s.execute(select(Product.external_id, Product.content_hash)).all())


def _ingest_setup(tmp_path, sqlite_url, encoder, rows):
    """A job context, an ingest job over a feed of ``rows`` products, and an in-process worker."""
    ctx = _ctx(make_settings(tmp_path / "var", sqlite_url), encoder)
    feed = _feed(tmp_path / "f.jsonl", rows)
    job, _ = jobs.create_job(ctx.factory, "ingest", {"path": str(feed), "format": "jsonl"})
    queue = InProcessQueue()
    return ctx, feed, job, queue, Worker(ctx, queue)


def test_in_process_job_runs_once_and_rerun_is_idempotent(tmp_path, sqlite_url, tiny_encoder):
    ctx, feed, job, queue, worker = _ingest_setup(tmp_path, sqlite_url, tiny_encoder, 120)
    queue.push(job.id)
    queue.push(job.id)  # a duplicate push is absorbed
    assert worker.run_once(timeout=1) == "completed"
    assert queue.pop(0.05) is None
    first = _signature(ctx.factory)
    # Running a finished job again does nothing; a new job over the same file changes nothing.
    assert run_job(ctx, job.id, "other") is None
    again, _ = jobs.create_job(ctx.factory, "ingest", {"path": str(feed), "format": "jsonl"})
    assert run_job(ctx, again.id, "w2") == "completed"
    assert _signature(ctx.factory) == first
    final = jobs.get_job(ctx.factory, again.id)
    assert final.rows_unchanged == 120 and final.rows_ok == 0


def test_lease_excludes_a_second_claimant(tmp_path, sqlite_url):
    settings = make_settings(tmp_path / "var", sqlite_url)
    factory = make_session_factory(make_engine(settings.database_url))
    job, _ = jobs.create_job(factory, "ingest", {})
    assert jobs.claim(factory, job.id, "a", 30)
    assert not jobs.claim(factory, job.id, "b", 30)
    with factory() as s, s.begin():
        s.execute(
            update(Job).where(Job.id == job.id).values(lease_expires_at=datetime.now(timezone.utc) - timedelta(1))
        )
    assert job.id in jobs.orphaned_jobs(factory)
    assert jobs.claim(factory, job.id, "b", 30)


def test_dedupe_key_returns_the_active_job(tmp_path, sqlite_url):
    factory = make_session_factory(make_engine(sqlite_url))
    a, created_a = jobs.create_job(factory, "retrain", {}, dedupe_key="same")
    b, created_b = jobs.create_job(factory, "retrain", {}, dedupe_key="same")
    assert created_a and not created_b and a.id == b.id
    jobs.finish(factory, a.id, None, jobs.COMPLETED)
    c, created_c = jobs.create_job(factory, "retrain", {}, dedupe_key="same")
    assert created_c and c.id != a.id


def test_redis_queue_roundtrip_and_reaper(tmp_path, redis_url, sqlite_url, tiny_encoder):
    name = f"pmtest-{uuid.uuid4().hex[:8]}"
    queue = RedisQueue(redis_url, name)
    assert queue.ping()
    queue.push("j1")
    queue.push("j1")  # marker: one entry while it waits
    assert queue.length() == 1
    assert queue.pop(1) == "j1"
    queue.ack("j1")
    assert queue.pop(0.1) is None

    settings = make_settings(tmp_path / "var", sqlite_url, redis_url=redis_url, queue_name=name, job_lease_seconds=1)
    ctx = _ctx(settings, tiny_encoder)
    feed = _feed(tmp_path / "f.jsonl", 30)
    job, _ = jobs.create_job(ctx.factory, "ingest", {"path": str(feed), "format": "jsonl"})
    # A worker took the job and died: the lease is held but expires.
    assert jobs.claim(ctx.factory, job.id, "dead-worker", 0.5)
    time.sleep(0.7)
    worker = Worker(ctx, RedisQueue(redis_url, name))
    assert worker.reap() == 1
    assert worker.run_once(timeout=2) == "completed"
    assert jobs.get_job(ctx.factory, job.id).attempts == 2


def test_stop_lets_the_job_in_hand_finish(tmp_path, sqlite_url, tiny_encoder):
    ctx, _, job, queue, worker = _ingest_setup(tmp_path, sqlite_url, tiny_encoder, 300)
    thread = worker.start_thread()
    queue.push(job.id)
    deadline = time.monotonic() + 10
    while jobs.get_job(ctx.factory, job.id).state == "queued" and time.monotonic() < deadline:
        time.sleep(0.01)  # until the worker has claimed it
    assert worker.stop(wait_seconds=60) is True
    assert not thread.is_alive(), "the worker thread ended after the job in hand"
    assert jobs.get_job(ctx.factory, job.id).state == "completed"
    assert len(_signature(ctx.factory)) == 300
    assert worker.stop(wait_seconds=1) is True  # stopping twice is harmless
