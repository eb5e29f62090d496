"""The result file: one row per valid offer, written a chunk (part file) at a time, then joined.

Each part is written under a temporary name, synced and moved into place, so a part file that
exists is whole; the final file is the parts concatenated in chunk order, one part in memory
at a time. CSV cells holding lists are JSON arrays (external ids may contain any separator);
Parquet holds them as lists.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from app.pipeline.match import MatchResult
from app.pipeline.scoring import MATCH

RESULT_COLUMNS = ("row", "offer_id", "decision", "match_id", "top_score", "candidate_ids", "candidate_scores")
MEDIA_TYPES = {"csv": "text/csv", "parquet": "application/vnd.apache.parquet"}

# A candidate's score is None beyond the pipeline's rerank depth.
ResultRow = tuple[int, str, str, str | None, float | None, list[str], list[float | None]]


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


def iter_results(path: Path, batch: int = 500) -> Iterator[dict[str, Any]]:
    """A result file's rows as dicts (lists decoded), streamed: never the whole file in memory."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        for part in pq.ParquetFile(path).iter_batches(batch_size=batch):
            yield from part.to_pylist()
        return
    with path.open(encoding="utf-8", newline="") as fh:
        for rec in csv.DictReader(fh):
            yield {
                "row": int(rec["row"]),
                "offer_id": rec["offer_id"],
                "decision": rec["decision"],
                "match_id": rec["match_id"] or None,
                "top_score": float(rec["top_score"]) if rec["top_score"] else None,
                "candidate_ids": json.loads(rec["candidate_ids"]),
                "candidate_scores": json.loads(rec["candidate_scores"]),
            }


def read_results(path: Path) -> list[dict[str, Any]]:
    """A result file as dicts (lists decoded); for tests and small files."""
    return list(iter_results(path))
