"""Match request and response payloads."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints, field_validator

from app.schemas.common import STRIP, RequestModel
from app.schemas.product import MAX_SHORT_CHARS, OfferIn

MAX_TOP_K = 100
MAX_BATCH_SCHEMA = 1000


FilterText = Annotated[str, StringConstraints(min_length=1, max_length=MAX_SHORT_CHARS), STRIP]


class MatchFilters(RequestModel):
    """A blank filter is refused (leave it out, or send null, to filter nothing).

    The limits apply to the value as sent; surrounding whitespace is stripped afterwards.
    """

    brand: FilterText | None = None
    category: FilterText | None = None

    @field_validator("brand", "category")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value == "":
            raise ValueError("must not be blank (leave the filter out or send null)")
        return value


class MatchRequest(RequestModel):
    offer: OfferIn
    top_k: int = Field(default=10, ge=1, le=MAX_TOP_K, description="candidates to return (1-100)")
    filters: MatchFilters | None = None
    explain: bool = Field(default=False, description="return the word pairs that drove each score")


class MatchBatchRequest(RequestModel):
    items: list[MatchRequest] = Field(..., min_length=1, max_length=MAX_BATCH_SCHEMA)


class WordPairOut(BaseModel):
    offer_word: str
    product_word: str
    similarity: float = Field(description="character-level similarity of the two words, 0-1")
    weight: float | None = Field(default=None, description="mean lexical attention bias (LEA models)")


class CandidateOut(BaseModel):
    external_id: str
    title: str
    brand: str | None = None
    category: str | None = None
    price: float | None = None
    currency: str | None = None
    score: float | None = Field(
        description=(
            "the scorer's score; the decision compares the first candidate's with the thresholds. "
            "null for a candidate beyond RERANK_DEPTH, which the scorer did not read"
        )
    )
    retrieval_score: float = Field(description="cosine similarity from the blocking stage")
    retrieval_rank: int = Field(
        description="1-based place in the blocking stage's candidate list, before the scorer reordered it"
    )
    lexical_score: float | None = None
    explanation: list[WordPairOut] | None = None


class MatchResponse(BaseModel):
    decision: str = Field(description="match | review | no_match")
    match: CandidateOut | None = Field(default=None, description="the matched product when decision is match")
    candidates: list[CandidateOut]
    index_version: int
    model_versions: dict[str, str]
    thresholds: dict[str, float]
    timings_ms: dict[str, float]


class MatchBatchResponse(BaseModel):
    results: list[MatchResponse]
