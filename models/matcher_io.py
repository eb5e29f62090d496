"""Load a trained matcher folder and score pairs with it: the two calls the web service needs.

A matcher folder (written by ``training.train_matcher.train_matcher``) holds

* the cross-encoder: HF ``model.safetensors`` + tokenizer files + ``lea_config.json``
  (+ ``lea.safetensors`` for LEA), see :meth:`models.lea.LeaCrossEncoder.save`;
* ``calibration.json``: ``{"calibrator": {...}, "threshold": t, "thresholds_for_precision":
  {"0.9": t|null, "0.95": ..., "0.98": ...}, "fields": "title"|"all"|[...], "max_length": 64}``
  where every threshold applies to the *calibrated* probability (match iff ``prob >= t``);
* ``manifest.json`` (kind ``"matcher"``), see :mod:`models.artefacts`.

Nothing is unpickled: the manifest is read and the folder checked for pickled weights before any
weights are touched. Serving::

    model, calibrator, cal, manifest = load_matcher(folder)
    texts = [(serialize_product(offer, cal["fields"]), serialize_product(product, cal["fields"]))]
    logits, probs = score_pairs(model, calibrator, texts)
    is_match = probs >= cal["threshold"]
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.artefacts import CALIBRATION_FILE, MATCHER_KIND, Manifest, ManifestError, assert_safe_weights, read_manifest
from models.calibration import Calibrator
from models.lea import LeaCrossEncoder
from models.precision import bf16_native

logger = logging.getLogger(__name__)

PRECISION_TARGETS: tuple[float, ...] = (0.9, 0.95, 0.98)


def load_matcher(folder: str | Path) -> tuple[LeaCrossEncoder, Calibrator, dict[str, Any], Manifest]:
    """``(model in eval mode, calibrator, calibration.json dict, manifest)`` of a matcher folder.

    Raises :class:`~models.artefacts.ManifestError` for a folder without a matcher manifest or
    with pickled weights, ``FileNotFoundError`` when ``calibration.json`` is missing.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest.kind != MATCHER_KIND:
        raise ManifestError(f"{folder} holds a {manifest.kind!r} model, not a {MATCHER_KIND!r}")
    assert_safe_weights(folder)
    cal_path = folder / CALIBRATION_FILE
    if not cal_path.is_file():
        raise FileNotFoundError(f"{folder} has no {CALIBRATION_FILE}")
    calibration = json.loads(cal_path.read_text(encoding="utf-8"))
    calibrator = Calibrator.from_dict(calibration["calibrator"])
    model = LeaCrossEncoder.load(folder)
    model.eval()
    # Serve in the precision the calibration was fitted in; fp32 where bf16 is not native here.
    trained = str(manifest.settings.get("precision") or "fp32")
    model.precision = trained if trained == "fp32" or bf16_native(model.device) else "fp32"
    if model.precision != trained:
        logger.warning("%s was calibrated in %s, which this machine lacks: serving fp32", folder, trained)
    logger.info(
        "loaded matcher %s (arch %s, %s, threshold %.4f)",
        folder,
        manifest.settings.get("arch"),
        calibrator,
        float(calibration["threshold"]),
    )
    return model, calibrator, calibration, manifest


def score_pairs(
    model: LeaCrossEncoder,
    calibrator: Calibrator,
    pairs: Sequence[tuple[str, str]],
    batch_size: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
    """``(logits float32 (n,), calibrated probabilities float64 (n,))`` for serialised pairs.

    ``pairs`` are ``(offer_text, product_text)`` strings serialised with the folder's ``fields``.
    Uses the model's own collator (tokenizer, max length, LEA similarity settings) and sorts by
    length internally; outputs are in input order. The collator is not thread-safe: serialise
    calls per model object (or give each worker thread its own model).
    """
    logits = model.predict_logits(list(pairs), batch_size=batch_size)
    return logits, calibrator.apply(logits)


__all__ = ["PRECISION_TARGETS", "load_matcher", "score_pairs"]
