"""Text normalisation shared by indexing and querying, and content hashes."""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

_SPACES = re.compile(r"\s+")

# Fields whose change alters what is stored; external_id is the key, not content.
CONTENT_FIELDS = (
    "title",
    "brand",
    "category",
    "price",
    "currency",
    "description",
    "image_urls",
    "attributes",
    "source",
)


def clean_text(value: str) -> str:
    """NFKC-normalise, drop control characters and collapse whitespace."""
    value = unicodedata.normalize("NFKC", value)
    value = "".join(ch if ch.isprintable() else " " for ch in value)
    return _SPACES.sub(" ", value).strip()


def norm_key(value: str | None) -> str | None:
    """Key for brand/category filters: case- and space-insensitive."""
    if value is None:
        return None
    key = clean_text(value).casefold()
    return key or None


def embed_text(product: Mapping[str, Any]) -> str:
    """The text the bi-encoder sees: the title, led by the brand when the title omits it."""
    title = clean_text(str(product.get("title") or ""))
    brand = product.get("brand")
    if brand:
        brand = clean_text(str(brand))
        if brand and brand.casefold() not in title.casefold():
            return f"{brand} {title}"
    return title


def _sha256(data: str) -> str:
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


def content_hash(product: Mapping[str, Any]) -> str:
    canonical = {key: product.get(key) for key in CONTENT_FIELDS}
    return _sha256(json.dumps(canonical, sort_keys=True, ensure_ascii=False, default=str))


def text_hash(text: str) -> str:
    return _sha256(text)
