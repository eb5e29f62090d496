"""Review queue and labelled pairs."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from app.db.base import utcnow
from app.db.models import LabeledPair, ReviewItem

OPEN, LABELLED = "open", "labelled"


def queue_for_review(factory: sessionmaker[Session], items: Sequence[dict[str, Any]]) -> list[str]:
    """Store review-band decisions (offer, candidates, scores, model versions); returns ids."""
    rows = [
        ReviewItem(
            id=str(uuid.uuid4()),
            offer=item["offer"],
            offer_external_id=item.get("offer_external_id"),
            candidates=item["candidates"],
            top_score=item.get("top_score"),
            model_versions=item.get("model_versions") or {},
            status=OPEN,
        )
        for item in items
    ]
    if rows:
        with factory() as session, session.begin():
            session.add_all(rows)
    return [r.id for r in rows]


def open_reviews(factory: sessionmaker[Session], limit: int) -> list[ReviewItem]:
    with factory() as session:
        return list(
            session.scalars(
                select(ReviewItem)
                .where(ReviewItem.status == OPEN)
                .order_by(ReviewItem.created_at, ReviewItem.id)
                .limit(limit)
            )
        )


def get_review(factory: sessionmaker[Session], review_id: str) -> ReviewItem | None:
    with factory() as session:
        return session.get(ReviewItem, review_id)


def add_labels(factory: sessionmaker[Session], labels: Sequence[dict[str, Any]]) -> list[LabeledPair]:
    """Append labels (never overwrite); resolve the review items they answer."""
    rows = [LabeledPair(**label) for label in labels]
    with factory() as session, session.begin():
        session.add_all(rows)
        review_ids = sorted({r.review_id for r in rows if r.review_id})
        if review_ids:
            session.execute(
                update(ReviewItem).where(ReviewItem.id.in_(review_ids)).values(status=LABELLED, resolved_at=utcnow())
            )
    return rows


def labels_for(
    factory: sessionmaker[Session], product_external_id: str | None, offer_external_id: str | None, limit: int
) -> list[LabeledPair]:
    stmt = select(LabeledPair).order_by(LabeledPair.created_at.desc(), LabeledPair.id.desc()).limit(limit)
    if product_external_id:
        stmt = stmt.where(LabeledPair.product_external_id == product_external_id)
    if offer_external_id:
        stmt = stmt.where(LabeledPair.offer_external_id == offer_external_id)
    with factory() as session:
        return list(session.scalars(stmt))


def effective_labels(factory: sessionmaker[Session]) -> list[LabeledPair]:
    """The latest label of every (offer, product) pair: what training should use."""
    with factory() as session:
        rows = list(session.scalars(select(LabeledPair).order_by(LabeledPair.created_at, LabeledPair.id)))
    latest: dict[tuple[str, str], LabeledPair] = {}
    for row in rows:
        offer_key = row.offer_external_id or str(row.offer.get("title", ""))
        latest[(offer_key, row.product_external_id)] = row
    return list(latest.values())
