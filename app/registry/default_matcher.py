"""The shipped default matcher: registered, promoted and served at start-up when nothing else is.

DEFAULT_MATCHER names a default-matcher folder (``productmatch train default``; the repository
keeps the released one in ``artefacts/default-matcher/``). With SCORER=default, start-up
(:func:`install_default_matcher`):

* folder empty or missing: one log line, and the zero-shot scorer serves until a matcher is
  promoted (nothing is downloaded or trained);
* otherwise the folder is checked and registered like any matcher folder, once: the same
  content is the same version, ``default-<manifest date>-<digest>``, marked as shipped;
* it is promoted when no matcher is active, or when the active one is an older shipped default
  (a new release); never over a matcher a user promoted, and never again after someone rolled
  it back (promote it by hand to serve it again).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from app.core.config import Settings
from app.db import model_versions
from app.db.tables import ModelVersion
from app.registry import folders
from models.artefacts import CALIBRATION_FILE, MANIFEST, MATCHER_KIND, ManifestError, assert_safe_weights, read_manifest
from models.match_head import HEAD_FILE, MatchHead

logger = logging.getLogger(__name__)

#: Metrics key of a version registered from DEFAULT_MATCHER (its folder), so a later release can
#: replace it while a user's promoted matcher stays.
SHIPPED = "shipped_from"
BUILD_HINT = "build one with `productmatch train default --out DIR` (artefacts/default-matcher/README.md)"


class DefaultMatcherError(ValueError):
    """DEFAULT_MATCHER holds a model that is not a usable default-matcher folder."""


def has_model(folder: Path | None) -> bool:
    return folder is not None and (folder / MANIFEST).is_file()


def check_folder(folder: Path) -> str:
    """The version name of a default-matcher folder; raises :class:`DefaultMatcherError` naming
    what is wrong (wrong kind, no head, pickled weights, ...)."""
    where = f"DEFAULT_MATCHER={folder}"
    try:
        manifest = read_manifest(folder)
        assert_safe_weights(folder)
    except (ManifestError, ValueError, OSError) as exc:
        raise DefaultMatcherError(f"{where}: {exc}") from exc
    if manifest.kind != MATCHER_KIND:
        raise DefaultMatcherError(f"{where} holds a {manifest.kind!r} model, not a {MATCHER_KIND!r}")
    for name in (HEAD_FILE, CALIBRATION_FILE):
        if not (folder / name).is_file():
            raise DefaultMatcherError(f"{where} has no {name}: not a `productmatch train default` folder")
    try:
        MatchHead.from_dict(json.loads((folder / HEAD_FILE).read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError) as exc:
        raise DefaultMatcherError(f"{where}: unreadable {HEAD_FILE}: {exc}") from exc
    day = re.sub(r"\D", "", str(manifest.created_at)[:10])
    digest = folders.folder_digest(folder)[:8]
    return f"default-{day}-{digest}" if len(day) == 8 else f"default-{digest}"


def is_shipped(row: ModelVersion) -> bool:
    return bool((row.metrics or {}).get(SHIPPED))


def install_default_matcher(settings: Settings, factory: sessionmaker[Session]) -> ModelVersion | None:
    """Register DEFAULT_MATCHER's model and promote it where the rule above says so.

    Returns its version row (registered, maybe active), or None when there is no shipped model
    or SCORER=zero-shot. Safe to run in every process at every start: idempotent.
    """
    folder = settings.default_matcher
    active = model_versions.active(factory, "matcher")
    if settings.scorer != "default":
        logger.info("SCORER=%s: the zero-shot scorer serves; the shipped default matcher is not installed",
                    settings.scorer)  # fmt: skip
        return None
    if folder is None or not has_model(folder):
        if active is None:
            place = "DEFAULT_MATCHER is empty" if folder is None else f"no default matcher in {folder} (no {MANIFEST})"
            logger.info("%s: serving the zero-shot scorer until a matcher is promoted; %s", place, BUILD_HINT)
        return None
    name = check_folder(folder)
    row = folders.register(factory, folder, settings.model_dir, name=name)  # type: ignore[arg-type]  # never None: Settings fills it in its validator
    if not is_shipped(row):
        model_versions.add_metrics(factory, row.version, {SHIPPED: str(folder)})
    # Read again: another process starting at the same time may have promoted it meanwhile.
    row = model_versions.get(factory, row.version)
    active = model_versions.active(factory, "matcher")
    if active is not None and active.version == row.version:
        logger.info("serving the shipped default matcher %s", row.version)
        return row
    if active is not None and not is_shipped(active):
        logger.info("the promoted matcher %s serves; the shipped default %s is registered (promote it to serve it)",
                    active.version, row.version)  # fmt: skip
        return row
    if row.promoted_at is not None:
        serving = "the zero-shot scorer" if active is None else f"matcher {active.version}"
        logger.info("the shipped default matcher %s was rolled back: serving %s (promote it to serve it again)",
                    row.version, serving)  # fmt: skip
        return row
    row = model_versions.activate(factory, row.version)
    replaced = f", replacing the earlier shipped {active.version}" if active is not None else ""
    logger.info("promoted the shipped default matcher %s from %s%s", row.version, folder, replaced)
    return row


__all__ = ["SHIPPED", "DefaultMatcherError", "check_folder", "has_model", "install_default_matcher", "is_shipped"]
