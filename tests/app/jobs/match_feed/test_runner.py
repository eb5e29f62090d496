"""Bulk matching of feeds: row errors, result files, checkpointed resume after crashes
(in-process and a real worker killed with SIGKILL), the CLI. Reading the feed: test_reader.py."""

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

import pytest
from sqlalchemy import update

from app.db import jobs
from app.db.base import make_engine, make_session_factory
from app.db.tables import Job
from app.jobs.context import JobContext
from app.jobs.match_feed.reader import scan_feed
from app.jobs.match_feed.runner import KIND, FeedJob, make_payload
from app.jobs.match_feed.writer import read_results
from app.jobs.queue import RedisQueue
from app.jobs.runner import run_job
from app.pipeline.encoder import Encoder
from tests.app.jobs.test_worker_kill import _start_worker
from tests.conftest import ADMIN_TOKEN, make_settings, tiny_bi_encoder
from tests.helpers import product

N_CATALOGUE = 60
REPO = Path(__file__).resolve().parents[4]


def _ctx(settings, encoder) -> JobContext:
    return JobContext(settings, make_session_factory(make_engine(settings.database_url)), lambda: encoder)


def _load_catalogue(ctx: JobContext, folder: Path, n: int = N_CATALOGUE) -> None:
    cat = folder / "catalogue.jsonl"
    cat.write_text("\n".join(json.dumps(product(i)) for i in range(1, n + 1)) + "\n")
    job, _ = jobs.create_job(ctx.factory, "ingest", {"path": str(cat), "format": "jsonl"})
    assert run_job(ctx, job.id, "loader") == "completed"


def _offer(i: int, n_catalogue: int = N_CATALOGUE) -> dict:
    p = product(i % n_catalogue + 1)
    return {"offer_id": f"o-{i:05d}", "title": p["title"], "brand": p["brand"]}


def _jsonl_feed(path: Path, n: int) -> Path:
    path.write_text("\n".join(json.dumps(_offer(i)) for i in range(n)) + "\n")
    return path


def _submit(ctx: JobContext, feed: Path, fmt: str = "jsonl", output: str = "csv", k: int = 5, **kw) -> str:
    job_id = str(uuid.uuid4())
    payload = make_payload(ctx.settings, job_id, feed, fmt, output, k, **kw)
    jobs.create_job(ctx.factory, KIND, payload, None, job_id)
    return job_id


def _results(ctx: JobContext, job_id: str) -> list[dict]:
    job = jobs.get_job(ctx.factory, job_id)
    return read_results(Path(job.payload["output_path"]))


# -- the job ---------------------------------------------------------------------------------


@pytest.mark.parametrize("output", ["csv", "parquet"])
def test_feed_job_results_and_row_errors(tmp_path, db_url, tiny_encoder, output):
    settings = make_settings(tmp_path / "var", db_url, match_feed_chunk_rows=7)
    ctx = _ctx(settings, tiny_encoder)
    _load_catalogue(ctx, tmp_path)
    feed = tmp_path / "feed.csv"
    lines = ["offer_id,title,brand,price"]
    for i in range(20):
        p = product(i + 1)
        lines.append(f'o{i},"{p["title"]}",{p["brand"]},{p["price"]}')
    lines[3] = ",No id here,Acme,1"  # data row 3: missing id
    lines[6] = "o5,   ,Acme,1"  # data row 6: blank title
    lines[9] = f"o8,{'y' * 2500},Acme,1"  # data row 9: over-long title
    lines[12] = "o11,Fine title,Acme,abc"  # data row 12: not a number
    feed.write_text("\n".join(lines) + "\n")
    job_id = _submit(ctx, feed, "csv", output, k=3)
    progress: list[tuple[int, int | None]] = []
    ctx.on_progress = lambda done, total: progress.append((done, total))
    assert run_job(ctx, job_id, "w") == "completed_with_errors"

    job = jobs.get_job(ctx.factory, job_id)
    assert (job.rows_total, job.rows_done, job.rows_ok, job.rows_failed) == (20, 20, 16, 4)
    assert job.timings["chunks"] == job.timings["chunks_total"] == 3 and job.timings["engine"] == "local"
    assert sum(job.timings["decisions"].values()) == 16
    assert progress == [(7, 20), (14, 20), (20, 20)]
    errors = {e.row: e.field for e in jobs.row_errors(ctx.factory, job_id, 100)}
    assert errors == {3: "offer_id", 6: "title", 9: "title", 12: "price"}

    results = _results(ctx, job_id)
    assert [r["row"] for r in results] == [n for n in range(1, 21) if n not in errors]
    assert len({r["offer_id"] for r in results}) == 16
    for r in results:
        assert len(r["candidate_ids"]) == len(r["candidate_scores"]) == 3
        assert r["candidate_scores"] == sorted(r["candidate_scores"], reverse=True)
        assert r["decision"] in ("match", "review", "no_match")
        assert r["top_score"] == r["candidate_scores"][0]
        assert (r["match_id"] is not None) == (r["decision"] == "match")
    # Offers whose title is a catalogue title find that product first.
    exact = [r for r in results if r["offer_id"] in {"o0", "o1", "o3"}]
    assert [r["candidate_ids"][0] for r in exact] == ["p-00001", "p-00002", "p-00004"]
    assert not FeedJob.from_job(job).parts_dir.exists()  # parts are removed once concatenated


