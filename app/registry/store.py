"""Model versions: register artefact folders, promote, roll back.

A registered version is a copy of the artefact folder under MODEL_DIR, checked on the way in
(JSON manifest of a supported schema, safetensors only), so later loads never see pickles.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import ModelVersion
from models.artefacts import assert_safe_weights, read_manifest

logger = logging.getLogger(__name__)

REGISTERED, ACTIVE, RETIRED = "registered", "active", "retired"
BLOCKER_KINDS = ("bi-encoder",)


class RegistryError(ValueError):
    """A version does not exist or cannot move to the requested state."""


def _folder_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def register(factory: sessionmaker[Session], folder: str | Path, model_dir: str | Path) -> ModelVersion:
    folder = Path(folder)
    manifest = read_manifest(folder)
    assert_safe_weights(folder)
    digest = _folder_digest(folder)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    version = f"{manifest.kind}-{stamp}-{digest[:8]}"
    with factory() as session:
        for existing in session.scalars(select(ModelVersion).where(ModelVersion.kind == manifest.kind)):
            if existing.version.endswith(digest[:8]) and Path(existing.path).exists():
                return existing  # the same artefact registered twice is one version
    dest = Path(model_dir) / "versions" / version
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(folder, tmp)
    tmp.rename(dest)
    row = ModelVersion(
        version=version,
        kind=manifest.kind,
        path=str(dest.resolve()),
        status=REGISTERED,
        metrics=manifest.metrics,
        manifest=manifest.to_dict(),
    )
    with factory() as session, session.begin():
        session.add(row)
    logger.info("registered %s from %s", version, folder)
    return row


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
