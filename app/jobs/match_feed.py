"""The bulk-matching job: match every offer of a feed file, chunk by checkpointed chunk.

Memory stays flat however long the feed is: the feed is read row by row, one chunk of
`chunk_rows` offers is matched at a time, and each chunk's results go to a part file before
the chunk's checkpoint, counters and row errors are committed in one transaction. A worker
killed anywhere therefore resumes at the first uncommitted chunk and rewrites its part file
under the same name, so the final file, made by concatenating the parts in order, holds every
feed row exactly once. Chunks are numbered by row position (chunk i = rows i*R..(i+1)*R-1) and R
is fixed in the job payload, so every attempt, on any worker, cuts the feed the same way.

A first pass over the feed counts its rows and records the byte offset where each chunk
starts: a resumed job seeks straight to its checkpoint, and the Ray engine hands each chunk to
a separate read task (`app/jobs/match_feed_ray.py`).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, cast

from pydantic import ValidationError
from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import defer

from app.core.config import Settings
from app.db.models import Job, Product
from app.jobs import store
from app.jobs.context import JobContext, JobFailed
from app.jobs.ingest_files import (
    CSV,
    RawRow,
    RowStart,
    UnreadableFile,
    _coerce_csv_cell,
    check_csv_rows,
    check_encoding,
    csv_header,
    iter_rows,
)
from app.pipeline.match import MatchPipeline, MatchQuery, MatchResult
from app.pipeline.scoring import MATCH
from app.registry.scorers import serving_scorer as build_scorer
from app.schemas.match_job import OfferRow
from app.schemas.product import OfferIn
from app.search.params import IndexParams
from app.search.sync import IndexService

logger = logging.getLogger(__name__)

KIND = "match_feed"
ID_COLUMNS = ("offer_id", "id", "external_id")  # the first one present names the offer
OFFER_FIELDS = set(OfferIn.model_fields)
RESULT_COLUMNS = ("row", "offer_id", "decision", "match_id", "top_score", "candidate_ids", "candidate_scores")
MEDIA_TYPES = {"csv": "text/csv", "parquet": "application/vnd.apache.parquet"}


class ChunkConflict(RuntimeError):
    """Another worker committed this job's chunk first (this one lost its lease)."""


# -- reading the feed ----------------------------------------------------------------------


# Where a chunk starts: its first row's byte offset, and the rows and lines before it.
ChunkStart = RowStart


@dataclass
class FeedScan:
    total: int
    chunk_rows: int
    chunks: list[ChunkStart]

    def rows_in(self, chunk: int) -> int:
        return min(self.chunk_rows, self.total - chunk * self.chunk_rows)


def iter_feed(path: Path, fmt: str, start: ChunkStart | None = None) -> Iterator[tuple[ChunkStart, RawRow]]:
    """(where the row starts, the row) for each row from `start` (default: the first row).

    The readers are ingestion's (`app/jobs/ingest_files.py`): a quoting fault that spans lines
    raises UnreadableFile instead of swallowing the rows after it.
    """
    return iter_rows(path, fmt, start)


def scan_feed(path: Path, fmt: str, chunk_rows: int) -> FeedScan:
    """Count the rows and note where each chunk starts (one streaming pass)."""
    total = 0
    chunks: list[ChunkStart] = []
    for here, _ in iter_feed(path, fmt):
        if total % chunk_rows == 0:
            chunks.append(here)
        total += 1
    return FeedScan(total, chunk_rows, chunks)


def check_feed(path: Path, fmt: str) -> None:
    """Refuse files that cannot be a feed at all: empty, archived, binary, not UTF-8, no id/title
    columns, or a CSV whose quoting swallows rows."""
    # The encoding checks of ingestion apply as they are; its CSV header rule (external_id)
    # does not: the feed's own header rule follows, then every row is read once.
    check_encoding(path)
    if fmt == CSV:
        header = csv_header(path)
        if "title" not in header or not any(c in header for c in ID_COLUMNS):
            raise UnreadableFile(
                f"the CSV header needs an id column (one of {list(ID_COLUMNS)}) and 'title'; found {header[:20]}"
            )
        check_csv_rows(path)


@dataclass
class OfferResult:
    number: int
    offer_id: str | None
    offer: dict[str, Any] | None
    errors: list[tuple[str | None, str]] = field(default_factory=list)


def to_offer(raw: RawRow, fmt: str) -> OfferResult:
    """Validate one feed row. Columns other than the offer fields are ignored: matching reads
    only the offer fields, and a feed's extra columns must not make its rows fail."""
    if raw.data is None:
        return OfferResult(raw.number, None, None, [(None, raw.error or "unreadable row")])
    data: dict[str, Any] = {}
    offer_id: Any = None
    try:
        for column in ID_COLUMNS:
            if raw.data.get(column) not in (None, ""):
                offer_id = raw.data[column]
                break
        for key, value in raw.data.items():
            key = str(key).strip()
            if key in OFFER_FIELDS:
                data[key] = _coerce_csv_cell(key, value) if fmt == CSV and isinstance(value, str) else value
    except json.JSONDecodeError as exc:
        return OfferResult(raw.number, None, None, [(key, f"not valid JSON: {exc.msg}")])
    if isinstance(offer_id, int) and not isinstance(offer_id, bool):
        offer_id = str(offer_id)
    if offer_id is None:
        return OfferResult(raw.number, None, None, [("offer_id", "missing offer id (offer_id, id or external_id)")])
    data = {k: v for k, v in data.items() if v is not None}
    try:
        row = OfferRow.model_validate({**data, "offer_id": offer_id})
    except ValidationError as exc:
        errors = [(".".join(str(p) for p in e["loc"]) or None, e["msg"]) for e in exc.errors()]
        return OfferResult(raw.number, None, None, errors)
    return OfferResult(raw.number, row.offer_id, row.model_dump(exclude={"offer_id"}))


