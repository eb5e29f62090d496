"""The promotion gate: a new version must be at least as good as the serving one on the same
held-out split. "Serving" is the active registered version, or the packaged zero-shot model."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from app.core.config import Settings
from app.db import model_versions
from app.pipeline.scoring import ZeroShotScorer
from app.registry.scorers import serving_matcher
from app.retrain.data import BLOCKER_FIELDS
from models.bi_encoder import BiEncoder
from training.blocking_tasks import build_blocking_task
from training.data.records import PairDataset
from training.eval_matcher import evaluate_matcher
from training.evaluate import recall_from_embeddings
from training.metrics import scores_at

logger = logging.getLogger(__name__)

BLOCKER_KS = (1, 5, 10, 20)


def blocker_quality(model: BiEncoder, dataset: PairDataset, split: str = "test") -> dict[str, float]:
    """recall@k of the split's queries against every right record; ``score`` = mean over k."""
    task = build_blocking_task(dataset, split, BLOCKER_FIELDS)
    corpus = model.encode(task.corpus)
    queries = model.encode(task.queries)
    ks = [k for k in BLOCKER_KS if k <= len(task.corpus)] or [1]
    out = recall_from_embeddings(queries, corpus, task.query_targets, ks, task.query_exclude or None)
    out["score"] = float(np.mean([out[f"recall@{k}"] for k in ks]))
    return out


def serving_blocker(settings: Settings, factory: Any) -> tuple[str, BiEncoder]:
    row = model_versions.active(factory, "bi-encoder")
    if row is not None:
        return row.version, BiEncoder.from_pretrained(row.path, max_length=settings.encoder_max_length)
    return "zero-shot:" + settings.encoder, BiEncoder.from_pretrained(
        settings.encoder, max_length=settings.encoder_max_length
    )


def matcher_quality(folder: str, dataset: PairDataset, split: str = "test") -> dict[str, Any]:
    """F1 at the model's own validation threshold; ``score`` = that F1."""
    metrics = evaluate_matcher(folder, dataset, split)
    return {k: metrics[k] for k in ("f1_clean", "precision", "recall", "threshold", "pairs")} | {
        "score": float(metrics["f1_clean"])
    }


def zero_shot_matcher_quality(
    settings: Settings, encoder: BiEncoder, dataset: PairDataset, split: str = "test"
) -> dict[str, Any]:
    """The zero-shot scorer as the service runs it: cosine + lexical blend at MATCH_THRESHOLD."""
    pairs = dataset.split(split)
    offers = [{"title": p.left.fields.get("title"), "brand": p.left.fields.get("brand")} for p in pairs]
    products = [{"title": p.right.fields.get("title"), "brand": p.right.fields.get("brand")} for p in pairs]
    left = encoder.encode([p.left.fields["text"] or "" for p in pairs])
    right = encoder.encode([p.right.fields["text"] or "" for p in pairs])
    cosines = np.sum(left * right, axis=1)
    scorer = ZeroShotScorer(settings.lexical_weight)
    scores = np.asarray([scorer.score(o, [c], [float(cos)])[0].score for o, c, cos in zip(offers, products, cosines)])
    labels = np.asarray([p.label for p in pairs], dtype=np.int64)
    result = scores_at(scores, labels, settings.match_threshold)
    return {
        "f1_clean": result.f1,
        "precision": result.precision,
        "recall": result.recall,
        "threshold": settings.match_threshold,
        "pairs": len(pairs),
        "score": float(result.f1),
    }


def serving_matcher_quality(
    settings: Settings, factory: Any, dataset: PairDataset, split: str = "test"
) -> tuple[str, dict[str, Any]]:
    row = serving_matcher(settings, factory)
    if row is not None:
        return row.version, matcher_quality(row.path, dataset, split)
    _, encoder = serving_blocker(settings, factory)
    return "zero-shot-cosine-lexical", zero_shot_matcher_quality(settings, encoder, dataset, split)


def passes(new: float, current: float, tolerance: float = 1e-9) -> bool:
    return new + tolerance >= current


def compare(new: dict[str, Any], current: dict[str, Any], keys: Sequence[str] = ("score",)) -> dict[str, Any]:
    return {
        "new": new,
        "current": current,
        "passed": all(passes(float(new[k]), float(current[k])) for k in keys),
    }
