"""Review queue and feedback: people label the decisions the matcher was unsure about."""

from __future__ import annotations

import csv
import io
from typing import Annotated, Any

from fastapi import APIRouter, File, HTTPException, Query, UploadFile, status
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError

from app.api.deps import ServicesDep
from app.api.responses import COMMON, errors
from app.db import feedback as repo
from app.db.models import LabeledPair
from app.schemas.feedback import (
    FeedbackImportResult,
    FeedbackIn,
    FeedbackOut,
    FeedbackPage,
    ReviewItemOut,
    ReviewPage,
)
from app.schemas.product import OfferIn

router = APIRouter(prefix="/v1", tags=["feedback"], responses=COMMON)

LABELS = {"match": 1, "no_match": 0, "1": 1, "0": 0}
MAX_IMPORT_ROWS = 100_000


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
    rows = await run_in_threadpool(repo.open_reviews, services.factory, limit)
    return ReviewPage(items=[ReviewItemOut.model_validate(r, from_attributes=True) for r in rows])


@router.post("/feedback", status_code=status.HTTP_201_CREATED, response_model=FeedbackOut, responses=errors(404))
async def feedback(body: FeedbackIn, services: ServicesDep):
    offer: dict[str, Any]
    if body.review_id is not None:
        item = await run_in_threadpool(repo.get_review, services.factory, body.review_id)
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
    rows = await run_in_threadpool(repo.add_labels, services.factory, [label])
    return _out(rows[0])


@router.get("/feedback", response_model=FeedbackPage)
async def list_feedback(
    services: ServicesDep,
    product_external_id: Annotated[str | None, Query(max_length=255)] = None,
    offer_external_id: Annotated[str | None, Query(max_length=255)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
):
    """Labels newest first; with both ids, `effective_label` is the latest one."""
    rows = await run_in_threadpool(repo.labels_for, services.factory, product_external_id, offer_external_id, limit)
    effective = None
    if rows and product_external_id and offer_external_id:
        effective = "match" if rows[0].label == 1 else "no_match"
    return FeedbackPage(items=[_out(r) for r in rows], effective_label=effective)


@router.post("/feedback/import", response_model=FeedbackImportResult, responses=errors(415))
async def import_feedback(
    services: ServicesDep,
    file: Annotated[UploadFile, File(description="CSV: offer_title, product_external_id, label, ...")],
):
    """CSV columns: offer_title (required), product_external_id, label (match/no_match/1/0),
    and optionally offer_external_id, offer_brand, offer_category, offer_price, reviewer, note."""
    raw = await file.read()
    if b"\x00" in raw[:8192]:
        raise HTTPException(415, "the file looks binary; send a UTF-8 CSV")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise HTTPException(422, f"the file is not valid UTF-8 (byte offset {exc.start})") from exc
    reader = csv.DictReader(io.StringIO(text, newline=""))
    required = {"offer_title", "product_external_id", "label"}
    if not reader.fieldnames or not required <= {f.strip() for f in reader.fieldnames}:
        raise HTTPException(422, f"the CSV header needs the columns {sorted(required)}")
    labels, problems = [], []
    for number, row in enumerate(reader, start=1):
        if number > MAX_IMPORT_ROWS:
            raise HTTPException(413, f"at most {MAX_IMPORT_ROWS} rows per import")
        row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
        label = LABELS.get(row.get("label", "").lower())
        try:
            offer = OfferIn(
                title=row.get("offer_title", ""),
                brand=row.get("offer_brand") or None,
                category=row.get("offer_category") or None,
                price=row.get("offer_price") or None,
            )
        except ValidationError as exc:
            problems.append({"row": number, "message": exc.errors()[0]["msg"], "field": "offer_title"})
            continue
        if label is None or not row.get("product_external_id"):
            problems.append({"row": number, "message": "label must be match/no_match/1/0 and the product id given"})
            continue
        labels.append(
            {
                "offer": offer.model_dump(),
                "offer_external_id": row.get("offer_external_id") or None,
                "product_external_id": row["product_external_id"],
                "label": label,
                "source": "import",
                "reviewer": row.get("reviewer") or None,
                "note": row.get("note") or None,
            }
        )
    if labels:
        await run_in_threadpool(repo.add_labels, services.factory, labels)
    return FeedbackImportResult(imported=len(labels), failed=len(problems), errors=problems[:100])
