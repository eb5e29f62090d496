"""Labelled pairs: appended, never overwritten; the latest label of a pair is the one that counts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from app.db.base import utcnow
from app.db.review_queue import LABELLED
from app.db.tables import LabeledPair, ReviewItem


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
