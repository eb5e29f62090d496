"""Model version rows: add, look up, activate (promote), previous (the rollback target), retire.

The artefact folders themselves are registered by `app/registry/folders.py`, which copies and
checks them before a row is added here.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from app.db.tables import ModelVersion

REGISTERED, ACTIVE, RETIRED = "registered", "active", "retired"
BLOCKER_KINDS = ("bi-encoder",)


class RegistryError(ValueError):
    """A version does not exist or cannot move to the requested state."""


def add(factory: sessionmaker[Session], row: ModelVersion) -> None:
    with factory() as session, session.begin():
        session.add(row)


def get(factory: sessionmaker[Session], version: str) -> ModelVersion:
    with factory() as session:
        row = session.scalar(select(ModelVersion).where(ModelVersion.version == version))
    if row is None:
        raise RegistryError(f"model version {version!r} not found")
    return row


def active(factory: sessionmaker[Session], kind: str) -> ModelVersion | None:
    with factory() as session:
        return session.scalar(select(ModelVersion).where(ModelVersion.kind == kind, ModelVersion.status == ACTIVE))


def list_versions(factory: sessionmaker[Session], kind: str | None = None) -> list[ModelVersion]:
    stmt = select(ModelVersion).order_by(ModelVersion.id)
    if kind:
        stmt = stmt.where(ModelVersion.kind == kind)
    with factory() as session:
        return list(session.scalars(stmt))


def activate(factory: sessionmaker[Session], version: str) -> ModelVersion:
    """Make `version` the active one of its kind; the previous active one is retired."""
    row = get(factory, version)
    if not Path(row.path).exists():
        raise RegistryError(f"the artefact folder of {version} is missing: {row.path}")
    with factory() as session, session.begin():
        session.execute(
            update(ModelVersion)
            .where(ModelVersion.kind == row.kind, ModelVersion.status == ACTIVE, ModelVersion.version != version)
            .values(status=RETIRED)
        )
        session.execute(
            update(ModelVersion)
            .where(ModelVersion.version == version)
            .values(status=ACTIVE, promoted_at=datetime.now(timezone.utc))
        )
    return get(factory, version)


def previous(factory: sessionmaker[Session], kind: str) -> ModelVersion | None:
    """The most recently promoted retired version of a kind (the rollback target)."""
    with factory() as session:
        return session.scalar(
            select(ModelVersion)
            .where(
                ModelVersion.kind == kind,
                ModelVersion.status == RETIRED,
                ModelVersion.promoted_at.is_not(None),
            )
            .order_by(ModelVersion.promoted_at.desc())
            .limit(1)
        )


def deactivate(factory: sessionmaker[Session], kind: str) -> None:
    """Retire the active version: the service falls back to the packaged zero-shot model."""
    with factory() as session, session.begin():
        session.execute(
            update(ModelVersion).where(ModelVersion.kind == kind, ModelVersion.status == ACTIVE).values(status=RETIRED)
        )


def add_metrics(factory: sessionmaker[Session], version: str, metrics: dict[str, Any]) -> None:
    """Merge metrics measured after registration (held-out evaluation, gate) into a version."""
    with factory() as session, session.begin():
        row = session.scalar(select(ModelVersion).where(ModelVersion.version == version))
        if row is None:
            raise RegistryError(f"model version {version!r} not found")
        row.metrics = {**(row.metrics or {}), **metrics}
