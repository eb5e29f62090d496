"""Write the default matcher's folder: bf16 safetensors, calibration, head, manifest, model card.

Layout (loadable by ``models.matcher_io.load_matcher`` as a plain matcher, and by
``models.default_matcher.load_default_matcher`` with its head):

    model.safetensors, config.json, tokenizer files   the cross-encoder, bf16
    lea_config.json, lea.safetensors                   the lexical attention bias
    calibration.json                                   cross-encoder alone: temperature + cuts
    head.json                                          the calibrated head and its cuts
    manifest.json                                      recipe config, sources + licences, commit, metrics
    MODEL_CARD.md                                      generated from the manifest
    bi_encoder/                                        only when the run was given its own encoder
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from models.artefacts import CALIBRATION_FILE, MATCHER_KIND, Manifest, write_manifest
from models.bi_encoder import BiEncoder
from models.calibration import Calibrator, threshold_for_best_f1, threshold_for_precision
from models.default_matcher import MODEL_CARD
from models.lea import LeaCrossEncoder
from models.match_head import HEAD_FILE, MatchHead
from models.matcher_io import PRECISION_TARGETS
from training.default_recipe.config import RecipeConfig
from training.default_recipe.model_card import model_card
from training.default_recipe.sources import licences
from training.metrics import pr_auc

if TYPE_CHECKING:
    from training.default_recipe.train import RecipeData

logger = logging.getLogger(__name__)

#: The size budget of a shipped folder (issue 15: committed with the project).
MAX_FOLDER_BYTES = 100 * 1024 * 1024
RECIPE = "default"


def git_commit() -> str:
    """The checkout's commit (with ``-dirty`` when it has local changes), or ``unknown``."""
    root = Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.check_output(["git", "rev-parse", "HEAD"], cwd=root, text=True, stderr=subprocess.DEVNULL)
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "models", "training"], cwd=root).returncode
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev.strip() + ("-dirty" if dirty else "")


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _save_bf16(model: LeaCrossEncoder, out: Path) -> None:
    # The transformer in bf16 halves the folder (MiniLM-L6: ~90 -> ~45 MB); the weights were
    # rounded to bf16 before validation, so the calibration holds for exactly these values.
    model.model.to(torch.bfloat16)
    try:
        model.save(out)
    finally:
        model.model.to(torch.float32)


def _calibration(logits: np.ndarray, labels: np.ndarray, fields: Sequence[str], max_length: int) -> dict[str, Any]:
    """``calibration.json`` of the cross-encoder alone (what ``load_matcher`` serves)."""
    calibrator = Calibrator.fit(logits, labels, "temperature")
    probs = calibrator.apply(logits)
    best = threshold_for_best_f1(probs, labels)
    for_precision = {str(t): threshold_for_precision(probs, labels, t, curve="envelope") for t in PRECISION_TARGETS}
    return {
        "calibrator": calibrator.to_dict(),
        "threshold": best.threshold,
        "thresholds_for_precision": {k: (None if v is None else v.threshold) for k, v in for_precision.items()},
        "fields": list(fields),
        "max_length": max_length,
        "valid": {
            "best_f1": best.to_dict(),
            "for_precision": {k: (None if v is None else v.to_dict()) for k, v in for_precision.items()},
            "pr_auc": pr_auc(probs, labels),
        },
    }


def save_default_matcher(
    out: Path,
    model: LeaCrossEncoder,
    head: MatchHead,
    *,
    valid_logits: np.ndarray,
    valid_labels: np.ndarray,
    valid_sources: Sequence[str],
    config: RecipeConfig,
    precision: str,
    history: list[dict[str, Any]],
    kept_epoch: int,
    data: RecipeData,
    bi_encoder: BiEncoder | None,
    train_seconds: float,
    init: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the folder; returns the run summary (also the manifest's metrics). ``init``: the
    release the cross-encoder started from (:func:`training.default_recipe.train.start_from_release`)."""
    out.mkdir(parents=True, exist_ok=True)
    _save_bf16(model, out)
    calibration = _calibration(valid_logits, valid_labels, config.fields, data.max_length)
    (out / CALIBRATION_FILE).write_text(json.dumps(calibration, indent=2, sort_keys=True), encoding="utf-8")
    (out / HEAD_FILE).write_text(json.dumps(head.to_dict(), indent=2, sort_keys=True), encoding="utf-8")
    if bi_encoder is not None:
        bi_encoder.save(out / head.bi_encoder)
    known = licences()
    sources = [
        {
            "name": s.name,
            "path": s.spec.path,
            "format": s.spec.fmt,
            "licence": known.get(s.spec.licence_folder, "see SOURCES.md"),
            "train_pairs": len(s.train),
            "valid_pairs": len(s.valid),
            "pairs_per_epoch": data.mixture.quota[s.name],
            "mined_negatives": data.mined.get(s.name, 0),
            "fingerprint": s.fingerprint,
        }
        for s in data.sources
    ]
    fingerprint = hashlib.sha256("".join(s.fingerprint for s in data.sources).encode()).hexdigest()
    metrics = {
        "kept_epoch": kept_epoch,
        "history": history,
        "valid_pooled": head.valid,
        "valid_cross_encoder_only": calibration["valid"],
        "threshold": head.threshold,
        "thresholds_for_precision": head.thresholds_for_precision,
        "train_seconds": train_seconds,
    }
    settings = {
        "recipe": RECIPE,
        "arch": config.arch,
        "backbone": config.backbone if config.tiny_config is None else f"random-init ({config.backbone} tokenizer)",
        "fields": list(config.fields),
        "max_length": data.max_length,
        "max_length_report": data.lengths,
        "precision": precision,
        "weights_dtype": "bfloat16",
        "head": HEAD_FILE,
        "head_features": list(head.feature_names),
        "bi_encoder": head.bi_encoder,
        "sources": sources,
        "excluded": sorted(config.excluded()),
        "valid_pairs": int(len(valid_labels)),
        "valid_per_source": {k: int(sum(1 for s in valid_sources if s == k)) for k in sorted(set(valid_sources))},
        "git_commit": git_commit(),
        "config": config.to_dict(),
        "init": init,
    }
    manifest = Manifest(kind=MATCHER_KIND, backbone=settings["backbone"], training_data_sha256=fingerprint,
                        settings=settings, metrics=metrics)  # fmt: skip
    write_manifest(out, manifest)
    (out / MODEL_CARD).write_text(model_card(manifest), encoding="utf-8")
    size = folder_bytes(out)
    if size > MAX_FOLDER_BYTES:
        logger.warning("%s is %.1f MB, over the %d MB budget of a shipped folder", out, size / 2**20, 100)
    logger.info("saved default matcher to %s (%.1f MB), head threshold %.4f", out, size / 2**20, head.threshold)
    return {"out_dir": str(out), "folder_bytes": size, **metrics}


__all__ = ["MAX_FOLDER_BYTES", "RECIPE", "folder_bytes", "git_commit", "save_default_matcher"]
