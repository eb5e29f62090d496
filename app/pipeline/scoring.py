"""Candidate scorers and the decision rule: swappable stages of the match pipeline."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from rapidfuzz import fuzz, utils

MATCH, REVIEW, NO_MATCH = "match", "review", "no_match"


@dataclass(frozen=True)
class ScoredCandidate:
    score: float
    lexical: float | None = None


class Scorer(Protocol):
    """Scores (offer, candidate) pairs; higher means more likely the same product."""

    name: str

    def score(
        self, offer_text: str, candidate_texts: Sequence[str], cosines: Sequence[float]
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
        self, offer_text: str, candidate_texts: Sequence[str], cosines: Sequence[float]
    ) -> list[ScoredCandidate]:
        out: list[ScoredCandidate] = []
        w = self.lexical_weight
        for text, cos in zip(candidate_texts, cosines):
            lexical = fuzz.token_set_ratio(offer_text, text, processor=utils.default_process) / 100.0
            blended = (1.0 - w) * max(0.0, min(1.0, float(cos))) + w * lexical
            out.append(ScoredCandidate(score=round(blended, 6), lexical=round(lexical, 6)))
        return out


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
