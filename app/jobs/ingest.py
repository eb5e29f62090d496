"""The ingestion job: validate rows, upsert in chunks, commit a checkpoint with each chunk.

The checkpoint (rows consumed), the counters, the row errors and the products of a chunk are
committed in one transaction. A worker killed anywhere therefore leaves either the whole
chunk or none of it, and the next claimant resumes at the checkpoint; replaying a chunk is a
no-op anyway because upserts are keyed on external id + content hash.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from sqlalchemy.orm import Session

from app.db import jobs
from app.db.tables import Job
from app.jobs.context import JobContext, JobFailed
from app.jobs.ingest_files import RowResult, UnreadableFile, iter_raw_rows, to_product
from app.pipeline.upsert import BatchStats, upsert_batch

logger = logging.getLogger(__name__)


def count_rows(path: Path, fmt: str) -> int:
    return sum(1 for _ in iter_raw_rows(path, fmt))


def run_ingest(ctx: JobContext, job: Job) -> str:
    """Process the job's file from its checkpoint; returns the final state."""
    path = Path(job.payload["path"])
    fmt = job.payload["format"]
    if not path.exists():
        raise JobFailed(f"the uploaded file for job {job.id} is no longer available")
    t_start = time.perf_counter()
    try:
        total = job.rows_total if job.rows_total is not None else count_rows(path, fmt)
    except UnreadableFile as exc:
        raise JobFailed(str(exc)) from exc
    if job.rows_total is None:
        jobs.set_rows_total(ctx.factory, job.id, total)

    chunk_size = ctx.settings.ingest_chunk_rows
    seen: dict[str, int] = {}
    chunk: list[RowResult] = []
    consumed = 0
    timings = dict(job.timings or {})
    for raw in iter_raw_rows(path, fmt):
        consumed += 1
        result = to_product(raw, fmt)
        row = result.row
        if row is not None:
            first = seen.get(row.external_id)
            if first is not None:
                result = RowResult(
                    raw.number,
                    None,
                    [
                        (
                            "external_id",
                            f"duplicate external_id {row.external_id!r} (first at row {first})",
                        )
                    ],
                )
            else:
                seen[row.external_id] = raw.number
        if consumed <= job.checkpoint:
            continue  # committed before a crash: only the duplicate bookkeeping is rebuilt
        chunk.append(result)
        if len(chunk) >= chunk_size:
            _commit_chunk(ctx, job.id, chunk, consumed, total, timings)
            chunk = []
    if chunk:
        _commit_chunk(ctx, job.id, chunk, consumed, total, timings)

    fresh = jobs.get_job(ctx.factory, job.id)
    failed = fresh.rows_failed if fresh else 0
    timings["total_s"] = round(timings.get("total_s", 0.0) + time.perf_counter() - t_start, 3)
    jobs.set_timings(ctx.factory, job.id, timings)
    return jobs.COMPLETED_WITH_ERRORS if failed else jobs.COMPLETED


def _commit_chunk(
    ctx: JobContext, job_id: str, chunk: list[RowResult], consumed: int, total: int, timings: dict
) -> None:
    good = [r.row for r in chunk if r.row is not None]
    errors = [(r.number, field, msg) for r in chunk for field, msg in r.errors]
    failed_rows = sum(1 for r in chunk if r.row is None)
    t0 = time.perf_counter()

    def checkpoint(session: Session, stats: BatchStats) -> None:
        jobs.add_chunk_counts(session, job_id, consumed, stats.created + stats.updated, stats.unchanged, failed_rows)
        if errors:
            jobs.add_row_errors(session, job_id, errors, ctx.settings.max_row_errors)

    upsert_batch(ctx.factory, ctx.encoder, good, in_transaction=checkpoint)
    timings["chunks"] = timings.get("chunks", 0) + 1
    timings["write_s"] = round(timings.get("write_s", 0.0) + time.perf_counter() - t0, 3)
    for hook in ctx.after_commit:
        hook()
    if ctx.on_progress is not None:
        ctx.on_progress(consumed, total)