def test_filters_and_csv_layout(tmp_path, sqlite_url, tiny_encoder):
    settings = make_settings(tmp_path / "var", sqlite_url)
    ctx = _ctx(settings, tiny_encoder)
    _load_catalogue(ctx, tmp_path)
    feed = _jsonl_feed(tmp_path / "feed.jsonl", 9)
    job_id = _submit(ctx, feed, k=4, brand="Globex")
    assert run_job(ctx, job_id, "w") == "completed"
    out = Path(jobs.get_job(ctx.factory, job_id).payload["output_path"])
    header = out.read_text().splitlines()[0]
    assert header == "row,offer_id,decision,match_id,top_score,candidate_ids,candidate_scores"
    globex = {p["external_id"] for p in (product(i) for i in range(1, N_CATALOGUE + 1)) if p["brand"] == "Globex"}
    for r in read_results(out):
        assert set(r["candidate_ids"]) <= globex


def test_header_only_feed_gives_an_empty_result(tmp_path, sqlite_url, tiny_encoder):
    ctx = _ctx(make_settings(tmp_path / "var", sqlite_url), tiny_encoder)
    feed = tmp_path / "feed.csv"
    feed.write_text("offer_id,title\n")
    job_id = _submit(ctx, feed, "csv", "parquet")
    assert run_job(ctx, job_id, "w") == "completed"
    assert _results(ctx, job_id) == []


def test_missing_feed_fails_the_job(tmp_path, sqlite_url, tiny_encoder):
    ctx = _ctx(make_settings(tmp_path / "var", sqlite_url), tiny_encoder)
    job_id = _submit(ctx, tmp_path / "gone.jsonl")
    assert run_job(ctx, job_id, "w") == "failed"
    assert "no longer available" in jobs.get_job(ctx.factory, job_id).message


class _Crash(Exception):
    pass


