"""Product and offer payloads: validation shared by the API and batch ingestion."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from app.schemas.common import STRIP, RequestModel, UtcDatetime

# Limits are static so the OpenAPI schema states them; settings may only tighten body size.
MAX_ID_CHARS = 255
MAX_TITLE_CHARS = 2_000
MAX_SHORT_CHARS = 255
MAX_DESCRIPTION_CHARS = 20_000
MAX_IMAGES = 20
MAX_URL_CHARS = 2_048
MAX_ATTRIBUTES = 200
MAX_ATTRIBUTES_JSON_CHARS = 20_000

# No surrounding whitespace, no URL delimiters: an id must survive a round trip through a path.
EXTERNAL_ID_PATTERN = r"^[^\s/?#]([^/?#]*[^\s/?#])?$"
ExternalId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_CHARS, pattern=EXTERNAL_ID_PATTERN)]
_HAS_WORD = re.compile(r"\w", re.UNICODE)
# Body text: limits on the value as sent (the schema's maxLength), then surrounding whitespace
# stripped (app.schemas.common.STRIP).
ShortText = Annotated[str, StringConstraints(max_length=MAX_SHORT_CHARS), STRIP]
ImageUrl = Annotated[str, StringConstraints(max_length=MAX_URL_CHARS), STRIP]


def _clean_optional(value: str | None, field: str) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


class OfferIn(RequestModel):
    """An incoming offer: the product as one shop describes it. Only the title is required.

    Strict as every JSON body (RequestModel): `"price": "12.5"` or `true` is refused, not coerced.
    Text is stripped of surrounding whitespace after its limits are checked on the value as sent.
    """

    model_config = ConfigDict(extra="forbid")

    title: Annotated[str, StringConstraints(min_length=1, max_length=MAX_TITLE_CHARS), STRIP]
    brand: ShortText | None = None
    category: ShortText | None = None
    price: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{3}$"), STRIP] | None = None
    description: Annotated[str, StringConstraints(max_length=MAX_DESCRIPTION_CHARS), STRIP] | None = None
    image_urls: list[ImageUrl] = Field(default_factory=list, max_length=MAX_IMAGES)
    attributes: dict[Annotated[str, STRIP], Any] = Field(default_factory=dict)
    source: ShortText | None = None

    @field_validator("title")
    @classmethod
    def _title_has_text(cls, value: str) -> str:
        # Blank or punctuation-only titles would all embed alike and form one giant block.
        if not _HAS_WORD.search(value):
            raise ValueError("title must contain at least one letter or digit")
        return value

    @field_validator("brand", "category", "description", "source")
    @classmethod
    def _blank_to_none(cls, value: str | None) -> str | None:
        return _clean_optional(value, "")

    @field_validator("currency")
    @classmethod
    def _upper_currency(cls, value: str | None) -> str | None:
        return value.upper() if value else value

    @field_validator("attributes")
    @classmethod
    def _bounded_attributes(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(value) > MAX_ATTRIBUTES:
            raise ValueError(f"at most {MAX_ATTRIBUTES} attributes")
        import json

        try:
            encoded = json.dumps(value, allow_nan=False)
        except ValueError as exc:
            raise ValueError("attributes must be JSON without NaN or Infinity") from exc
        if len(encoded) > MAX_ATTRIBUTES_JSON_CHARS:
            raise ValueError(f"attributes must serialise to at most {MAX_ATTRIBUTES_JSON_CHARS} characters")
        return value

    @field_validator("price", mode="before")
    @classmethod
    def _price_is_not_a_boolean(cls, value: object) -> object:
        # Also in the lax file rows below, where "12.5" from a CSV cell is a price but true is not.
        if isinstance(value, bool):
            raise ValueError("price must be a number, not a boolean")
        return value

    @field_validator("price")
    @classmethod
    def _finite_price(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("price must be a finite number")
        return value


class ProductIn(OfferIn):
    """A catalogue product as written by PUT /v1/products/{external_id}."""


class ProductRow(ProductIn):
    """A product with its key, as ingestion files carry it.

    Not strict: a CSV cell is always text, so `"12.5"` is read as the price 12.5 here. Files have
    no OpenAPI schema to agree with: their values are stripped before the limits are checked.
    """

    model_config = ConfigDict(strict=False, str_strip_whitespace=True)

    external_id: ExternalId


class ProductOut(BaseModel):
    external_id: str
    title: str
    brand: str | None = None
    category: str | None = None
    price: float | None = None
    currency: str | None = None
    description: str | None = None
    image_urls: list[str] = Field(default_factory=list)
    attributes: dict[str, Any] = Field(default_factory=dict)
    source: str | None = None
    content_hash: str
    created_at: UtcDatetime
    updated_at: UtcDatetime


class ProductPage(BaseModel):
    items: list[ProductOut]
    next_cursor: str | None = None


class ProductWriteResult(BaseModel):
    product: ProductOut
    created: bool
    changed: bool
    index_version: int
