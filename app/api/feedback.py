"""Review queue and feedback: people label the decisions the matcher was unsure about."""

from __future__ import annotations

import io
import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, HTTPException, Query, UploadFile, status
from fastapi.concurrency import run_in_threadpool
from pydantic import ConfigDict, Field, ValidationError

from app.api.deps import ServicesDep
from app.api.params import form_fields
from app.api.responses import COMMON, errors
from app.api.uploads import refuse_archive
from app.db import products as product_repo
from app.db.labels import add_labels, labels_for
from app.db.review_queue import get_review, open_reviews
from app.db.tables import LabeledPair
from app.jobs.calibrate import schedule_if_due
from app.jobs.ingest_files import UnreadableFile, iter_csv_rows, read_csv_header
from app.schemas.common import RequestModel
from app.schemas.feedback import (
    FeedbackImportResult,
    FeedbackIn,
    FeedbackOut,
    FeedbackPage,
    ReviewItemOut,
    ReviewPage,
)
from app.schemas.product import MAX_ID_CHARS, MAX_SHORT_CHARS, OfferIn
from app.services import Services

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["feedback"], responses=COMMON)

LABELS = {"match": 1, "no_match": 0, "1": 1, "0": 0}
MAX_IMPORT_ROWS = 100_000
# CSV column -> offer field; errors name the column.
OFFER_COLUMNS = {"offer_title": "title", "offer_brand": "brand", "offer_category": "category", "offer_price": "price"}
LABEL_COLUMNS = ("offer_external_id", "product_external_id", "label", "reviewer", "note")
REQUIRED_COLUMNS = ("offer_title", "product_external_id", "label")
# Columns whose values never hold a line break: a quoted value of one of them that runs over
# several lines is a stray quote swallowing the rows after it (the file is refused, naming it).
SINGLE_LINE_COLUMNS = frozenset(
    {"offer_external_id", "product_external_id", "label", "offer_brand", "offer_category", "offer_price", "reviewer"}
)
MAX_NOTE_CHARS = 2000
COLUMN_OF_FIELD = {field: column for column, field in OFFER_COLUMNS.items()}


class _CsvOffer(OfferIn):
    """An offer read from CSV cells: text, so `"12.5"` is the price 12.5 (JSON bodies stay strict)."""

    model_config = ConfigDict(strict=False)


class _CsvLabel(RequestModel):
    """One row of a label import, with the limits of `POST /v1/feedback` (and no NUL anywhere)."""

    model_config = ConfigDict(strict=False)

    offer: _CsvOffer
    offer_external_id: str | None = Field(default=None, max_length=MAX_ID_CHARS)
    product_external_id: str = Field(..., min_length=1, max_length=MAX_ID_CHARS)
    label: Literal["match", "no_match", "1", "0"]
    reviewer: str | None = Field(default=None, max_length=MAX_SHORT_CHARS)
    note: str | None = Field(default=None, max_length=MAX_NOTE_CHARS)


def _column(loc: tuple[Any, ...]) -> str:
    """The CSV column a validation error of `_CsvLabel` is about."""
    if len(loc) >= 2 and loc[0] == "offer":
        return COLUMN_OF_FIELD.get(str(loc[1]), f"offer_{loc[1]}")
    return str(loc[0]) if loc else "offer_title"


