"""The ingestion job: validate rows, upsert in chunks, commit a checkpoint with each chunk.

The checkpoint (rows consumed), the counters, the row errors and the products of a chunk are
committed in one transaction. A worker killed anywhere therefore leaves either the whole
chunk or none of it, and the next claimant resumes at the checkpoint; replaying a chunk is a
no-op anyway because upserts are keyed on external id + content hash.

The next chunk is read and embedded on a worker thread while the current one is written, so
the encoder (which releases the GIL in its kernels) and the database writes overlap; chunks
are still committed one at a time, in file order.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from app.db import jobs
from app.db.tables import Job
from app.jobs.context import JobContext, JobFailed
from app.jobs.ingest_files import RowResult, UnreadableFile, iter_raw_rows, to_product
from app.pipeline.encoder import Encoder
from app.pipeline.upsert import BatchStats, PreparedBatch, prepare_batch, write_prepared

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
    timings = dict(job.timings or {})
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-embed") as embedder:
        pending: _Chunk | None = None
        for rows, consumed in _chunks(job, path, fmt, seen, chunk_size):
            ready = _Chunk.start(ctx, embedder, rows, consumed)
            if pending is not None:
                _commit_chunk(ctx, job.id, pending, total, timings)
            pending = ready
        if pending is not None:
            _commit_chunk(ctx, job.id, pending, total, timings)

    fresh = jobs.get_job(ctx.factory, job.id)
    failed = fresh.rows_failed if fresh else 0
    timings["total_s"] = round(timings.get("total_s", 0.0) + time.perf_counter() - t_start, 3)
    jobs.set_timings(ctx.factory, job.id, timings)
    return jobs.COMPLETED_WITH_ERRORS if failed else jobs.COMPLETED


def _chunks(
    job: Job, path: Path, fmt: str, seen: dict[str, int], chunk_size: int
) -> Iterator[tuple[list[RowResult], int]]:
    """The file's rows after the checkpoint, validated, in chunks with the rows consumed so far."""
    chunk: list[RowResult] = []
    consumed = 0
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
            yield chunk, consumed
            chunk = []
    if chunk:
        yield chunk, consumed


@dataclass
class _Chunk:
    rows: list[RowResult]
    consumed: int
    # The encoder the vectors came from: a promotion between prepare and write must not tag
    # them with the next model's id.
    encoder: Encoder
    prepared: Future[PreparedBatch]

    @classmethod
    def start(cls, ctx: JobContext, embedder: ThreadPoolExecutor, rows: list[RowResult], consumed: int) -> _Chunk:
        """Begin reading and embedding the chunk's valid rows on the worker thread."""
        good = [r.row for r in rows if r.row is not None]
        encoder = ctx.encoder
        return cls(rows, consumed, encoder, embedder.submit(prepare_batch, ctx.factory, encoder, good))


def _commit_chunk(ctx: JobContext, job_id: str, chunk: _Chunk, total: int, timings: dict) -> None:
    errors = [(r.number, field, msg) for r in chunk.rows for field, msg in r.errors]
    failed_rows = sum(1 for r in chunk.rows if r.row is None)
    consumed = chunk.consumed
    t0 = time.perf_counter()

    def checkpoint(session: Session, stats: BatchStats) -> None:
        jobs.add_chunk_counts(session, job_id, consumed, stats.created + stats.updated, stats.unchanged, failed_rows)
        if errors:
            jobs.add_row_errors(session, job_id, errors, ctx.settings.max_row_errors)

    write_prepared(ctx.factory, chunk.encoder, chunk.prepared.result(), in_transaction=checkpoint)
    timings["chunks"] = timings.get("chunks", 0) + 1
    timings["write_s"] = round(timings.get("write_s", 0.0) + time.perf_counter() - t0, 3)
    for hook in ctx.after_commit:
        hook()
    if ctx.on_progress is not None:
        ctx.on_progress(consumed, total)
