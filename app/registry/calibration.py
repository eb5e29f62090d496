"""Per-catalogue calibration of the serving scorer: refit on the catalogue's labelled pairs, store
it, and give every process the decider of the active one.

A calibration belongs to one scorer identity (:func:`scorer_key`): a trained matcher's version,
or the zero-shot blend's name with a hash of what moves its scores (the bi-encoder behind its
cosines and its settings). Promoting another matcher or encoder therefore leaves the stored
thresholds behind instead of applying them to scores they were not fitted on; rolling back
finds them again.

The fit itself is :mod:`app.pipeline.calibration`; the rows are :mod:`app.db.calibrations`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from app.core.config import Settings
from app.db import calibrations
from app.db import products as product_repo
from app.db.labels import effective_labels
from app.db.tables import Calibration, LabeledPair, Product
from app.pipeline.calibration import CalibratedDecider, UnfittableLabels, fit_catalogue, own_decider
from app.pipeline.encoder import Encoder
from app.pipeline.match import product_mapping
from app.pipeline.scoring import Decider, Scorer, ZeroShotScorer
from models.product_text import embed_text

logger = logging.getLogger(__name__)


class CalibrationRefused(ValueError):
    """The catalogue's labels cannot support a refit (too few, or one class): the API says 409."""


def scorer_key(scorer: Scorer, encoder_id: str) -> str:
    """The identity a calibration is stored under.

    A trained matcher scores pairs alone: its version is its identity. The zero-shot blend's
    scores also depend on the bi-encoder's cosines and on its own settings (the lexical
    weight), so those are hashed into its key.
    """
    if not isinstance(scorer, ZeroShotScorer):
        return f"matcher:{scorer.name}"[:255]
    params = {k: v for k, v in sorted(vars(scorer).items()) if not k.startswith("_") and _is_scalar(v)}
    blob = json.dumps({"scorer": scorer.name, "encoder": encoder_id, "params": params}, sort_keys=True)
    return f"{scorer.name}@{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def _is_scalar(value: object) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def decider_for(factory: sessionmaker[Session], scorer: Scorer, encoder_id: str, own: Decider) -> Decider:
    """The active calibration's decider for this scorer, else the scorer's own ``own``."""
    row = calibrations.active(factory, scorer_key(scorer, encoder_id))
    if row is None:
        return own
    return CalibratedDecider(row.match_threshold, row.review_threshold, calibration_id=row.id, own=own)


# -- scoring the labelled pairs ----------------------------------------------------------------


@dataclass(frozen=True)
class LabelledScores:
    scores: np.ndarray
    labels: np.ndarray
    skipped: int  # labels whose product has left the catalogue
    labels_through: int  # the newest label id among them


def usable_labels(factory: sessionmaker[Session], limit: int) -> tuple[list[LabeledPair], dict[str, Product], int]:
    """The latest label of each pair whose product still exists (the newest ``limit``), the
    products by external id, and how many labels were skipped for a missing product."""
    rows = sorted(effective_labels(factory), key=lambda r: r.id)
    with factory() as session:
        products = product_repo.by_external_ids(session, {r.product_external_id for r in rows})
    kept = [r for r in rows if r.product_external_id in products]
    return kept[-limit:], products, len(rows) - len(kept)


def score_pairs(
    factory: sessionmaker[Session],
    scorer: Scorer,
    encoder: Encoder,
    rows: Sequence[LabeledPair],
    products: dict[str, Product],
) -> np.ndarray:
    """The serving scorer's score of each labelled (offer, product) pair, as ``/v1/match`` would
    give it: the offer embedded as a query, the product's stored vector (embedded now if it has
    none yet), one scorer call per offer with all its labelled products."""
    wanted = {products[r.product_external_id].id: products[r.product_external_id] for r in rows}
    with factory() as session:
        stored = product_repo.vectors_for(session, sorted(wanted), encoder.model_id)
    vectors = {pid: vec for pid, (vec, _, _) in stored.items()}
    missing = [p for pid, p in wanted.items() if pid not in vectors]
    if missing:
        encoded = encoder.encode([embed_text({"title": p.title, "brand": p.brand}) for p in missing])
        vectors.update({p.id: encoded[i] for i, p in enumerate(missing)})

    groups: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault(json.dumps(row.offer, sort_keys=True, default=str), []).append(i)
    offers: list[dict[str, Any]] = [rows[members[0]].offer for members in groups.values()]
    offer_vectors = encoder.encode([embed_text(o) for o in offers])
    scores = np.zeros(len(rows), dtype=np.float64)
    for offer, vector, members in zip(offers, offer_vectors, groups.values()):
        items = [products[rows[i].product_external_id] for i in members]
        cosines = [float(np.dot(vector, vectors[p.id])) for p in items]
        scored = scorer.score(offer, [product_mapping(p) for p in items], cosines)
        for i, result in zip(members, scored):
            scores[i] = result.score
    return scores