def _parse_rows(raw: bytes) -> tuple[list[tuple[int, _CsvLabel]], list[dict[str, Any]]]:
    """Validate each data row (1-based); bad rows become problems naming their column.

    Read with the ingestion job's strict CSV reader: every data row is either parsed or reported
    (an unreadable row under field null), and a quote that swallows the rows after it refuses
    the whole file (422 naming the row and the line) before anything is stored.
    """
    parsed: list[tuple[int, _CsvLabel]] = []
    problems: list[dict[str, Any]] = []
    fh = io.BytesIO(raw)
    try:
        header, _ = read_csv_header(fh)
    except UnreadableFile as exc:
        raise HTTPException(422, str(exc)) from exc
    if not set(REQUIRED_COLUMNS) <= set(header):
        raise HTTPException(422, f"the CSV header needs the columns {sorted(REQUIRED_COLUMNS)}")
    repeated = sorted({c for c in header if c and header.count(c) > 1})
    if repeated:
        raise HTTPException(422, f"the CSV header repeats column(s) {repeated}")
    try:
        for _, row in iter_csv_rows(fh, single_line=SINGLE_LINE_COLUMNS):
            if row.number > MAX_IMPORT_ROWS:
                raise HTTPException(413, f"at most {MAX_IMPORT_ROWS} rows per import")
            if row.data is None:
                problems.append({"row": row.number, "field": None, "message": row.error or "unreadable row"})
                continue
            _parse_row(row.number, row.data, parsed, problems)
    except UnreadableFile as exc:
        raise HTTPException(422, str(exc)) from exc
    return parsed, problems


def _parse_row(
    number: int, row: dict[str, Any], parsed: list[tuple[int, _CsvLabel]], problems: list[dict[str, Any]]
) -> None:
    """Validate one readable data row into ``parsed``, or report it in ``problems``."""
    cells = {k.strip(): (v or "").strip() for k, v in row.items() if k}
    values: dict[str, Any] = {k: v for k, v in cells.items() if k in LABEL_COLUMNS and v}
    values["offer"] = {field: cells[column] for column, field in OFFER_COLUMNS.items() if cells.get(column)}
    if "label" in values:
        values["label"] = values["label"].lower()
    try:
        parsed.append((number, _CsvLabel.model_validate(values)))
    except ValidationError as exc:
        first = exc.errors()[0]
        problems.append({"row": number, "field": _column(tuple(first["loc"])), "message": first["msg"]})


def _known_products(services: Services, external_ids: set[str]) -> set[str]:
    with services.factory() as session:
        return product_repo.existing_external_ids(session, external_ids)


def _after_labels(services: Services) -> None:
    """Queue an automatic calibration refit when CALIBRATE_EVERY_LABELS new labels arrived."""
    if services.settings.calibrate_every_labels <= 0:
        return
    runtime = services.runtime
    if runtime is None:
        return
    try:
        schedule_if_due(
            services.settings, services.factory, services.queue, runtime.pipeline.scorer, runtime.encoder.model_id
        )
    except Exception:  # noqa: BLE001 - the labels are stored; a missed trigger waits for the next label
        logger.warning("could not check whether a calibration refit is due", exc_info=True)


def _out(row: LabeledPair) -> FeedbackOut:
    return FeedbackOut(
        id=row.id,
        review_id=row.review_id,
        offer=row.offer,
        offer_external_id=row.offer_external_id,
        product_external_id=row.product_external_id,
        label="match" if row.label == 1 else "no_match",
        reviewer=row.reviewer,
        note=row.note,
        source=row.source,
        created_at=row.created_at,
    )


@router.get("/review", response_model=ReviewPage)
async def review_queue(services: ServicesDep, limit: Annotated[int, Query(ge=1, le=500)] = 50):
    """Open review items, oldest first."""
    rows = await run_in_threadpool(open_reviews, services.factory, limit)
    return ReviewPage(items=[ReviewItemOut.model_validate(r, from_attributes=True) for r in rows])