# -- results -------------------------------------------------------------------------------

ResultRow = tuple[int, str, str, str | None, float | None, list[str], list[float]]


def result_row(number: int, offer_id: str, result: MatchResult) -> ResultRow:
    best = result.candidates[0] if result.candidates else None
    return (
        number,
        offer_id,
        result.decision,
        best.external_id if best is not None and result.decision == MATCH else None,
        best.score if best is not None else None,
        [c.external_id for c in result.candidates],
        [c.score for c in result.candidates],
    )


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


def _fsync_replace(tmp: Path, final: Path) -> None:
    with tmp.open("rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, final)


def _csv_cells(row: ResultRow) -> list[Any]:
    number, offer_id, decision, match_id, top, ids, scores = row
    # The lists are JSON arrays: external ids may contain any separator a CSV reader would split on.
    return [
        number,
        offer_id,
        decision,
        match_id or "",
        "" if top is None else repr(float(top)),
        json.dumps(ids, ensure_ascii=False),
        json.dumps(scores),
    ]


def _arrow_schema() -> Any:  # a pyarrow.Schema (pyarrow is imported on use)
    import pyarrow as pa

    return pa.schema(
        [
            ("row", pa.int64()),
            ("offer_id", pa.string()),
            ("decision", pa.string()),
            ("match_id", pa.string()),
            ("top_score", pa.float64()),
            ("candidate_ids", pa.list_(pa.string())),
            ("candidate_scores", pa.list_(pa.float64())),
        ]
    )


def write_part(path: Path, fmt: str, rows: Sequence[ResultRow]) -> None:
    """One chunk's results, written to a temporary name and moved into place."""
    tmp = path.with_name(path.name + ".tmp")
    if fmt == "csv":
        with tmp.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerows(_csv_cells(r) for r in rows)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = _arrow_schema()
        columns = list(zip(*rows)) if rows else [() for _ in RESULT_COLUMNS]
        table = pa.Table.from_arrays([pa.array(list(c), type=f.type) for c, f in zip(columns, schema)], schema=schema)
        pq.write_table(table, tmp)
    _fsync_replace(tmp, path)


def concat_parts(parts: Sequence[Path], fmt: str, out: Path) -> None:
    """Concatenate the parts in order into `out`, one part in memory at a time."""
    tmp = out.with_name(out.name + ".tmp")
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        with tmp.open("wb") as fh:
            fh.write((",".join(RESULT_COLUMNS) + "\r\n").encode())
            for part in parts:
                with part.open("rb") as src:
                    shutil.copyfileobj(src, fh, 1 << 20)
    else:
        import pyarrow.parquet as pq

        with pq.ParquetWriter(tmp, _arrow_schema()) as writer:
            for part in parts:
                writer.write_table(pq.read_table(part, schema=_arrow_schema()))
    _fsync_replace(tmp, out)


def read_results(path: Path) -> list[dict[str, Any]]:
    """A result file as dicts (lists decoded); for tests and small files."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    with path.open(encoding="utf-8", newline="") as fh:
        out = []
        for rec in csv.DictReader(fh):
            out.append(
                {
                    "row": int(rec["row"]),
                    "offer_id": rec["offer_id"],
                    "decision": rec["decision"],
                    "match_id": rec["match_id"] or None,
                    "top_score": float(rec["top_score"]) if rec["top_score"] else None,
                    "candidate_ids": json.loads(rec["candidate_ids"]),
                    "candidate_scores": json.loads(rec["candidate_scores"]),
                }
            )
        return out


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
                rows = session.scalars(select(Product).options(defer(Product.attributes)).where(Product.id.in_(padded)))
                out.update((int(p.id), p) for p in rows)
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
            index = IndexService(
                ctx.factory,
                encoder.model_id,
                encoder.dim,
                IndexParams(kind=settings.index_kind),
                settings.index_dir,  # type: ignore[arg-type]  # never None: Settings fills it in its validator
            )
            index.open()
            _index_cache.clear()  # one model at a time: a promotion retires the old index
            _index_cache[key] = index
        else:
            index.catch_up()
    scorer, decider = build_scorer(settings, ctx.factory)
    return FeedPipeline(encoder, index, ctx.factory, scorer, decider)


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
            done = session.execute(
                update(Job)
                .where(Job.id == self.feed.id, Job.checkpoint == self.checkpoint)
                .values(
                    checkpoint=consumed,
                    rows_done=consumed,
                    rows_ok=rows_ok,
                    rows_failed=rows_failed,
                    timings=timings,
                )
            )
            if cast(CursorResult[Any], done).rowcount != 1:
                raise ChunkConflict(f"job {self.feed.id}: chunk {chunk} was committed by another worker")
            if errors:
                store.add_row_errors(session, self.feed.id, errors, self.ctx.settings.max_row_errors)
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


#: Runs the remaining chunks on Ray (`app/jobs/match_feed_ray.run_ray`, which builds on this
#: module and is handed in by the job's handler, `app/jobs/match_feed_review.py`).
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
        with ctx.factory() as session, session.begin():
            session.execute(update(Job).where(Job.id == job.id).values(rows_total=scan.total))
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
    with ctx.factory() as session, session.begin():
        session.execute(update(Job).where(Job.id == job.id).values(timings=timings))
    return store.COMPLETED_WITH_ERRORS if committer.rows_failed else store.COMPLETED
