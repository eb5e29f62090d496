"""Which scorer serves, and which thresholds decide. One rule for the API and for bulk match jobs.

``SCORER=default``: the active matcher (a user's promoted model, or the shipped default matcher
that start-up registered, `app/registry/default_matcher.py`), else the zero-shot blend.
``SCORER=zero-shot``: the zero-shot blend whatever is active. An active matcher folder with a
``head.json`` (a default-matcher folder) serves its calibrated head (`app/pipeline/head_scorer.py`),
any other the plain cross-encoder (`app/pipeline/rerank.py`); both decide with the cut that
reached MATCH_PRECISION on their validation (else their best-F1 cut) and a review band from
MATCHER_REVIEW_PROBABILITY. A head decides at its cut on the top candidate of ranked lists
(`training/default_recipe/ranked.py`): the best offer-F1 one, or with HEAD_MATCH_CUT=precision the
one for MATCH_PRECISION; a head without such cuts uses its pairwise cut for HEAD_PAIR_PRECISION.
The scorer's active catalogue calibration
(`app/registry/calibration.py`), when one is stored, replaces those thresholds.
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from app.core.config import Settings
from app.db import model_versions
from app.db.tables import ModelVersion
from app.pipeline.encoder import packaged_version, untagged
from app.pipeline.scoring import Decider, Scorer, ZeroShotScorer
from app.registry.calibration import decider_for
from app.search.params import IndexParams
from models.match_head import HEAD_FILE, MatchHead

logger = logging.getLogger(__name__)


def serving_scorer(settings: Settings, factory: sessionmaker[Session], encoder_id: str) -> tuple[Scorer, Decider]:
    """The serving scorer and its decider; ``encoder_id`` is the bi-encoder whose cosines it
    gets (part of the zero-shot scorer's calibration identity)."""
    scorer, own = _scorer_and_own_thresholds(settings, factory, encoder_id)
    return scorer, decider_for(factory, scorer, encoder_id, own)


def serving_matcher(settings: Settings, factory: sessionmaker[Session]) -> ModelVersion | None:
    """The matcher version that serves: the active one unless SCORER=zero-shot."""
    if settings.scorer == "zero-shot":
        return None
    return model_versions.active(factory, "matcher")


def wanted_scorer_name(settings: Settings, factory: sessionmaker[Session]) -> str:
    """The name :func:`serving_scorer` would give its scorer now (what a runtime is compared with)."""
    row = serving_matcher(settings, factory)
    return row.version if row is not None else ZeroShotScorer.name


def is_default_matcher_folder(folder: str | Path) -> bool:
    return (Path(folder) / HEAD_FILE).is_file()


def pipeline_cosines_fit(settings: Settings, head: MatchHead, encoder_id: str) -> bool:
    """Whether the pipeline's retrieval cosines are the head's cosine feature.

    True when the serving blocker is the packaged bi-encoder the head was fitted with, at the
    same maximum length, and the index returns exact inner products (the served IVF-PQ re-ranks
    its hits on the exact vectors; unrefined, it would return approximations).
    """
    return (
        untagged(encoder_id) == packaged_version(head.bi_encoder)
        and head.bi_encoder_max_length == settings.encoder_max_length
        and IndexParams(kind=settings.index_kind).exact_scores
    )


def _scorer_and_own_thresholds(
    settings: Settings, factory: sessionmaker[Session], encoder_id: str
) -> tuple[Scorer, Decider]:
    row = serving_matcher(settings, factory)
    if row is None:
        if settings.scorer == "zero-shot" and (active := model_versions.active(factory, "matcher")) is not None:
            logger.info("SCORER=zero-shot: the active matcher %s is not served", active.version)
        return ZeroShotScorer(settings.lexical_weight), Decider(settings.match_threshold, settings.review_threshold)
    if is_default_matcher_folder(row.path):
        from app.pipeline.head_scorer import HeadScorer
        from models.default_matcher import load_head

        head = HeadScorer(
            row.version,
            row.path,
            device=settings.device,
            precision=settings.matcher_precision,
            pipeline_cosines=pipeline_cosines_fit(settings, load_head(row.path), encoder_id),
        )
        if head.head.top1_threshold is not None:
            best = head.head.top1_threshold
            match_at = (
                best if settings.head_match_cut == "f1" else head.top1_threshold_for_precision(settings.match_precision)
            )
            return head, _own_decider(settings, head.name, match_at, best, settings.match_precision)
        # A head fitted before ranked lists: its cuts are pairwise, and HEAD_PAIR_PRECISION says which.
        match_at = head.threshold_for_precision(settings.head_pair_precision)
        return head, _own_decider(settings, head.name, match_at, head.threshold, settings.head_pair_precision)
    from app.pipeline.rerank import CrossEncoderScorer

    scorer = CrossEncoderScorer(row.version, row.path, device=settings.device, precision=settings.matcher_precision)
    match_at = scorer.threshold_for_precision(settings.match_precision)
    best_f1 = float(scorer.calibration.get("threshold", 0.5))
    return scorer, _own_decider(settings, row.version, match_at, best_f1, settings.match_precision)


def _own_decider(settings: Settings, version: str, match_at: float | None, best_f1: float, target: float) -> Decider:
    """Match at the precision-targeted cut (else the best-F1 one), review from MATCHER_REVIEW_PROBABILITY."""
    if match_at is None:
        match_at = best_f1
        logger.warning("matcher %s never reached precision %.2f; using its best-F1 threshold", version, target)
    return Decider(match_at, min(match_at, settings.matcher_review_probability))
