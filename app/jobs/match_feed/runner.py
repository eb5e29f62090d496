"""Running the bulk-matching job: the chunks in order, each committed with its checkpoint.

The local engine matches one chunk at a time in this process; the Ray engine
(`ray_engine.py`) runs read, embed and search stages on a cluster and hands each chunk's
results back to the same `ChunkCommitter`, so a job started on one engine can resume on the
other. Reading the feed is `reader.py`, the result file `writer.py`.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from app.core.config import Settings
from app.db import jobs
from app.db import products as repo
from app.db.tables import Job, Product
from app.jobs.context import JobContext, JobFailed
from app.jobs.ingest_files import UnreadableFile
from app.jobs.match_feed.reader import FeedScan, OfferResult, iter_feed, scan_feed, to_offer
from app.jobs.match_feed.writer import ResultRow, concat_parts, result_row, write_part
from app.pipeline.match import MatchPipeline, MatchQuery
from app.registry.scorers import serving_scorer
from app.search.sync import IndexService

logger = logging.getLogger(__name__)

KIND = "match_feed"


class ChunkConflict(RuntimeError):
    """Another worker committed this job's chunk first (this one lost its lease)."""


def match_offers(
    pipeline: MatchPipeline, offers: Sequence[OfferResult], k: int, brand: str | None, category: str | None
) -> list[ResultRow]:
    # A valid offer has both (to_offer); the test only narrows the types.
    good = [(o.number, o.offer_id, o.offer) for o in offers if o.offer is not None and o.offer_id is not None]
    if not good:
        return []
    queries = [MatchQuery(offer=offer, k=k, brand=brand, category=category) for _, _, offer in good]
    results = pipeline.match(queries)
    return [result_row(number, offer_id, r) for (number, offer_id, _), r in zip(good, results)]


# -- the serving pieces a job needs ------------------------------------------------------------


class FeedPipeline(MatchPipeline):
    """`MatchPipeline` whose candidate lookup always sends IN lists of one fixed length.

    A chunk's candidate ids number anything up to chunk_rows * k, and every distinct IN-list
    length is a distinct SQL string: SQLite keeps the last 128 of those per connection, about
    1 MB each at chunk sizes, so memory grew with the feed until the cache filled, and a long
    enough list would pass SQLite's limit on host parameters. Fixed-size batches, the last one
    padded by repeating an id, keep one statement shape.
    """

    load_batch = 512

    def _load(self, ids: list[int]) -> dict[int, Product]:
        out: dict[int, Product] = {}
        n = self.load_batch
        with self.factory() as session:
            for start in range(0, len(ids), n):
                part = ids[start : start + n]
                padded = part + [part[-1]] * (n - len(part))
                out.update(repo.products_by_ids(session, padded))
        return out


_index_lock = threading.Lock()
_index_cache: dict[tuple[str, ...], IndexService] = {}


def pipeline_for(ctx: JobContext) -> MatchPipeline:
    """A match pipeline over this process's read-only copy of the index, caught up now.

    Workers have no serving runtime, so the index is opened here (snapshot + change log) and
    kept for the next job of the same model; it is never snapshotted from here.
    """
    settings = ctx.settings
    encoder = ctx.encoder
    key = (encoder.model_id, settings.index_kind, str(settings.index_dir), settings.database_url)
    with _index_lock:
        index = _index_cache.get(key)
        if index is None:
            index = IndexService.from_settings(ctx.factory, settings, encoder.model_id, encoder.dim)
            index.open()
            _index_cache.clear()  # one model at a time: a promotion retires the old index
            _index_cache[key] = index
        else:
            index.catch_up()
    scorer, decider = serving_scorer(settings, ctx.factory, encoder.model_id)
    return FeedPipeline(encoder, index, ctx.factory, scorer, decider, rerank_depth=settings.rerank_depth)


