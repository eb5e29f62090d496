"""Catalogue calibrations: store a refit, find the active one of a scorer, retire (revert) it.

One active row per scorer key: storing a refit retires the scorer's previous one in the same
transaction, so every process that asks for the active row of a key gets the same answer.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.db.base import utcnow
from app.db.tables import Calibration, Job, LabeledPair

ACTIVE, RETIRED = "active", "retired"


def store(factory: sessionmaker[Session], values: dict[str, Any]) -> Calibration:
    """Add an active calibration for ``values["scorer_key"]``, retiring the key's previous one."""
    row = Calibration(**values, status=ACTIVE, fitted_at=utcnow())
    with factory() as session, session.begin():
        session.execute(
            update(Calibration)
            .where(Calibration.scorer_key == row.scorer_key, Calibration.status == ACTIVE)
            .values(status=RETIRED, retired_at=utcnow())
        )
        session.add(row)
    return row


def active(factory: sessionmaker[Session], scorer_key: str) -> Calibration | None:
    with factory() as session:
        return session.scalar(
            select(Calibration)
            .where(Calibration.scorer_key == scorer_key, Calibration.status == ACTIVE)
            .order_by(Calibration.id.desc())
            .limit(1)
        )


def retire(factory: sessionmaker[Session], scorer_key: str) -> int:
    """Retire the scorer's active calibration (it falls back to its own thresholds); rows retired."""
    with factory() as session, session.begin():
        result = session.execute(
            update(Calibration)
            .where(Calibration.scorer_key == scorer_key, Calibration.status == ACTIVE)
            .values(status=RETIRED, retired_at=utcnow())
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]  # an UPDATE's CursorResult


def labels_through(factory: sessionmaker[Session], scorer_key: str) -> int:
    """The newest label id the scorer's latest calibration (active or not) saw; 0 if never fitted."""
    with factory() as session:
        value = session.scalar(select(func.max(Calibration.labels_through)).where(Calibration.scorer_key == scorer_key))
    return int(value or 0)


def labels_after(factory: sessionmaker[Session], label_id: int) -> int:
    """How many labels were stored after label ``label_id`` (automatic refits count them)."""
    with factory() as session:
        return int(session.scalar(select(func.count(LabeledPair.id)).where(LabeledPair.id > label_id)) or 0)


def newest_label_id(factory: sessionmaker[Session]) -> int:
    with factory() as session:
        return int(session.scalar(select(func.max(LabeledPair.id))) or 0)


def last_scheduled(factory: sessionmaker[Session], kind: str, scorer_key: str, window: int = 50) -> int:
    """``labels_through`` of the newest automatic refit job of the scorer (0 if none).

    An automatic refit that was refused (one class) must not be queued again by every further
    label: the next one waits for as many new labels after this mark. The payload is JSON,
    read here rather than queried inside the database (JSON paths differ between SQLite and
    PostgreSQL); the newest ``window`` jobs of the kind are enough.
    """
    with factory() as session:
        payloads = session.scalars(
            select(Job.payload).where(Job.kind == kind).order_by(Job.created_at.desc()).limit(window)
        ).all()
    for payload in payloads:
        if isinstance(payload, dict) and payload.get("scorer_key") == scorer_key:
            return int(payload.get("labels_through") or 0)
    return 0