def test_crash_after_a_commit_and_before_one_resumes_exactly_once(tmp_path, db_url, tiny_encoder, monkeypatch):
    """A crash between a chunk's part file and its commit, and one right after a commit: the
    resumed job rewrites the uncommitted part and the result has each row exactly once."""
    settings = make_settings(tmp_path / "var", db_url, match_feed_chunk_rows=10, job_lease_seconds=0.5)
    ctx = _ctx(settings, tiny_encoder)
    _load_catalogue(ctx, tmp_path)
    feed = _jsonl_feed(tmp_path / "feed.jsonl", 47)

    reference_id = _submit(ctx, feed)
    assert run_job(ctx, reference_id, "ref") == "completed"
    reference = _results(ctx, reference_id)

    job_id = _submit(ctx, feed)
    from app.jobs.match_feed import runner

    real_write = runner.write_part
    calls = {"n": 0}

    def crash_on_third_part(path, fmt, rows):
        calls["n"] += 1
        real_write(path, fmt, rows)
        if calls["n"] == 3:
            raise _Crash("killed between the part file and its commit")

    monkeypatch.setattr(runner, "write_part", crash_on_third_part)
    assert run_job(ctx, job_id, "w1") is None  # released for a retry
    job = jobs.get_job(ctx.factory, job_id)
    assert job.checkpoint == 20 and job.state == "running"
    assert FeedJob.from_job(job).part(2).exists()  # written, never committed

    monkeypatch.setattr(runner, "write_part", real_write)

    def crash_after_commit(done, total):
        if done == 40:
            raise _Crash("killed right after a commit")

    ctx.on_progress = crash_after_commit
    assert run_job(ctx, job_id, "w2") is None
    assert jobs.get_job(ctx.factory, job_id).checkpoint == 40

    ctx.on_progress = None
    assert run_job(ctx, job_id, "w3") == "completed"
    job = jobs.get_job(ctx.factory, job_id)
    assert job.attempts == 3 and job.rows_done == 47 and job.rows_ok == 47
    assert job.timings["chunks"] == 5
    assert _results(ctx, job_id) == reference


def test_a_stale_worker_cannot_commit_a_chunk_twice(tmp_path, sqlite_url, tiny_encoder):
    from app.jobs.match_feed.reader import OfferResult
    from app.jobs.match_feed.runner import ChunkCommitter, ChunkConflict

    settings = make_settings(tmp_path / "var", sqlite_url, match_feed_chunk_rows=5)
    ctx = _ctx(settings, tiny_encoder)
    feed = _jsonl_feed(tmp_path / "feed.jsonl", 10)
    job_id = _submit(ctx, feed)
    job = jobs.get_job(ctx.factory, job_id)
    scan = scan_feed(feed, "jsonl", 5)
    first = ChunkCommitter(ctx, FeedJob.from_job(job), scan, job)
    stale = ChunkCommitter(ctx, FeedJob.from_job(job), scan, job)
    offers = [OfferResult(n, f"o{n}", {}) for n in range(1, 6)]
    rows = [(n, f"o{n}", "no_match", None, 0.1, ["p"], [0.1]) for n in range(1, 6)]
    first.commit(0, rows, offers, 0.0)
    with pytest.raises(ChunkConflict):
        stale.commit(0, rows, offers, 0.0)
    job = jobs.get_job(ctx.factory, job_id)
    assert job.checkpoint == 5 and job.rows_ok == 5


def test_candidate_lookup_uses_one_statement_shape(tmp_path, sqlite_url, tiny_encoder):
    """Fixed-size IN lists: memory must not grow with the number of distinct candidate counts."""
    from sqlalchemy import event

    from app.jobs.match_feed.runner import pipeline_for

    ctx = _ctx(make_settings(tmp_path / "var", sqlite_url), tiny_encoder)
    _load_catalogue(ctx, tmp_path, 30)
    pipeline = pipeline_for(ctx)
    pipeline.load_batch = 8
    statements: set[str] = set()
    engine = ctx.factory.kw["bind"]
    listener = lambda conn, cursor, statement, *rest: statements.add(statement)  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        for n in (1, 5, 8, 13, 30):
            ids = list(range(1, n + 1))
            assert sorted(pipeline._load(ids)) == ids
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert len([s for s in statements if "FROM products" in s]) == 1


# -- R1/R6 for bulk matching: SIGKILL a real worker mid-job ------------------------------------

N_OFFERS = 1500