# -- the job -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeedJob:
    """The job's fixed parameters, from its payload."""

    id: str
    path: Path
    format: str
    output: str
    output_path: Path
    chunk_rows: int
    k: int
    brand: str | None
    category: str | None
    engine: str | None

    @classmethod
    def from_job(cls, job: Job) -> FeedJob:
        p = job.payload
        return cls(
            id=job.id,
            path=Path(p["path"]),
            format=p["format"],
            output=p["output"],
            output_path=Path(p["output_path"]),
            chunk_rows=int(p["chunk_rows"]),
            k=int(p["k"]),
            brand=p.get("brand"),
            category=p.get("category"),
            engine=p.get("engine"),
        )

    @property
    def parts_dir(self) -> Path:
        return self.output_path.with_name(self.output_path.name + ".parts")

    def part(self, chunk: int) -> Path:
        return self.parts_dir / f"part-{chunk:07d}.{self.output}"


def make_payload(
    settings: Settings,
    job_id: str,
    path: Path,
    fmt: str,
    output: str,
    k: int,
    brand: str | None = None,
    category: str | None = None,
    engine: str | None = None,
    filename: str | None = None,
) -> dict[str, Any]:
    return {
        "path": str(path),
        "format": fmt,
        "filename": filename,
        "output": output,
        "output_path": str(Path(settings.results_dir) / f"{job_id}.{output}"),  # type: ignore[arg-type]  # never None: Settings fills it in its validator
        "chunk_rows": settings.match_feed_chunk_rows,
        "k": k,
        "brand": brand,
        "category": category,
        "engine": engine,
    }


def resolve_engine(requested: str | None) -> str:
    if requested:
        return requested
    return "ray" if os.environ.get("RAY_ADDRESS") else "local"


