"""Evaluate a saved matcher on a clean test split and on its typo-noised copies (METHODS §1.3).

Clean metrics are taken at the folder's saved threshold (chosen on clean validation). Noisy F1
follows the protocol: both sides of every test pair are noised with the typo-v1 generator,
copy ``s`` seeded per row (:func:`training.data.typos.noisy_copy`), the *same* threshold is
reused (never re-tuned), and the reported ``f1_noisy`` is the mean over the copies.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.matcher_io import load_matcher, score_pairs
from models.product_text import FieldSpec
from models.quantize import apply_cross_encoder_quantization
from training.data.records import PairDataset
from training.data.typos import TYPO_VERSION, noisy_copy
from training.metrics import pr_auc, scores_at
from training.train_matcher import serialize_pairs

logger = logging.getLogger(__name__)


def evaluate_matcher(
    folder: str | Path,
    dataset: PairDataset,
    split: str = "test",
    noise_seeds: Sequence[int] | None = None,
    fields: FieldSpec | None = None,
    batch_size: int = 64,
    quantize: str = "none",
) -> dict[str, Any]:
    """Clean (and optionally noisy) metrics of the matcher in ``folder`` on ``dataset[split]``.

    ``fields`` defaults to the fields the model was trained with (``calibration.json``). Returns
    fractions in [0, 1]: ``f1_clean``, ``precision``, ``recall``, ``pr_auc``, ``f1_noisy`` (mean
    over ``noise_seeds``; None without seeds) with ``f1_noisy_per_seed`` (and precision / recall
    per seed), plus ``threshold``, ``pairs``, ``positives`` and ``model`` (folder name and the
    manifest's kind, arch, backbone, augment). ``quantize="int8"`` scores with dynamic int8
    Linear layers, as the service does with ``MATCHER_QUANTIZE=int8``: same calibrator and
    threshold, so the metrics show what int8 costs in serving.
    """
    folder = Path(folder)
    model, calibrator, calibration, manifest = load_matcher(folder)
    apply_cross_encoder_quantization(model, quantize)
    use_fields = calibration.get("fields", "title") if fields is None else fields
    rows = serialize_pairs(dataset.split(split), use_fields)
    if not rows:
        raise ValueError(f"split {split!r} of {dataset.name!r} is empty")
    labels = np.asarray([y for _, _, y in rows], dtype=np.int64)
    threshold = float(calibration["threshold"])
    left = [a for a, _, _ in rows]
    right = [b for _, b, _ in rows]

    _, probs = score_pairs(model, calibrator, list(zip(left, right)), batch_size=batch_size)
    clean = scores_at(probs, labels, threshold)
    result: dict[str, Any] = {
        "f1_clean": clean.f1,
        "precision": clean.precision,
        "recall": clean.recall,
        "pr_auc": pr_auc(probs, labels),
        "f1_noisy": None,
        "f1_noisy_per_seed": {},
        "precision_noisy_per_seed": {},
        "recall_noisy_per_seed": {},
        "noise": None,
        "noise_seeds": [],
        "threshold": threshold,
        "pairs": len(rows),
        "positives": int(labels.sum()),
        "split": split,
        "dataset": dataset.name,
        "fields": use_fields if isinstance(use_fields, str) else list(use_fields),
        "model": {
            "folder": folder.name,
            "path": str(folder),
            "kind": manifest.kind,
            "arch": manifest.settings.get("arch"),
            "backbone": manifest.backbone,
            "augment": manifest.settings.get("augment"),
            "seed": manifest.settings.get("seed"),
            "quantize": quantize,
        },
    }
    logger.info(
        "%s on %s/%s clean: F1 %.4f (P %.4f R %.4f)",
        folder.name,
        dataset.name,
        split,
        clean.f1,
        clean.precision,
        clean.recall,
    )
    if noise_seeds:
        f1s: list[float] = []
        for s in noise_seeds:
            noisy_left, noisy_right = noisy_copy(left, right, int(s))
            _, noisy_probs = score_pairs(model, calibrator, list(zip(noisy_left, noisy_right)), batch_size)
            noisy = scores_at(noisy_probs, labels, threshold)
            key = str(int(s))
            result["f1_noisy_per_seed"][key] = noisy.f1
            result["precision_noisy_per_seed"][key] = noisy.precision
            result["recall_noisy_per_seed"][key] = noisy.recall
            f1s.append(noisy.f1)
            logger.info("%s noisy copy %s: F1 %.4f", folder.name, key, noisy.f1)
        result["f1_noisy"] = float(np.mean(f1s))
        result["noise"] = TYPO_VERSION
        result["noise_seeds"] = [int(s) for s in noise_seeds]
    return result


__all__ = ["evaluate_matcher"]
