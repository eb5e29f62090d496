"""Candidate scorers and the decision rule: swappable stages of the match pipeline."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from rapidfuzz import fuzz, process, utils
from rapidfuzz.distance import Levenshtein

from models.pair_signals import CONFLICT as CONFLICTING_IDENTIFIERS
from models.pair_signals import MATCH as MATCH_IDENTIFIERS
from models.pair_signals import pair_signals
from models.product_text import embed_text

MATCH, REVIEW, NO_MATCH = "match", "review", "no_match"

# Defaults of the zero-shot blend, chosen on the validation splits of Abt-Buy, Amazon-Google and
# WDC Products (benchmarks/bench_zero_shot.py, docs/benchmarks.md).
DEFAULT_BETA = 2.0
DEFAULT_IDENTIFIER_BONUS = 0.1
DEFAULT_IDENTIFIER_PENALTY = 0.3


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


LexicalKind = Literal["signals", "token_set"]


class ZeroShotScorer:
    """Cosine of the bi-encoder blended with a lexical score and model-number agreement.

    The two fail differently: embeddings forgive paraphrase but blur model numbers, while the
    lexical score is strict about tokens like "wh-1000xm4". The score is

        (1 - w) * cosine + w * lexical + bonus * [identifiers agree] - penalty * [identifiers conflict]

    clipped to [0, 1]. ``lexical`` is the soft F-beta of the two sides' token coverages
    (:mod:`models.pair_signals`): the share of the offer's tokens the product has and the share of
    the product's tokens the offer has, model numbers weighing most. It is below 1.0 whenever one
    side says something the other does not, so "sony wh-1000xm5 black" prefers the black product
    over a colourless one and the bare offer "sony" stays far from any long title. ``beta`` > 1
    weighs the offer's side more: terse offers leave out product-type words that catalogue titles
    carry, while a word the offer adds (a colour, a capacity) names a variant. The identifier
    terms apply only when both sides name model numbers.

    ``lexical="token_set"`` is rapidfuzz's ``token_set_ratio`` with no identifier terms, the
    scorer served before, kept so benchmarks can compare the two; it is 1.0 whenever one title's
    words are a subset of the other's.
    """

    name = "zero-shot-cosine-lexical"

    def __init__(
        self,
        lexical_weight: float = 0.3,
        lexical: LexicalKind = "signals",
        beta: float = DEFAULT_BETA,
        identifier_bonus: float = DEFAULT_IDENTIFIER_BONUS,
        identifier_penalty: float = DEFAULT_IDENTIFIER_PENALTY,
    ) -> None:
        if lexical not in ("signals", "token_set"):
            raise ValueError(f"lexical must be 'signals' or 'token_set', not {lexical!r}")
        self.lexical_weight = lexical_weight
        self.lexical = lexical
        self.beta = beta
        self.identifier_bonus = identifier_bonus
        self.identifier_penalty = identifier_penalty

    def pair_score(self, offer: Mapping[str, Any], candidate: Mapping[str, Any], cosine: float) -> tuple[float, float]:
        """``(score, lexical)`` of one pair."""
        cos = max(0.0, min(1.0, float(cosine)))
        w = self.lexical_weight
        if self.lexical == "token_set":
            lexical = fuzz.token_set_ratio(embed_text(offer), embed_text(candidate), processor=utils.default_process)
            lexical /= 100.0
            return (1.0 - w) * cos + w * lexical, lexical
        signals = pair_signals(offer, candidate)
        lexical = signals.f_beta(self.beta)
        score = (1.0 - w) * cos + w * lexical
        if signals.identifier == MATCH_IDENTIFIERS:
            score += self.identifier_bonus
        elif signals.identifier == CONFLICTING_IDENTIFIERS:
            score -= self.identifier_penalty
        return max(0.0, min(1.0, score)), lexical

    def score(
        self,
        offer: Mapping[str, Any],
        candidates: Sequence[Mapping[str, Any]],
        cosines: Sequence[float],
        explain: bool = False,
    ) -> list[ScoredCandidate]:
        out: list[ScoredCandidate] = []
        offer_text = embed_text(offer) if explain else ""
        for candidate, cos in zip(candidates, cosines):
            blended, lexical = self.pair_score(offer, candidate, cos)
            explanation = closest_words(offer_text, embed_text(candidate)) if explain else None
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