class ChunkCommitter:
    """Writes a chunk's part file, then commits its checkpoint, counters and row errors at once.

    Counters are written as absolute values guarded by the previous checkpoint, so a worker
    that lost its lease (and whose chunk someone else committed) cannot count a chunk twice.
    """

    def __init__(self, ctx: JobContext, feed: FeedJob, scan: FeedScan, job: Job) -> None:
        self.ctx, self.feed, self.scan = ctx, feed, scan
        self.checkpoint = job.checkpoint
        self.rows_ok = job.rows_ok
        self.rows_failed = job.rows_failed
        self.timings: dict[str, Any] = dict(job.timings or {})
        self.timings.setdefault("decisions", {})
        self.timings["chunks_total"] = len(scan.chunks)

    @property
    def first_chunk(self) -> int:
        # Rounded up: a finished feed's checkpoint (its row count) may end inside a last, short chunk.
        return -(-self.checkpoint // self.feed.chunk_rows)

    def commit(self, chunk: int, results: Sequence[ResultRow], offers: Sequence[OfferResult], match_s: float) -> None:
        expected = chunk * self.feed.chunk_rows
        if expected != self.checkpoint:
            raise ChunkConflict(f"chunk {chunk} does not follow checkpoint {self.checkpoint}")
        t0 = time.perf_counter()
        self.feed.parts_dir.mkdir(parents=True, exist_ok=True)
        write_part(self.feed.part(chunk), self.feed.output, results)
        consumed = expected + len(offers)
        failed = [o for o in offers if o.offer is None]
        errors = [(o.number, f, m) for o in failed for f, m in o.errors]
        decisions = dict(self.timings["decisions"])
        for r in results:
            decisions[r[2]] = decisions.get(r[2], 0) + 1
        timings = {
            **self.timings,
            "decisions": decisions,
            "chunks": chunk + 1,
            "match_s": round(self.timings.get("match_s", 0.0) + match_s, 3),
            "write_s": round(self.timings.get("write_s", 0.0) + time.perf_counter() - t0, 3),
        }
        rows_ok, rows_failed = self.rows_ok + len(results), self.rows_failed + len(failed)
        with self.ctx.factory() as session, session.begin():
            advanced = jobs.advance_checkpoint(
                session, self.feed.id, self.checkpoint, consumed, rows_ok, rows_failed, timings
            )
            if not advanced:
                raise ChunkConflict(f"job {self.feed.id}: chunk {chunk} was committed by another worker")
            if errors:
                jobs.add_row_errors(session, self.feed.id, errors, self.ctx.settings.max_row_errors)
        self.checkpoint, self.rows_ok, self.rows_failed, self.timings = consumed, rows_ok, rows_failed, timings
        if self.ctx.on_progress is not None:
            self.ctx.on_progress(consumed, self.scan.total)


def run_local(feed: FeedJob, scan: FeedScan, committer: ChunkCommitter, pipeline: MatchPipeline) -> None:
    first = committer.first_chunk
    rows = iter_feed(feed.path, feed.format, scan.chunks[first])
    for chunk in range(first, len(scan.chunks)):
        offers = [to_offer(raw, feed.format) for _, raw in islice(rows, scan.rows_in(chunk))]
        t0 = time.perf_counter()
        results = match_offers(pipeline, offers, feed.k, feed.brand, feed.category)
        committer.commit(chunk, results, offers, time.perf_counter() - t0)


def finalise(feed: FeedJob, scan: FeedScan) -> Path:
    """Concatenate the committed parts into the result file; safe to repeat after a crash."""
    out = feed.output_path
    if out.exists():
        # Only this function writes it, atomically, once every part was in: a crash came after.
        shutil.rmtree(feed.parts_dir, ignore_errors=True)
        return out
    parts = [feed.part(i) for i in range(len(scan.chunks))]
    missing = [p.name for p in parts if not p.exists()]
    if missing:
        raise JobFailed(f"result parts are missing ({missing[:5]}); submit the feed again")
    concat_parts(parts, feed.output, out)
    shutil.rmtree(feed.parts_dir, ignore_errors=True)
    return out


#: Runs the remaining chunks on Ray (`ray_engine.run_ray`, which builds on this module and is
#: handed in by the job's handler, `review.py`).
RayEngine = Callable[[JobContext, "FeedJob", "FeedScan", "ChunkCommitter", MatchPipeline], None]


def run_match_feed(ctx: JobContext, job: Job, run_ray: RayEngine) -> str:
    """Match the job's feed from its checkpoint; returns the final state."""
    t_start = time.perf_counter()
    feed = FeedJob.from_job(job)
    if not feed.path.exists():
        raise JobFailed(f"the feed file for job {job.id} is no longer available")
    try:
        scan = scan_feed(feed.path, feed.format, feed.chunk_rows)
    except UnreadableFile as exc:
        raise JobFailed(str(exc)) from exc
    if job.rows_total is None:
        jobs.set_rows_total(ctx.factory, job.id, scan.total)
    elif job.rows_total != scan.total:
        raise JobFailed(f"the feed changed since the job started ({job.rows_total} rows, now {scan.total})")
    if job.checkpoint % feed.chunk_rows and job.checkpoint != scan.total:
        raise JobFailed(f"checkpoint {job.checkpoint} is not on a chunk boundary of {feed.chunk_rows} rows")

    engine = resolve_engine(feed.engine)
    committer = ChunkCommitter(ctx, feed, scan, job)
    committer.timings["engine"] = engine
    if committer.first_chunk < len(scan.chunks):
        pipeline = pipeline_for(ctx)
        # A promotion between attempts changes the model mid-feed: the job says which answered.
        committer.timings["model_versions"] = pipeline.model_versions()
        logger.info(
            "job %s: matching %d offers from row %d (%s engine, index version %d)",
            job.id,
            scan.total,
            job.checkpoint,
            engine,
            pipeline.index.index.version,
        )
        if engine == "ray":
            run_ray(ctx, feed, scan, committer, pipeline)
        else:
            run_local(feed, scan, committer, pipeline)

    t0 = time.perf_counter()
    finalise(feed, scan)
    timings = dict(committer.timings)
    timings["finalise_s"] = round(time.perf_counter() - t0, 3)
    elapsed = time.perf_counter() - t_start
    timings["total_s"] = round(timings.get("total_s", 0.0) + elapsed, 3)
    if scan.total > job.checkpoint and elapsed > 0:
        timings["offers_per_s"] = round((scan.total - job.checkpoint) / elapsed, 1)  # this attempt
    jobs.set_timings(ctx.factory, job.id, timings)
    return jobs.COMPLETED_WITH_ERRORS if committer.rows_failed else jobs.COMPLETED
