"""Review queue and feedback payloads."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from app.schemas.common import RequestModel, UtcDatetime
from app.schemas.product import MAX_ID_CHARS, MAX_SHORT_CHARS, OfferIn


class ReviewItemOut(BaseModel):
    id: str
    offer: dict[str, Any]
    offer_external_id: str | None = None
    candidates: list[dict[str, Any]]
    top_score: float | None = None
    model_versions: dict[str, Any]
    status: str
    created_at: UtcDatetime


class ReviewPage(BaseModel):
    items: list[ReviewItemOut]


class FeedbackIn(RequestModel):
    """A label on (offer, product): from the review queue (`review_id`) or from anywhere.

    The product must exist in the catalogue (404 otherwise): a label on an unknown product
    could never be used for training or shown again.
    """

    review_id: str | None = Field(default=None, max_length=36)
    offer: OfferIn | None = None
    offer_external_id: str | None = Field(default=None, max_length=MAX_ID_CHARS)
    product_external_id: str = Field(..., min_length=1, max_length=MAX_ID_CHARS)
    label: Literal["match", "no_match"]
    reviewer: str | None = Field(default=None, max_length=MAX_SHORT_CHARS)
    note: str | None = Field(default=None, max_length=2000)

    @model_validator(mode="after")
    def _needs_an_offer(self) -> FeedbackIn:
        if self.review_id is None and self.offer is None:
            raise ValueError("give the offer, or the review_id of a queued decision")
        return self


class FeedbackOut(BaseModel):
    id: int
    review_id: str | None = None
    offer: dict[str, Any]
    offer_external_id: str | None = None
    product_external_id: str
    label: Literal["match", "no_match"]
    reviewer: str | None = None
    note: str | None = None
    source: str | None = None
    created_at: UtcDatetime


class FeedbackPage(BaseModel):
    items: list[FeedbackOut]
    effective_label: Literal["match", "no_match"] | None = Field(
        default=None, description="the latest label when the query names one pair"
    )


class FeedbackImportResult(BaseModel):
    imported: int
    failed: int
    errors: list[dict[str, Any]]
