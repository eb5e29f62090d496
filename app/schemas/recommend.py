"""Recommend request and response payloads (POST /v1/recommend, /v1/recommend/batch)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints, field_validator, model_validator

from app.schemas.common import STRIP, RequestModel
from app.schemas.product import MAX_TITLE_CHARS, ExternalId

MAX_RECOMMEND_K = 100
MAX_RECOMMEND_BATCH = 64
MAX_QUERY_IMAGES = 3
# ~1 MB of image bytes as base64; the request body limit (MAX_BODY_BYTES) applies on top.
MAX_IMAGE_BASE64_CHARS = 1_400_000


class ImageIn(RequestModel):
    """One query image: exactly one of an upload (base64), a server-side path or a URL."""

    data_base64: str | None = Field(
        default=None, min_length=4, max_length=MAX_IMAGE_BASE64_CHARS, description="PNG/JPEG/WebP/GIF, base64"
    )
    path: str | None = Field(
        default=None, min_length=1, max_length=1024, description="a file below RECOMMEND_IMAGE_DIR"
    )
    url: str | None = Field(
        default=None,
        min_length=8,
        max_length=2048,
        pattern=r"^https?://",
        description="fetched only when RECOMMEND_ALLOW_IMAGE_URLS is set",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> ImageIn:
        if sum(v is not None for v in (self.data_base64, self.path, self.url)) != 1:
            raise ValueError("give exactly one of data_base64, path or url")
        return self


class RecommendQueryIn(RequestModel):
    """Exactly one of ``text`` (an offer title) or ``product_id`` (an existing catalogue product).

    The limits apply to the text as sent; surrounding whitespace is stripped afterwards.
    """

    text: Annotated[str, StringConstraints(min_length=1, max_length=MAX_TITLE_CHARS), STRIP] | None = Field(
        default=None, description="query offer title"
    )
    product_id: ExternalId | None = Field(
        default=None, description="external id of a catalogue product; the product itself is not returned"
    )
    images: list[ImageIn] = Field(
        default_factory=list,
        max_length=MAX_QUERY_IMAGES,
        description="up to 3 query images; used only by a recommender trained with image fusion (ViXML)",
    )

    @field_validator("text")
    @classmethod
    def _has_word(cls, value: str | None) -> str | None:
        if value is not None and not any(ch.isalnum() for ch in value):
            raise ValueError("text must contain at least one letter or digit")
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> RecommendQueryIn:
        if (self.text is None) == (self.product_id is None):
            raise ValueError("give exactly one of text or product_id")
        return self


class RecommendRequest(RequestModel):
    query: RecommendQueryIn
    top_k: int = Field(default=10, ge=1, le=MAX_RECOMMEND_K, description="products to return (1-100)")


class RecommendBatchRequest(RequestModel):
    items: list[RecommendRequest] = Field(..., min_length=1, max_length=MAX_RECOMMEND_BATCH)


class RecommendationOut(BaseModel):
    external_id: str
    title: str
    brand: str | None = None
    category: str | None = None
    score: float = Field(description="inner product of the query and the product's label vector (cosine)")
    prototype: bool = Field(description="true when the product is served by its trained prototype, else by its text")
    automated: bool = Field(description="true only for the top-1 product when the response is automated")


class RecommendResponse(BaseModel):
    items: list[RecommendationOut]
    automated: bool = Field(description="the top-1 product may be used without review (coverage threshold)")
    automation_score: float | None = Field(
        default=None, description="score compared with the threshold (cosine, or the pair-head probability)"
    )
    threshold: float | None = Field(default=None, description="automation threshold; null = never automated")
    target_precision: float = Field(description="precision the threshold was chosen for on validation")
    model: str
    images_used: int = Field(default=0, description="query images turned into image tokens")
    catalogue_version: int
    timings_ms: dict[str, float]


class RecommendBatchResponse(BaseModel):
    results: list[RecommendResponse]
