"""A default-matcher folder (``productmatch train default``) as a scorer: the cross-encoder's
logit, the bi-encoder cosine, the pair signals and, if the head was fitted with it, the margin
over the offer's other candidates, combined by the folder's calibrated head
(:mod:`models.default_matcher`). The score is the head's probability; explanations are the
cross-encoder's LEA word pairs, as for a plain matcher."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from app.pipeline.rerank import cut_for_precision, explain_pair
from app.pipeline.scoring import ScoredCandidate
from models.default_matcher import load_default_matcher
from models.devices import resolve_device
from models.product_text import serialize_product
from models.serving_precision import resolve_serving_precision, serve_bi_encoder, serve_cross_encoder

logger = logging.getLogger(__name__)


class HeadScorer:
    """The head's calibrated probability for each (offer, candidate) pair.

    ``precision`` (auto / bf16 / fp32 / int8, resolved for the device) applies to the
    cross-encoder and to the head's own bi-encoder; ``None`` keeps the precision the head was
    fitted in. ``pipeline_cosines``: the cosines the pipeline passes come from the very
    bi-encoder the head was fitted with (the packaged blocker), so the folder's bi-encoder is not
    loaded and the retrieval cosines are the head's cosine feature; otherwise the head's own
    bi-encoder embeds the offer and its candidates.

    The margin feature is computed over the candidate list of each call: the list the pipeline
    retrieved for the offer, as the head saw each offer's candidates when it was fitted.
    """

    def __init__(
        self,
        version: str,
        folder: str,
        device: str = "cpu",
        precision: str | None = None,
        pipeline_cosines: bool = False,
    ) -> None:
        target = resolve_device(device)
        resolved = None if precision is None else resolve_serving_precision(precision, target)
        self.matcher = load_default_matcher(folder, with_bi_encoder=not pipeline_cosines)
        self.matcher.model.to(target)
        calibrated = str(self.matcher.manifest.settings.get("precision") or "fp32")
        if resolved is not None:
            # The head and its thresholds were fitted on logits and cosines of the training
            # precision; bf16 and int8 move them slightly (benchmarks/bench_encoder.py).
            serve_cross_encoder(self.matcher.model, resolved)
            if self.matcher.bi_encoder is not None:
                self.matcher.bi_encoder = serve_bi_encoder(self.matcher.bi_encoder, resolved, device=target)
            if resolved != calibrated:
                logger.info("default matcher %s was fitted in %s and serves in %s", version, calibrated, resolved)
        if self.matcher.bi_encoder is not None:
            self.matcher.bi_encoder.to(target)
        self.matcher.model.eval()
        self.precision = "int8" if resolved == "int8" else self.matcher.model.precision
        self.quantize = "int8" if self.precision == "int8" else "none"
        self.name = version
        self.head = self.matcher.head
        self.fields = self.matcher.fields
        self.pipeline_cosines = pipeline_cosines
        self._lock = threading.Lock()
        logger.info(
            "serving default matcher %s with its head (%d features, margin %s) in %s, cosines from %s",
            version,
            len(self.head.feature_names),
            self.head.margin,
            self.precision,
            "the pipeline's blocker" if pipeline_cosines else "its own bi-encoder",
        )

    @property
    def threshold(self) -> float:
        """The head's best-F1 cut on its cross-fitted validation probabilities."""
        return float(self.head.threshold)

    def threshold_for_precision(self, target: float, min_recall: float = 0.1) -> float | None:
        """The head's cut that reached ``target`` precision on validation, if it kept useful recall.

        As for a plain matcher (:meth:`app.pipeline.rerank.CrossEncoderScorer.threshold_for_precision`),
        a target met by a handful of top-scoring pairs says nothing about new data, so the cut
        needs at least ``min_recall`` of the validation matches above it.
        """
        stats = ((self.head.valid.get("cross_fitted") or {}).get("for_precision")) or {}
        return cut_for_precision(self.head.thresholds_for_precision, stats, target, min_recall)

    def top1_threshold_for_precision(self, target: float, min_coverage: float = 0.1) -> float | None:
        """The head's cut on the *top candidate* of ranked lists that reached ``target`` precision on
        its sources' validation offers, each source scored by a head fitted without it (None when the
        head has no such cuts, or when the cut covered under ``min_coverage`` of the offers with a match)."""
        top1 = (self.head.valid.get("top1") or {}).get("for_precision") or {}
        stats = {k: {"recall": (v or {}).get("coverage")} for k, v in top1.items()}
        return cut_for_precision(self.head.top1_thresholds_for_precision, stats, target, min_coverage)

    def score(
        self,
        offer: Mapping[str, Any],
        candidates: Sequence[Mapping[str, Any]],
        cosines: Sequence[float],
        explain: bool = False,
    ) -> list[ScoredCandidate]:
        if not candidates:
            return []
        given = list(cosines) if self.pipeline_cosines else None
        if given is not None and len(given) != len(candidates):
            raise ValueError(f"{len(candidates)} candidates but {len(given)} cosines")
        with self._lock:  # one forward at a time: two would only fight over the same cores
            probs = self.matcher.score(offer, candidates, cosines=given)
            explanations: list[list[dict[str, Any]] | None] = [None] * len(candidates)
            if explain:
                offer_text = serialize_product(offer, self.fields)
                pairs = [(offer_text, serialize_product(c, self.fields)) for c in candidates]
                explanations = [explain_pair(self.matcher.model, pair) for pair in pairs]
        return [
            ScoredCandidate(score=round(float(p), 6), lexical=None, explanation=e) for p, e in zip(probs, explanations)
        ]


__all__ = ["HeadScorer"]
