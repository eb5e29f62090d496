"""The review queue: decisions in the review band, one open item per (offer, candidate set).

The labels that answer them are `app/db/labels.py`.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import CursorResult, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from app.db.base import utcnow
from app.db.tables import ReviewItem

OPEN, LABELLED = "open", "labelled"
INSERT_BATCH = 500  # review items per INSERT (SQLite bounds the parameters of one statement)


def review_key(offer: dict[str, Any], offer_external_id: str | None, candidates: Sequence[dict[str, Any]]) -> str:
    """Identity of a review item: the offer (and its id, when it has one) and the candidate *set*.

    Scores and order are left out: the same offer matched again against the same candidates is
    the same question for a person, however the scores moved.
    """
    identity = {
        "offer": offer,
        "offer_external_id": offer_external_id,
        "candidates": sorted(str(c["external_id"]) for c in candidates),
    }
    encoded = json.dumps(identity, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()


def queue_for_review(factory: sessionmaker[Session], items: Sequence[dict[str, Any]]) -> int:
    """Store review-band decisions (offer, candidates, scores, model versions).

    At most one *open* item per (offer, candidate set): an item already waiting is left as it
    is (also when two requests race: the database's unique index decides). Returns how many
    items were added.
    """
    rows: dict[str, dict[str, Any]] = {}
    for item in items:
        key = review_key(item["offer"], item.get("offer_external_id"), item["candidates"])
        rows.setdefault(
            key,
            {
                "id": str(uuid.uuid4()),
                "offer": item["offer"],
                "offer_external_id": item.get("offer_external_id"),
                "candidates": item["candidates"],
                "top_score": item.get("top_score"),
                "model_versions": item.get("model_versions") or {},
                "status": OPEN,
                "created_at": utcnow(),
                "dedupe_key": key,
            },
        )
    values = list(rows.values())
    added = 0
    with factory() as session, session.begin():
        dialect = session.get_bind().dialect.name
        insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
        for start in range(0, len(values), INSERT_BATCH):
            # No conflict target: the only unique constraints are the primary key (fresh
            # uuids) and the partial index on open items' keys.
            stmt = insert(ReviewItem).values(values[start : start + INSERT_BATCH]).on_conflict_do_nothing()
            added += int(cast(CursorResult[Any], session.execute(stmt)).rowcount or 0)
    return added


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


def earliest_items(session: Session, limit: int) -> list[ReviewItem]:
    """The first ``limit`` review items by creation time, open or labelled."""
    return list(session.scalars(select(ReviewItem).order_by(ReviewItem.created_at).limit(limit)))


def get_review(factory: sessionmaker[Session], review_id: str) -> ReviewItem | None:
    with factory() as session:
        return session.get(ReviewItem, review_id)
