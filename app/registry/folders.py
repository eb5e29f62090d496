"""Registering an artefact folder as a model version: checked, copied under MODEL_DIR, recorded.

A registered version is a copy of the artefact folder under MODEL_DIR, checked on the way in
(JSON manifest of a supported schema, safetensors only), so later loads never see pickles. The
version rows (activate, previous, retire) are `app/db/model_versions.py`.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from app.db import model_versions
from app.db.tables import ModelVersion
from models.artefacts import MANIFEST, assert_safe_weights, read_manifest

logger = logging.getLogger(__name__)


#: A README at the top of a folder describes the place (artefacts/default-matcher/README.md says
#: what goes there), not the model: it is neither hashed nor copied, so editing it changes no version.
PLACE_README = "README.md"


def _model_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p != folder / PLACE_README)


def folder_digest(folder: str | Path) -> str:
    """sha256 over every model file's relative path and bytes: equal folders, equal digests."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in _model_files(folder):
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def register(
    factory: sessionmaker[Session], folder: str | Path, model_dir: str | Path, name: str | None = None
) -> ModelVersion:
    """Copy ``folder`` under MODEL_DIR and add its version row (``registered``).

    The version is ``<kind>-<UTC stamp>-<digest[:8]>``, or ``name`` when given (it must end with
    the digest's first 8 characters, so equal content stays recognisable). The same content
    registered twice, by any name, is one version. Two processes registering the same ``name``
    at once get the same row.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    assert_safe_weights(folder)
    digest = folder_digest(folder)
    if name is not None and not name.endswith(digest[:8]):
        raise ValueError(f"version name {name!r} must end with the folder digest's {digest[:8]!r}")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    version = name or f"{manifest.kind}-{stamp}-{digest[:8]}"
    for existing in model_versions.list_versions(factory, manifest.kind):
        if existing.version.endswith(digest[:8]) and Path(existing.path).exists():
            return existing  # the same artefact registered twice is one version
    dest = Path(model_dir) / "versions" / version
    dest.parent.mkdir(parents=True, exist_ok=True)
    # A private temporary copy: another process may be registering the same name right now.
    tmp = dest.with_name(f"{dest.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        shutil.copytree(folder, tmp, ignore=lambda at, names: [PLACE_README] if Path(at) == folder else [])
        tmp.rename(dest)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (dest / MANIFEST).is_file():
            raise
        # The name ends with the content digest: the copy in place (another process's) is this one.
    row = ModelVersion(
        version=version,
        kind=manifest.kind,
        path=str(dest.resolve()),
        status=model_versions.REGISTERED,
        metrics=manifest.metrics,
        manifest=manifest.to_dict(),
    )
    try:
        model_versions.add(factory, row)
    except IntegrityError:
        return model_versions.get(factory, version)  # the other process's row
    logger.info("registered %s from %s", version, folder)
    return row
