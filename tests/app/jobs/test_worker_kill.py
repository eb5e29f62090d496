"""R1/R6: SIGKILL a real worker process mid-ingestion; a restarted worker finishes the job and
the end state equals an uninterrupted run (rows, vectors, index; no duplicates or orphans)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from app.db import jobs
from app.db.base import make_engine, make_session_factory
from app.db.tables import Product, ProductEmbedding
from app.jobs.context import JobContext
from app.jobs.queue import RedisQueue
from app.jobs.runner import run_job
from app.pipeline.encoder import Encoder
from app.search.params import IndexParams
from app.search.sync import IndexService
from tests.conftest import ADMIN_TOKEN, make_settings, tiny_bi_encoder
from tests.helpers import product

pytestmark = [pytest.mark.chaos, pytest.mark.redis]

N_PRODUCTS = 1500
REPO = Path(__file__).resolve().parents[3]


def _write_feed(path: Path) -> Path:
    path.write_text("\n".join(json.dumps(product(i)) for i in range(1, N_PRODUCTS + 1)) + "\n")
    return path


def _signature(factory):
    with factory() as s:
        rows = s.execute(
            select(Product.external_id, Product.content_hash, ProductEmbedding.vector).join(
                ProductEmbedding, ProductEmbedding.product_id == Product.id
            )
        ).all()
    return {ext: (chash, np.frombuffer(emb, dtype=np.float32)) for ext, chash, emb in rows}


def _start_worker(env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "worker"],
        cwd=REPO,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def test_sigkill_worker_mid_ingestion_then_resume(tmp_path, db_url, redis_url, tiny_encoder_dir):
    encoder = Encoder(tiny_bi_encoder(), str(tiny_encoder_dir))
    feed = _write_feed(tmp_path / "feed.jsonl")

    # Reference: an uninterrupted run on a separate database.
    from app.db.migrate import upgrade

    ref_url = f"sqlite:///{tmp_path / 'ref.db'}"
    upgrade(ref_url)
    ref_settings = make_settings(tmp_path / "ref", ref_url)
    ref_factory = make_session_factory(make_engine(ref_url))
    ref_ctx = JobContext(ref_settings, ref_factory, lambda: encoder)
    ref_job, _ = jobs.create_job(ref_factory, "ingest", {"path": str(feed), "format": "jsonl"})
    assert run_job(ref_ctx, ref_job.id, "ref") == "completed"
    reference = _signature(ref_factory)

    queue_name = f"pmkill-{uuid.uuid4().hex[:8]}"
    settings = make_settings(tmp_path / "var", db_url, redis_url=redis_url, queue_name=queue_name)
    factory = make_session_factory(make_engine(db_url))
    follower = IndexService(factory, encoder.model_id, encoder.dim, IndexParams(), tmp_path / "idx")
    follower.open()
    job, _ = jobs.create_job(factory, "ingest", {"path": str(feed), "format": "jsonl"})
    RedisQueue(redis_url, queue_name).push(job.id)

    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "ADMIN_TOKEN": ADMIN_TOKEN,  # the default token is refused with Redis
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "QUEUE_NAME": queue_name,
        "DATA_DIR": str(settings.data_dir),
        "ENCODER": str(tiny_encoder_dir),
        "INGEST_CHUNK_ROWS": "50",
        "JOB_LEASE_SECONDS": "2",
        "TORCH_THREADS": "1",
    }
    log = tmp_path / "worker.log"
    kill_after = random.Random(1234).randint(200, 900)
    worker = _start_worker(env, log)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            current = jobs.get_job(factory, job.id)
            follower.catch_up()
            if current.rows_done >= kill_after:
                break
            assert worker.poll() is None, log.read_text()
            time.sleep(0.05)
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()

    killed = jobs.get_job(factory, job.id)
    assert killed.state == "running", "the job finished before the kill; raise N_PRODUCTS"
    assert 0 < killed.checkpoint < N_PRODUCTS
    with factory() as s:
        assert s.scalar(select(func.count(Product.id))) == killed.checkpoint  # chunk commits are atomic

    restarted = _start_worker(env, log)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            current = jobs.get_job(factory, job.id)
            follower.catch_up()
            if current.state in jobs.FINAL_STATES:
                break
            assert restarted.poll() is None, log.read_text()
            time.sleep(0.1)
    finally:
        restarted.send_signal(signal.SIGTERM)
        try:
            restarted.wait(15)
        except subprocess.TimeoutExpired:
            restarted.kill()

    done = jobs.get_job(factory, job.id)
    assert done.state == "completed", (done.state, done.message, log.read_text()[-3000:])
    assert done.attempts >= 2 and done.checkpoint == N_PRODUCTS and done.rows_done == N_PRODUCTS
    assert done.rows_ok == N_PRODUCTS and done.rows_failed == 0

    state = _signature(factory)
    assert set(state) == set(reference)
    for ext, (chash, vec) in reference.items():
        assert state[ext][0] == chash
        np.testing.assert_allclose(state[ext][1], vec, atol=1e-5)

    follower.catch_up()
    report = follower.verify()
    assert report.consistent, report
    assert len(follower.index) == N_PRODUCTS