@pytest.mark.chaos
@pytest.mark.redis
def test_sigkill_worker_mid_feed_then_resume(tmp_path, db_url, redis_url, tiny_encoder_dir):
    encoder = Encoder(tiny_bi_encoder(), str(tiny_encoder_dir))  # the worker's model id: its path
    queue_name = f"pmfeed-{uuid.uuid4().hex[:8]}"
    settings = make_settings(
        tmp_path / "var", db_url, redis_url=redis_url, queue_name=queue_name, match_feed_chunk_rows=50
    )
    settings.ensure_dirs()
    ctx = _ctx(settings, encoder)
    _load_catalogue(ctx, tmp_path, 200)
    feed = tmp_path / "feed.jsonl"
    feed.write_text("\n".join(json.dumps(_offer(i, 200)) for i in range(N_OFFERS)) + "\n")

    reference_id = _submit(ctx, feed)
    assert run_job(ctx, reference_id, "ref") == "completed"
    reference = _results(ctx, reference_id)
    assert len(reference) == N_OFFERS

    job_id = _submit(ctx, feed)
    RedisQueue(redis_url, queue_name).push(job_id)
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "ADMIN_TOKEN": ADMIN_TOKEN,  # the default token is refused with Redis
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "QUEUE_NAME": queue_name,
        "DATA_DIR": str(settings.data_dir),
        "ENCODER": str(tiny_encoder_dir),
        "JOB_LEASE_SECONDS": "2",
        "TORCH_THREADS": "1",
    }
    env.pop("RAY_ADDRESS", None)
    log = tmp_path / "worker.log"
    kill_after = random.Random(4321).randint(300, 900)
    worker = _start_worker(env, log)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if jobs.get_job(ctx.factory, job_id).rows_done >= kill_after:
                break
            assert worker.poll() is None, log.read_text()
            time.sleep(0.02)
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()

    killed = jobs.get_job(ctx.factory, job_id)
    assert killed.state == "running", "the job finished before the kill; raise N_OFFERS"
    assert 0 < killed.checkpoint < N_OFFERS and killed.checkpoint % 50 == 0
    feed_job = FeedJob.from_job(killed)
    committed = killed.checkpoint // 50
    assert all(feed_job.part(i).exists() for i in range(committed))

    restarted = _start_worker(env, log)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if jobs.get_job(ctx.factory, job_id).state in jobs.FINAL_STATES:
                break
            assert restarted.poll() is None, log.read_text()
            time.sleep(0.1)
    finally:
        restarted.send_signal(signal.SIGTERM)
        try:
            restarted.wait(15)
        except subprocess.TimeoutExpired:
            restarted.kill()

    done = jobs.get_job(ctx.factory, job_id)
    assert done.state == "completed", (done.state, done.message, log.read_text()[-3000:])
    assert done.attempts >= 2 and done.rows_done == N_OFFERS and done.rows_ok == N_OFFERS
    results = _results(ctx, job_id)
    assert [r["row"] for r in results] == list(range(1, N_OFFERS + 1))  # each offer exactly once, in order
    assert [r["offer_id"] for r in results] == [r["offer_id"] for r in reference]
    for got, want in zip(results, reference):
        assert got["candidate_ids"] == want["candidate_ids"]
        assert got["decision"] == want["decision"]
        assert got["candidate_scores"] == pytest.approx(want["candidate_scores"], abs=1e-5)


def test_finalise_is_repeatable(tmp_path, sqlite_url, tiny_encoder):
    """A crash after the result file was written but before the job was marked done."""
    ctx = _ctx(make_settings(tmp_path / "var", sqlite_url, match_feed_chunk_rows=4), tiny_encoder)
    _load_catalogue(ctx, tmp_path, 10)
    feed = _jsonl_feed(tmp_path / "feed.jsonl", 9)
    job_id = _submit(ctx, feed)
    assert run_job(ctx, job_id, "w") == "completed"
    first = _results(ctx, job_id)
    with ctx.factory() as s, s.begin():
        s.execute(update(Job).where(Job.id == job_id).values(state="running", lease_owner=None))
    assert run_job(ctx, job_id, "w2") == "completed"
    assert _results(ctx, job_id) == first


# -- the command line --------------------------------------------------------------------------


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


