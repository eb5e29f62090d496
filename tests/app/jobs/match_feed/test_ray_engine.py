"""The Ray Data engine of bulk matching on a local Ray cluster: same results as the local
engine, the same checkpoints, and a job can resume on either engine."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import ray  # a dev dependency: the Ray engine is tested in CI

from app.db import jobs
from app.db.base import make_engine, make_session_factory
from app.jobs.context import JobContext
from app.jobs.match_feed.runner import KIND, make_payload
from app.jobs.match_feed.writer import read_results
from app.jobs.runner import run_job
from tests.conftest import make_settings
from tests.helpers import product

N_CATALOGUE = 80


@pytest.fixture(scope="module")
def ray_cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def _ctx(tmp_path: Path, url: str, encoder) -> JobContext:
    settings = make_settings(tmp_path / "var", url, match_feed_chunk_rows=16, ray_actors=1)
    ctx = JobContext(settings, make_session_factory(make_engine(url)), lambda: encoder)
    cat = tmp_path / "catalogue.jsonl"
    cat.write_text("\n".join(json.dumps(product(i)) for i in range(1, N_CATALOGUE + 1)) + "\n")
    job, _ = jobs.create_job(ctx.factory, "ingest", {"path": str(cat), "format": "jsonl"})
    assert run_job(ctx, job.id, "loader") == "completed"
    return ctx


def _feed(path: Path, n: int) -> Path:
    lines = []
    for i in range(n):
        p = product(i % N_CATALOGUE + 1)
        words = p["title"].split()
        lines.append(json.dumps({"offer_id": f"o{i}", "title": " ".join(words[: 3 + i % 4]), "brand": p["brand"]}))
        if i % 25 == 7:
            lines.append(json.dumps({"offer_id": f"bad{i}", "title": "???"}))  # a row error
    path.write_text("\n".join(lines) + "\n")
    return path


def _run(ctx: JobContext, feed: Path, engine: str, output: str = "csv") -> tuple[str, list[dict]]:
    job_id = str(uuid.uuid4())
    payload = make_payload(ctx.settings, job_id, feed, "jsonl", output, 5, engine=engine)
    jobs.create_job(ctx.factory, KIND, payload, None, job_id)
    assert run_job(ctx, job_id, f"w-{engine}") == "completed_with_errors"
    return job_id, read_results(Path(payload["output_path"]))


def _same(got: list[dict], want: list[dict]) -> None:
    assert [r["row"] for r in got] == [r["row"] for r in want]
    for g, w in zip(got, want):
        assert g["offer_id"] == w["offer_id"]
        assert g["candidate_ids"] == w["candidate_ids"], g["offer_id"]
        assert g["decision"] == w["decision"]
        assert g["candidate_scores"] == pytest.approx(w["candidate_scores"], abs=1e-5)


def test_ray_engine_gives_the_local_engine_results(tmp_path, sqlite_url, tiny_encoder, ray_cluster):
    ctx = _ctx(tmp_path, sqlite_url, tiny_encoder)
    feed = _feed(tmp_path / "feed.jsonl", 100)
    local_id, local = _run(ctx, feed, "local")
    ray_id, ray_results = _run(ctx, feed, "ray", output="parquet")
    _same(ray_results, local)
    local_job, ray_job = jobs.get_job(ctx.factory, local_id), jobs.get_job(ctx.factory, ray_id)
    assert ray_job.timings["engine"] == "ray" and ray_job.timings["chunks"] == local_job.timings["chunks"]
    assert (ray_job.rows_ok, ray_job.rows_failed) == (local_job.rows_ok, local_job.rows_failed) == (100, 4)
    local_errors = [(e.row, e.field) for e in jobs.row_errors(ctx.factory, local_id, 100)]
    assert [(e.row, e.field) for e in jobs.row_errors(ctx.factory, ray_id, 100)] == local_errors


def test_a_job_started_locally_resumes_on_ray(tmp_path, sqlite_url, tiny_encoder, ray_cluster):
    ctx = _ctx(tmp_path, sqlite_url, tiny_encoder)
    feed = _feed(tmp_path / "feed.jsonl", 60)
    _, reference = _run(ctx, feed, "local")

    job_id = str(uuid.uuid4())
    payload = make_payload(ctx.settings, job_id, feed, "jsonl", "csv", 5, engine="local")
    jobs.create_job(ctx.factory, KIND, payload, None, job_id)

    def crash(done: int, total: int | None) -> None:
        if done == 32:
            raise RuntimeError("worker died")

    ctx.on_progress = crash
    assert run_job(ctx, job_id, "w1") is None
    assert jobs.get_job(ctx.factory, job_id).checkpoint == 32
    ctx.on_progress = None
    from sqlalchemy import update

    from app.db.tables import Job

    with ctx.factory() as s, s.begin():
        s.execute(update(Job).where(Job.id == job_id).values(payload={**payload, "engine": "ray"}))
    assert run_job(ctx, job_id, "w2") == "completed_with_errors"
    _same(read_results(Path(payload["output_path"])), reference)


def test_cli_joins_the_cluster_named_by_ray_address(tmp_path, tiny_encoder_dir, ray_cluster):
    from tests.app.jobs.match_feed.test_runner import _cli, cli_env

    env = cli_env(tmp_path, tiny_encoder_dir)
    feed = _feed(tmp_path / "offers.jsonl", 30)
    local = _cli(["match-file", str(feed), "--out", str(tmp_path / "local.csv"), "--engine", "local"], env)
    assert local.returncode == 0, local.stderr
    env["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address  # no --engine: RAY_ADDRESS picks ray
    res = _cli(["match-file", str(feed), "--out", str(tmp_path / "ray.csv")], env)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["state"] == "completed_with_errors" and summary["engine"] == "ray"
    _same(read_results(tmp_path / "ray.csv"), read_results(tmp_path / "local.csv"))
