"""Model artefact folders: weights in safetensors, tokenizer files and a JSON manifest.

A folder is loadable without unpickling anything: the manifest is JSON and the weights are
safetensors. Manifests carry a schema version so that an older or newer layout is migrated or
refused with a message naming both versions, never a traceback.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
# The matcher folder's kind and its calibration file (models/matcher_io.py), here so that code
# which only reads folders (the admin API) names them without importing torch.
MATCHER_KIND = "matcher"
CALIBRATION_FILE = "calibration.json"


class ManifestError(ValueError):
    """A model folder is missing its manifest or carries an unsupported one."""


@dataclass
class Manifest:
    kind: str
    backbone: str
    training_data_sha256: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ManifestError(
                f"manifest schema_version {version!r} is not supported by this release (supports {SCHEMA_VERSION})"
            )
        known = {f for f in cls.__dataclass_fields__}
        missing = {"kind", "backbone"} - set(data)
        if missing:
            raise ManifestError(f"manifest lacks required fields: {sorted(missing)}")
        return cls(**{k: v for k, v in data.items() if k in known})


def write_manifest(folder: str | Path, manifest: Manifest) -> Path:
    """Write the manifest atomically (temp file, fsync, rename)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / MANIFEST
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(manifest.to_dict(), fh, indent=2, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def read_manifest(folder: str | Path) -> Manifest:
    path = Path(folder) / MANIFEST
    if not path.exists():
        raise ManifestError(f"{folder} has no {MANIFEST}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ManifestError(f"{path} must hold a JSON object")
    return Manifest.from_dict(data)


# Files that torch / joblib / pickle would unpickle (and so could run code) when loaded.
PICKLE_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib"})


def assert_safe_weights(folder: str | Path) -> None:
    """Refuse folders whose weights are pickles: loading them could run arbitrary code."""
    folder = Path(folder)
    pickles = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise ManifestError(f"{folder} holds pickled weights {pickles}; only safetensors are loaded")


def fingerprint(*chunks: bytes | str) -> str:
    """SHA-256 over the training data (or any byte chunks), for manifests."""
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk.encode("utf-8") if isinstance(chunk, str) else chunk)
    return digest.hexdigest()
