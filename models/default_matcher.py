"""Load the default matcher folder (``productmatch train default``) and score an offer's candidates.

The folder is a matcher folder (``models.matcher_io``: bf16 safetensors, ``lea_config.json``,
``calibration.json`` for the cross-encoder alone, ``manifest.json`` of kind ``matcher``) plus
``head.json`` (:class:`models.match_head.MatchHead`) and ``MODEL_CARD.md``. So the plain
:func:`~models.matcher_io.load_matcher` serves it as a cross-encoder, and
:func:`load_default_matcher` adds the head: cross-encoder logit + bi-encoder cosine + pair
signals (+ margin) -> one calibrated probability per candidate::

    matcher = load_default_matcher(folder)
    probs = matcher.score(offer, candidates)          # mappings with title, brand, price ...
    is_match = probs >= matcher.threshold

The bi-encoder is the one the head was fitted with (``head.json``: the packaged ``minilm`` or a
sub-folder of the artefact), so the cosine means what it meant at fitting time whatever blocker
the service runs.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.artefacts import Manifest
from models.bi_encoder import BiEncoder
from models.calibration import Calibrator
from models.lea import LeaCrossEncoder
from models.match_head import (
    HEAD_FILE,
    MatchHead,
    SignalFn,
    candidate_margins,
    feature_matrix,
    signal_rows,
    signal_set,
)
from models.matcher_io import load_matcher
from models.product_text import embed_text, serialize_product

logger = logging.getLogger(__name__)

MODEL_CARD = "MODEL_CARD.md"


@dataclass(frozen=True)
class PairScores:
    """Every stage's numbers for a list of pairs, in input order."""

    logits: np.ndarray
    cosines: np.ndarray
    features: np.ndarray
    probabilities: np.ndarray


class DefaultMatcher:
    """The cross-encoder, its bi-encoder and the calibrated head; one lock around the models
    (their collators and caches are not thread-safe). Without a bi-encoder (``None``) every call
    must bring the cosines."""

    def __init__(
        self,
        model: LeaCrossEncoder,
        head: MatchHead,
        bi_encoder: BiEncoder | None,
        fields: Sequence[str],
        signals: SignalFn | None,
        manifest: Manifest,
        calibrator: Calibrator | None = None,
        batch_size: int = 64,
    ) -> None:
        if head.n_signals and signals is None:
            raise ValueError(f"the head expects {head.n_signals} pair signals ({head.signals}) but none were given")
        self.model = model
        self.head = head
        self.bi_encoder = bi_encoder
        self.fields = list(fields)
        self.signals = signals
        self.manifest = manifest
        self.calibrator = calibrator
        self.batch_size = batch_size
        self._lock = threading.Lock()

    @property
    def threshold(self) -> float:
        """The best-F1 cut of the pooled validation (match iff probability >= threshold)."""
        return self.head.threshold

    def threshold_for_precision(self, target: float) -> float | None:
        """The lowest cut whose precision envelope reached ``target`` on validation, if any."""
        table = self.head.thresholds_for_precision
        found = sorted((float(p), t) for p, t in table.items() if t is not None and float(p) >= target)
        return float(found[0][1]) if found else None

    def score(
        self,
        offer: Mapping[str, Any],
        candidates: Sequence[Mapping[str, Any]],
        cosines: Sequence[float] | None = None,
    ) -> np.ndarray:
        """Calibrated match probabilities of ``offer`` against each candidate (float64, in order).

        ``cosines``: the bi-encoder cosines when the caller already has them *from this
        matcher's bi-encoder*; otherwise they are computed here.
        """
        if not candidates:
            return np.zeros(0, dtype=np.float64)
        return self.score_pairs([offer] * len(candidates), candidates, cosines=cosines).probabilities

    def score_pairs(
        self,
        lefts: Sequence[Mapping[str, Any]],
        rights: Sequence[Mapping[str, Any]],
        groups: Sequence[Hashable] | None = None,
        cosines: Sequence[float] | None = None,
    ) -> PairScores:
        """Score pairs of product mappings; ``groups`` names each pair's offer, for the margin
        (default: all pairs are one offer's candidate list)."""
        if len(lefts) != len(rights):
            raise ValueError(f"{len(lefts)} left and {len(rights)} right products")
        texts = [(serialize_product(a, self.fields), serialize_product(b, self.fields)) for a, b in zip(lefts, rights)]
        with self._lock:
            logits = self.model.predict_logits(texts, batch_size=self.batch_size).astype(np.float64)
            cos = np.asarray(cosines, dtype=np.float64) if cosines is not None else self._cosines(lefts, rights)
        signals = signal_rows(self.signals, lefts, rights, self.head.n_signals)
        margins = candidate_margins(logits, groups) if self.head.margin else None
        features = feature_matrix(logits, cos, signals, margins)
        return PairScores(logits, cos, features, self.head.apply(features))

    def _cosines(self, lefts: Sequence[Mapping[str, Any]], rights: Sequence[Mapping[str, Any]]) -> np.ndarray:
        if self.bi_encoder is None:
            raise ValueError("this matcher was loaded without its bi-encoder: pass the cosines")
        # An offer is usually the same mapping for all its candidates: embed each distinct text once.
        texts = [embed_text(p) for p in lefts] + [embed_text(p) for p in rights]
        unique = sorted(set(texts))
        vectors = self.bi_encoder.encode(unique, batch_size=self.batch_size)
        row = {t: i for i, t in enumerate(unique)}
        n = len(lefts)
        a = vectors[[row[t] for t in texts[:n]]]
        b = vectors[[row[t] for t in texts[n:]]]
        return np.einsum("ij,ij->i", a, b).astype(np.float64)


