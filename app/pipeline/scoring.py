"""Candidate scorers and the decision rule: swappable stages of the match pipeline."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from rapidfuzz import fuzz, process, utils
from rapidfuzz.distance import Levenshtein

from models.product_text import embed_text

MATCH, REVIEW, NO_MATCH = "match", "review", "no_match"


@dataclass(frozen=True)
class ScoredCandidate:
    score: float
    lexical: float | None = None
    explanation: list[dict[str, Any]] | None = field(default=None, compare=False)


class Scorer(Protocol):
    """Scores (offer, candidate) pairs; higher means more likely the same product."""

    name: str

    def score(
        self,
        offer: Mapping[str, Any],
        candidates: Sequence[Mapping[str, Any]],
        cosines: Sequence[float],
        explain: bool = False,
    ) -> list[ScoredCandidate]: ...


class ZeroShotScorer:
    """Cosine of the bi-encoder blended with rapidfuzz's token_set_ratio.

    The two fail differently: embeddings forgive paraphrase but blur model numbers, while the
    lexical score is strict about tokens like "wh-1000xm4". A blend is the strongest cheap
    scorer until a trained cross-encoder is registered.
    """

    name = "zero-shot-cosine-lexical"

    def __init__(self, lexical_weight: float = 0.3) -> None:
        self.lexical_weight = lexical_weight

    def score(
        self,
        offer: Mapping[str, Any],
        candidates: Sequence[Mapping[str, Any]],
        cosines: Sequence[float],
        explain: bool = False,
    ) -> list[ScoredCandidate]:
        out: list[ScoredCandidate] = []
        w = self.lexical_weight
        offer_text = embed_text(offer)
        for candidate, cos in zip(candidates, cosines):
            text = embed_text(candidate)
            lexical = fuzz.token_set_ratio(offer_text, text, processor=utils.default_process) / 100.0
            blended = (1.0 - w) * max(0.0, min(1.0, float(cos))) + w * lexical
            explanation = closest_words(offer_text, text) if explain else None
            out.append(ScoredCandidate(score=round(blended, 6), lexical=round(lexical, 6), explanation=explanation))
        return out


def closest_words(offer_text: str, product_text: str, top: int = 5) -> list[dict[str, Any]]:
    """For each offer word its most similar product word (normalised Levenshtein), best first."""
    a = utils.default_process(offer_text).split()
    b = utils.default_process(product_text).split()
    if not a or not b:
        return []
    sims = process.cdist(a, b, scorer=Levenshtein.normalized_similarity)
    best = sims.argmax(axis=1)
    pairs = sorted(((a[i], b[j], float(sims[i, j])) for i, j in enumerate(best)), key=lambda p: (-p[2], p[0]))
    return [{"offer_word": wa, "product_word": wb, "similarity": round(sim, 4)} for wa, wb, sim in pairs[:top]]


@dataclass(frozen=True)
class Decider:
    match_threshold: float
    review_threshold: float

    def decide(self, top_score: float | None) -> str:
        if top_score is None:
            return NO_MATCH
        if top_score >= self.match_threshold:
            return MATCH
        if top_score >= self.review_threshold:
            return REVIEW
        return NO_MATCH
