"""Per-epoch training checkpoints, so a long run resumes where it stopped.

A checkpoint is one file written atomically (temporary file, then rename) into a work folder
that is *not* the model folder: it holds the optimiser state and RNG states as a torch pickle,
and model folders must stay pickle-free (models.artefacts refuses them). It carries the run's
settings; a checkpoint written for other settings is ignored, never resumed.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"


def _settings_key(settings: dict[str, Any]) -> str:
    return json.dumps(settings, sort_keys=True, default=str)


def save_checkpoint(folder: str | Path, settings: dict[str, Any], state: dict[str, Any]) -> Path:
    """Write ``state`` (tensors, numpy arrays, plain Python) for ``settings``; returns the path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CHECKPOINT_FILE
    tmp = path.with_suffix(".tmp")
    torch.save({"settings": _settings_key(settings), "state": state}, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(folder: str | Path | None, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The saved state for exactly these ``settings``, or None (no file, or other settings)."""
    if folder is None:
        return None
    path = Path(folder) / CHECKPOINT_FILE
    if not path.is_file():
        return None
    # Our own file in our own work folder (optimiser and RNG states need the full unpickler).
    payload = torch.load(path, map_location="cpu", weights_only=False)
    if payload.get("settings") != _settings_key(settings):
        logger.warning("%s was written for other settings: starting from scratch", path)
        return None
    return dict(payload["state"])


def remove_checkpoint(folder: str | Path | None) -> None:
    if folder is not None:
        (Path(folder) / CHECKPOINT_FILE).unlink(missing_ok=True)


__all__ = ["CHECKPOINT_FILE", "load_checkpoint", "remove_checkpoint", "save_checkpoint"]
