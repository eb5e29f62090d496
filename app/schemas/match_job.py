"""Bulk matching of feeds: one feed row as validated, and the job's API payloads."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from app.schemas.job import JobAccepted
from app.schemas.product import MAX_ID_CHARS, OfferIn

OutputFormat = Literal["csv", "parquet"]
Engine = Literal["local", "ray"]
OUTPUT_FORMATS: tuple[str, ...] = ("csv", "parquet")
ENGINES: tuple[str, ...] = ("local", "ray")


class OfferRow(OfferIn):
    """One offer of a feed: the offer payload of `/v1/match` plus the shop's id for it.

    The id is only echoed back in the results, so unlike a product's external id it may hold
    any characters; it is bounded like every other field. Not strict: CSV cells are text. As
    with catalogue files, values are stripped before the limits are checked.
    """

    model_config = ConfigDict(strict=False, str_strip_whitespace=True)

    offer_id: str = Field(..., min_length=1, max_length=MAX_ID_CHARS)


class MatchJobAccepted(JobAccepted):
    results_url: str = Field(description="GET it once the job is completed (409 before)")