@router.post("/feedback", status_code=status.HTTP_201_CREATED, response_model=FeedbackOut, responses=errors(404))
async def feedback(body: FeedbackIn, services: ServicesDep):
    """Record a label. 404 when `review_id` or `product_external_id` is unknown: labels are only
    kept for catalogue products (a label on an unknown product could never be used)."""
    offer: dict[str, Any]
    known = await run_in_threadpool(_known_products, services, {body.product_external_id})
    if body.product_external_id not in known:
        raise HTTPException(
            404, f"product_external_id: product {body.product_external_id!r} not found; labels need a catalogue product"
        )
    if body.review_id is not None:
        item = await run_in_threadpool(get_review, services.factory, body.review_id)
        if item is None:
            raise HTTPException(404, f"review item {body.review_id!r} not found")
        offer = body.offer.model_dump() if body.offer else item.offer
        offer_external_id = body.offer_external_id or item.offer_external_id
        source = "review"
    else:
        assert body.offer is not None
        offer, offer_external_id, source = body.offer.model_dump(), body.offer_external_id, "api"
    label = {
        "review_id": body.review_id,
        "offer": offer,
        "offer_external_id": offer_external_id,
        "product_external_id": body.product_external_id,
        "label": LABELS[body.label],
        "source": source,
        "reviewer": body.reviewer,
        "note": body.note,
    }
    rows = await run_in_threadpool(add_labels, services.factory, [label])
    await run_in_threadpool(_after_labels, services)
    return _out(rows[0])


@router.get("/feedback", response_model=FeedbackPage)
async def list_feedback(
    services: ServicesDep,
    product_external_id: Annotated[str | None, Query(max_length=255)] = None,
    offer_external_id: Annotated[str | None, Query(max_length=255)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
):
    """Labels newest first; with both ids, `effective_label` is the latest one."""
    rows = await run_in_threadpool(labels_for, services.factory, product_external_id, offer_external_id, limit)
    effective: Literal["match", "no_match"] | None = None
    if rows and product_external_id and offer_external_id:
        effective = "match" if rows[0].label == 1 else "no_match"
    return FeedbackPage(items=[_out(r) for r in rows], effective_label=effective)


@router.post(
    "/feedback/import",
    response_model=FeedbackImportResult,
    responses=errors(415),
    dependencies=[Depends(form_fields())],
)
async def import_feedback(
    services: ServicesDep,
    file: Annotated[UploadFile, File(description="CSV: offer_title, product_external_id, label, ...")],
):
    """Import labels from a UTF-8 CSV with a header.

    Columns: `offer_title`, `product_external_id` and `label` (`match`/`no_match`/`1`/`0`) are
    required; `offer_external_id`, `offer_brand`, `offer_category`, `offer_price`, `reviewer`
    and `note` are optional; other columns are ignored. At most 100,000 rows and
    `FEEDBACK_IMPORT_MAX_BYTES` (20 MB) per file. A bad row (blank title, bad price, unknown
    label, unknown product, a row of the wrong width) is reported with its 1-based data row and
    column and skipped; the good rows are stored, and `imported + failed` is the number of data
    rows. A quote that swallows the rows after it refuses the file (422 naming the row and the
    line where the quote opened); archives are refused like the catalogue uploads' (415).
    """
    raw = await file.read()
    refuse_archive(file, raw[:64])
    if b"\x00" in raw[:8192]:
        raise HTTPException(415, "the file looks binary; send a UTF-8 CSV")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HTTPException(422, f"the file is not valid UTF-8 (byte offset {exc.start})") from exc
    parsed, problems = await run_in_threadpool(_parse_rows, raw)
    known = await run_in_threadpool(_known_products, services, {r.product_external_id for _, r in parsed})
    labels = []
    for number, r in parsed:
        if r.product_external_id not in known:
            problems.append(
                {
                    "row": number,
                    "field": "product_external_id",
                    "message": f"product {r.product_external_id!r} not found in the catalogue",
                }
            )
            continue
        labels.append(
            {
                "offer": r.offer.model_dump(),
                "offer_external_id": r.offer_external_id,
                "product_external_id": r.product_external_id,
                "label": LABELS[r.label],
                "source": "import",
                "reviewer": r.reviewer,
                "note": r.note,
            }
        )
    problems.sort(key=lambda p: p["row"])
    if labels:
        await run_in_threadpool(add_labels, services.factory, labels)
        await run_in_threadpool(_after_labels, services)
    return FeedbackImportResult(imported=len(labels), failed=len(problems), errors=problems[:100])