def load_head(folder: str | Path) -> MatchHead:
    path = Path(folder) / HEAD_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{folder} has no {HEAD_FILE}: not a default-matcher folder")
    return MatchHead.from_dict(json.loads(path.read_text(encoding="utf-8")))


def load_bi_encoder(folder: str | Path, head: MatchHead) -> BiEncoder:
    """The head's bi-encoder: a sub-folder of the artefact if it names one, else a packaged backbone."""
    inside = Path(folder) / head.bi_encoder
    name = str(inside) if (inside / "config.json").is_file() else head.bi_encoder
    return BiEncoder.from_pretrained(name, max_length=head.bi_encoder_max_length)


def load_default_matcher(
    folder: str | Path,
    *,
    bi_encoder: BiEncoder | None = None,
    signals: SignalFn | None = None,
    with_bi_encoder: bool = True,
) -> DefaultMatcher:
    """The scorer of a default-matcher folder; ``signals`` replaces the head's named signal set
    (needed for a set that is not built in), ``bi_encoder`` the bi-encoder it names.
    ``with_bi_encoder=False`` loads none, for a caller that always passes the cosines (the
    service, whose own blocker is the head's bi-encoder)."""
    folder = Path(folder)
    head = load_head(folder)
    model, calibrator, calibration, manifest = load_matcher(folder)
    if signals is None and head.n_signals:
        signals, names = signal_set(head.signals)
        expected = head.feature_names[2 : 2 + head.n_signals]
        if tuple(names) != tuple(expected):
            raise ValueError(f"{folder}: head signals {expected} differ from {head.signals}'s {names}")
    encoder = bi_encoder if bi_encoder is not None or not with_bi_encoder else load_bi_encoder(folder, head)
    if encoder is not None:
        encoder.precision = model.precision
    fields = calibration.get("fields")
    if not isinstance(fields, list):
        raise ValueError(f"{folder}: calibration fields must be a list of service fields, got {fields!r}")
    logger.info("loaded default matcher %s (%d head features, threshold %.4f)", folder, len(head.feature_names),
                head.threshold)  # fmt: skip
    return DefaultMatcher(model, head, encoder, fields, signals, manifest, calibrator)


__all__ = ["MODEL_CARD", "DefaultMatcher", "PairScores", "load_bi_encoder", "load_default_matcher", "load_head"]
