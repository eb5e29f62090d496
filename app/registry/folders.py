"""Registering an artefact folder as a model version: checked, copied under MODEL_DIR, recorded.

A registered version is a copy of the artefact folder under MODEL_DIR, checked on the way in
(JSON manifest of a supported schema, safetensors only), so later loads never see pickles. The
version rows (activate, previous, retire) are `app/db/model_versions.py`.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from app.db import model_versions
from app.db.tables import ModelVersion
from models.artefacts import assert_safe_weights, read_manifest

logger = logging.getLogger(__name__)


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
    for existing in model_versions.list_versions(factory, manifest.kind):
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
        status=model_versions.REGISTERED,
        metrics=manifest.metrics,
        manifest=manifest.to_dict(),
    )
    model_versions.add(factory, row)
    logger.info("registered %s from %s", version, folder)
    return row