# -- the refit ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RefitOptions:
    target_precision: float
    review_probability: float
    method: str = "auto"

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        target_precision: float | None = None,
        review_probability: float | None = None,
        method: str = "auto",
    ) -> RefitOptions:
        """The request's choices, the settings' defaults for what it leaves out."""
        return cls(
            target_precision=settings.match_precision if target_precision is None else target_precision,
            review_probability=(
                settings.calibration_review_probability if review_probability is None else review_probability
            ),
            method=method,
        )


def refit(
    settings: Settings,
    factory: sessionmaker[Session],
    scorer: Scorer,
    encoder: Encoder,
    decider: Decider,
    options: RefitOptions,
) -> Calibration:
    """Refit the serving scorer's thresholds on the catalogue's labels and store them as its
    active calibration. Raises :class:`CalibrationRefused` for too few labels or one class."""
    newest = calibrations.newest_label_id(factory)
    rows, products, skipped = usable_labels(factory, settings.calibration_max_labels)
    need = settings.calibration_min_labels
    if len(rows) < need:
        gone = f" ({skipped} more label a product no longer in the catalogue)" if skipped else ""
        raise CalibrationRefused(
            f"{len(rows)} labelled pairs of catalogue products{gone}; a calibration needs at least {need}"
            " (CALIBRATION_MIN_LABELS): label more review items through POST /v1/feedback"
        )
    labels = np.array([1.0 if r.label == 1 else 0.0 for r in rows])
    if labels.min() == labels.max():
        only = "match" if labels[0] == 1 else "no_match"
        raise CalibrationRefused(
            f"all {len(rows)} labels are {only!r}: a calibration needs labels of both classes"
            " (label some review items the other way)"
        )
    scores = score_pairs(factory, scorer, encoder, rows, products)
    own = own_decider(decider)
    try:
        fit = fit_catalogue(scores, labels, options.target_precision, options.review_probability, own, options.method)
    except UnfittableLabels as exc:
        raise CalibrationRefused(str(exc)) from exc
    choice = fit.choice
    measured = "n/a"
    if choice is not None:
        measured = f"{choice.precision:.3f} [{choice.precision_low:.3f}, {choice.precision_high:.3f}]"
    key = scorer_key(scorer, encoder.model_id)
    row = calibrations.store(
        factory,
        {
            "scorer_key": key,
            "scorer": scorer.name[:255],
            "method": fit.method,
            "calibrator": fit.calibrator.to_dict(),
            "target_precision": options.target_precision,
            "target_reached": fit.target_reached,
            "review_probability": options.review_probability,
            "match_threshold": fit.match_threshold,
            "review_threshold": fit.review_threshold,
            "own_match_threshold": own.match_threshold,
            "own_review_threshold": own.review_threshold,
            "n_labels": len(rows),
            "n_positive": fit.n_positive,
            "n_negative": fit.n_negative,
            "n_skipped": skipped,
            "n_accepted": choice.n_accepted if choice else 0,
            "precision": choice.precision if choice else None,
            "precision_low": choice.precision_low if choice else None,
            "precision_high": choice.precision_high if choice else None,
            "recall": choice.recall if choice else None,
            "match_probability": fit.match_probability,
            "labels_through": max([newest, *(r.id for r in rows)]),
        },
    )
    logger.info(
        "calibration %d for %s on %d labels (%d match): %s, match >= %.4f, review >= %.4f, precision %s",
        row.id,
        key,
        len(rows),
        fit.n_positive,
        fit.method,
        fit.match_threshold,
        fit.review_threshold,
        measured,
    )
    return row


def current(factory: sessionmaker[Session], scorer: Scorer, encoder_id: str) -> Calibration | None:
    return calibrations.active(factory, scorer_key(scorer, encoder_id))


def revert(factory: sessionmaker[Session], scorer: Scorer, encoder_id: str) -> int:
    """Retire the serving scorer's active calibration: its own thresholds decide again."""
    return calibrations.retire(factory, scorer_key(scorer, encoder_id))


def labels_since_last_fit(factory: sessionmaker[Session], scorer: Scorer, encoder_id: str) -> int:
    """Labels stored after the newest label the scorer's latest calibration saw (all if never fitted)."""
    return calibrations.labels_after(factory, calibrations.labels_through(factory, scorer_key(scorer, encoder_id)))
