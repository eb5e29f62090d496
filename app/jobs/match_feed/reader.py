"""Reading a feed: its checks, the chunk offsets of a first pass, and each row as an offer.

The row readers are ingestion's (`app/jobs/ingest_files.py`): a quoting fault that spans lines
raises UnreadableFile instead of swallowing the rows after it, and every row that cannot be
read comes back with its reason. Columns other than the offer fields are ignored.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from app.jobs.ingest_files import (
    CSV,
    CellError,
    RawRow,
    RowStart,
    UnreadableFile,
    check_csv_rows,
    check_encoding,
    csv_header,
    iter_rows,
    split_fields,
    validation_errors,
)
from app.schemas.match_job import OfferRow
from app.schemas.product import OfferIn

ID_COLUMNS = ("offer_id", "id", "external_id")  # the first one present names the offer
OFFER_FIELDS = set(OfferIn.model_fields)

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
    """(where the row starts, the row) for each row from `start` (default: the first row)."""
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
    offer_id: Any = next((raw.data[c] for c in ID_COLUMNS if raw.data.get(c) not in (None, "")), None)
    try:
        data, _ = split_fields(raw.data, fmt, OFFER_FIELDS)
    except CellError as exc:
        return OfferResult(raw.number, None, None, [(exc.field, exc.message)])
    if isinstance(offer_id, int) and not isinstance(offer_id, bool):
        offer_id = str(offer_id)
    if offer_id is None:
        return OfferResult(raw.number, None, None, [("offer_id", "missing offer id (offer_id, id or external_id)")])
    try:
        row = OfferRow.model_validate({**data, "offer_id": offer_id})
    except ValidationError as exc:
        return OfferResult(raw.number, None, None, validation_errors(exc))
    return OfferResult(raw.number, row.offer_id, row.model_dump(exclude={"offer_id"}))