def cli_env(tmp_path: Path, tiny_encoder_dir: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "DATA_DIR": str(tmp_path / "var"),
        "ENCODER": str(tiny_encoder_dir),
        "MATCH_FEED_CHUNK_ROWS": "10",
        "TORCH_THREADS": "1",
    }
    for key in ("DATABASE_URL", "REDIS_URL", "RAY_ADDRESS"):
        env.pop(key, None)
    assert _cli(["migrate"], env).returncode == 0
    cat = tmp_path / "catalogue.jsonl"
    cat.write_text("\n".join(json.dumps(product(i)) for i in range(1, N_CATALOGUE + 1)) + "\n")
    assert _cli(["ingest", str(cat)], env).returncode == 0
    return env


def test_cli_match_file(tmp_path, tiny_encoder_dir):
    env = cli_env(tmp_path, tiny_encoder_dir)
    feed = tmp_path / "offers.jsonl"
    feed.write_text("\n".join(json.dumps(_offer(i)) for i in range(25)) + '\n{"offer_id": "x", "title": ""}\n')

    res = _cli(["match-file", str(feed), "--out", str(tmp_path / "out" / "results.parquet"), "--k", "3"], env)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["state"] == "completed_with_errors" and summary["rows_total"] == 26
    assert summary["rows_matched"] == 25 and summary["rows_failed"] == 1
    assert summary["errors"] == [{"row": 26, "field": "title", "message": summary["errors"][0]["message"]}]
    assert "match" in res.stderr and "26/26" in res.stderr  # the progress bar
    rows = read_results(tmp_path / "out" / "results.parquet")
    assert len(rows) == 25 and all(len(r["candidate_ids"]) == 3 for r in rows)
    assert rows[0]["candidate_ids"][0] == "p-00001"

    as_csv = _cli(["match-file", str(feed), "--out", str(tmp_path / "results.csv")], env)
    assert as_csv.returncode == 0, as_csv.stderr
    assert len(read_results(tmp_path / "results.csv")) == 25

    bad = tmp_path / "bad.csv"
    bad.write_text("name,price\nx,1\n")
    refused = _cli(["match-file", str(bad), "--out", str(tmp_path / "r.csv")], env)
    assert refused.returncode == 2 and "id column" in refused.stderr
    assert _cli(["match-file", "--out", str(tmp_path / "r.csv"), "--k", "0"], env).returncode == 2


def test_cli_resume(tmp_path, tiny_encoder_dir):
    """A run that died mid-feed continues with --resume JOB_ID."""
    env = cli_env(tmp_path, tiny_encoder_dir)
    feed = _jsonl_feed(tmp_path / "offers.jsonl", 30)
    settings = make_settings(tmp_path / "var", f"sqlite:///{tmp_path / 'var' / 'productmatch.db'}")
    factory = make_session_factory(make_engine(settings.database_url))
    job_id = str(uuid.uuid4())
    payload = make_payload(settings, job_id, feed, "jsonl", "csv", 2)
    payload["chunk_rows"] = 10
    jobs.create_job(factory, KIND, payload, None, job_id)
    with factory() as s, s.begin():  # as left by a run killed after its second chunk
        s.execute(update(Job).where(Job.id == job_id).values(state="running", checkpoint=20, rows_done=20))
    parts = FeedJob.from_job(jobs.get_job(factory, job_id)).parts_dir
    parts.mkdir(parents=True)
    for i in range(2):
        (parts / f"part-{i:07d}.csv").write_text(
            "".join(f"{n},o{n},no_match,,0.1,[],[]\n" for n in range(i * 10 + 1, i * 10 + 11))
        )

    res = _cli(["match-file", "--resume", job_id, "--out", str(tmp_path / "resumed.csv")], env)
    assert res.returncode == 0, res.stderr
    rows = read_results(tmp_path / "resumed.csv")
    assert [r["row"] for r in rows] == list(range(1, 31))
    assert {r["decision"] for r in rows[:20]} == {"no_match"}  # the committed parts were kept, not redone
    assert all(len(r["candidate_ids"]) == 2 for r in rows[20:])
