"""The trained cross-encoder (LEA or vanilla) as a scorer: one batched forward pass for all
candidates of an offer, calibrated probabilities, and word-pair explanations."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from app.pipeline.scoring import ScoredCandidate, closest_words
from models.devices import resolve_device
from models.lea import LeaCrossEncoder
from models.matcher_io import load_matcher, score_pairs
from models.product_text import serialize_product
from models.quantize import QUANTIZE_MODES
from models.serving_precision import resolve_serving_precision, serve_cross_encoder

logger = logging.getLogger(__name__)


def cut_for_precision(
    thresholds: Mapping[str, float | None],
    stats: Mapping[str, Any],
    target: float,
    min_recall: float,
) -> float | None:
    """The lowest stored precision target >= ``target`` whose validation recall is >= ``min_recall``.

    ``thresholds``: precision target (as a string) -> cut; ``stats``: the same keys -> the
    validation numbers at that cut (``recall``). Shared by plain matchers and the default
    matcher's head, which store their cuts the same way.
    """
    found = sorted((float(p), t) for p, t in thresholds.items() if t is not None and float(p) >= target)
    for precision, threshold in found:
        recall = (stats.get(str(precision)) or stats.get(f"{precision:g}") or {}).get("recall")
        if recall is None or recall >= min_recall:
            return float(threshold)
    return None


class CrossEncoderScorer:
    """A matcher folder scoring in ``precision`` (auto / bf16 / fp32 / int8, resolved for the
    device); ``None`` keeps the precision its calibration was fitted in (fp32 where bf16 is
    not native). ``quantize="int8"`` is the older spelling of ``precision="int8"``."""

    def __init__(
        self,
        version: str,
        folder: str,
        batch_size: int = 64,
        quantize: str = "none",
        device: str = "cpu",
        precision: str | None = None,
    ) -> None:
        if quantize not in QUANTIZE_MODES:
            raise ValueError(f"quantize must be one of {QUANTIZE_MODES}, got {quantize!r}")
        if quantize == "int8":
            if precision not in (None, "int8"):
                raise ValueError(f"quantize={quantize!r} contradicts precision={precision!r}")
            precision = "int8"
        target = resolve_device(device)
        resolved = None if precision is None else resolve_serving_precision(precision, target)
        self.model, self.calibrator, self.calibration, self.manifest = load_matcher(folder)
        self.model.to(target)
        calibrated = str(self.manifest.settings.get("precision") or "fp32")
        if resolved is not None:
            # The calibrator and thresholds were fitted on logits of the training precision;
            # benchmarks/bench_encoder.py measures how far bf16 and int8 move F1 at them.
            serve_cross_encoder(self.model, resolved)
            if resolved != calibrated:
                logger.info("matcher %s was calibrated in %s and serves in %s", version, calibrated, resolved)
        self.model.eval()
        self.precision = "int8" if resolved == "int8" else self.model.precision
        self.quantize = "int8" if self.precision == "int8" else "none"
        self.name = version
        self.fields = self.calibration.get("fields") or self.manifest.settings.get("fields", "title")
        self.batch_size = batch_size
        self._lock = threading.Lock()

    def threshold_for_precision(self, target: float, min_recall: float = 0.1) -> float | None:
        """The validation threshold that reached `target` precision, if it kept useful recall.

        A precision target met by a handful of top-scoring validation pairs says nothing about
        new data, so it needs at least `min_recall` of the positives above it.
        """
        table = self.calibration.get("thresholds_for_precision") or {}
        stats = (self.calibration.get("valid") or {}).get("for_precision") or {}
        return cut_for_precision(table, stats, target, min_recall)

    def score(
        self,
        offer: Mapping[str, Any],
        candidates: Sequence[Mapping[str, Any]],
        cosines: Sequence[float],
        explain: bool = False,
    ) -> list[ScoredCandidate]:
        if not candidates:
            return []
        offer_text = serialize_product(offer, self.fields)
        pairs = [(offer_text, serialize_product(c, self.fields)) for c in candidates]
        with self._lock:  # one forward at a time: two would only fight over the same cores
            _, probs = score_pairs(self.model, self.calibrator, pairs, batch_size=self.batch_size)
            explanations = [explain_pair(self.model, p) for p in pairs] if explain else [None] * len(pairs)

        return [
            ScoredCandidate(score=round(float(p), 6), lexical=None, explanation=e) for p, e in zip(probs, explanations)
        ]


def explain_pair(model: LeaCrossEncoder, pair: tuple[str, str]) -> list[dict[str, Any]]:
    """The word pairs that drove the lexical bias of one (offer, product) text pair, strongest first."""
    if getattr(model, "lex", None) is None:
        return closest_words(*pair)  # a vanilla cross-encoder has no lexical bias to show
    out = []
    for item in model.explain(pair, top=5):
        word_a, word_b, similarity, bias = item[0], item[1], item[2], item[3]
        out.append(
            {
                "offer_word": str(word_a),
                "product_word": str(word_b),
                "similarity": round(float(similarity), 4),
                "weight": None if bias is None else round(float(bias), 6),
            }
        )
    return out
