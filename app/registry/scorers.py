"""Which scorer serves: the active trained matcher with its precision-targeted thresholds, else
the zero-shot blend; and which thresholds decide: the scorer's active catalogue calibration
(`app/registry/calibration.py`) when one is stored, else the scorer's own. One rule for the API
and for bulk match jobs."""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session, sessionmaker

from app.core.config import Settings
from app.db import model_versions
from app.pipeline.scoring import Decider, Scorer, ZeroShotScorer
from app.registry.calibration import decider_for

logger = logging.getLogger(__name__)


def serving_scorer(settings: Settings, factory: sessionmaker[Session], encoder_id: str) -> tuple[Scorer, Decider]:
    """The serving scorer and its decider; ``encoder_id`` is the bi-encoder whose cosines it
    gets (part of the zero-shot scorer's calibration identity)."""
    scorer, own = _scorer_and_own_thresholds(settings, factory)
    return scorer, decider_for(factory, scorer, encoder_id, own)


def _scorer_and_own_thresholds(settings: Settings, factory: sessionmaker[Session]) -> tuple[Scorer, Decider]:
    row = model_versions.active(factory, "matcher")
    if row is None:
        return ZeroShotScorer(settings.lexical_weight), Decider(settings.match_threshold, settings.review_threshold)
    from app.pipeline.rerank import CrossEncoderScorer

    scorer = CrossEncoderScorer(row.version, row.path, device=settings.device, precision=settings.matcher_precision)
    match_at = scorer.threshold_for_precision(settings.match_precision)
    if match_at is None:
        match_at = float(scorer.calibration.get("threshold", 0.5))
        logger.warning(
            "matcher %s never reached precision %.2f; using its best-F1 threshold",
            row.version,
            settings.match_precision,
        )
    return scorer, Decider(match_at, min(match_at, settings.matcher_review_probability))
