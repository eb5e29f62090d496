"""Product text, one home for serving and training: the strings models see, and content hashes.

Two kinds of text come from a product mapping (``title``, ``brand``, ``price`` ...):

* :func:`embed_text` is what the bi-encoder embeds, for the catalogue and for offers alike
  (NFKC-normalised title, led by the brand when the title omits it); :func:`norm_key` is the
  case- and space-insensitive key of brand/category filters; :func:`content_hash` and
  :func:`text_hash` tell the catalogue when a product or its embedded text changed.
* :func:`serialize_product` (and :func:`serialize` for a training record) is what the matcher
  reads. Training and the web service go through this one code path, so a model sees
  byte-identical inputs offline and online.

Serialisation formats:

* one field -> the value alone, whitespace-normalised;
* several fields -> Ditto style ``COL <attr> VAL <value> COL <attr> VAL <value>`` with missing
  values written as empty. For the DeepMatcher benchmarks this reproduces the shipped Ditto files
  exactly (each side of a ``ditto/*.txt`` line, stripped).

Pure Python: no torch, nothing from ``app`` or ``training``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------- embedded text, keys, hashes

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

#: Fields that hold a record's title, in order of preference (Abt-Buy calls it ``name``).
TITLE_FIELDS: tuple[str, ...] = ("title", "name")


def clean_text(value: str) -> str:
    """NFKC-normalise, drop control characters and collapse whitespace."""
    value = unicodedata.normalize("NFKC", value)
    if not value.isprintable():  # the per-character pass only where a control character is
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


def title_of(fields: object) -> str:
    """The first non-empty value among :data:`TITLE_FIELDS` of a mapping, as a string."""
    getter = getattr(fields, "get", None)
    if getter is None:
        return ""
    for name in TITLE_FIELDS:
        value = getter(name)
        if value is None:
            continue
        text = str(value)
        if text.strip():
            return text
    return ""


# --------------------------------------------------------------------------- matcher serialisation

FieldSpec = str | Sequence[str]

#: Keys of a product mapping that identify a record rather than describe it; ``fields="all"``
#: skips them (the readers keep the same columns out of ``Record.fields``).
NON_ATTRIBUTE_KEYS: frozenset[str] = frozenset({"id", "cluster_id", "page_url"})

# A Ditto field marker: ``COL <attr> VAL`` at the start or after whitespace, followed by
# whitespace or the end. Requiring the full marker (not just " COL ") keeps a stray "COL" word
# inside a value from splitting it.
_MARKER = re.compile(r"(?:^|(?<=\s))COL\s+(\S+)\s+VAL(?=\s|$)")


# ASCII whitespace only: the Ditto line format cannot hold tabs or newlines, so runs of them are
# collapsed to one space. Unicode spaces (e.g. the no-break spaces in Abt-Buy) are kept, because
# the shipped Ditto files keep them and serialize() reproduces those files byte for byte;
# tokenizers treat them as whitespace anyway.
_ASCII_WS = " \t\n\r\f\v"
_ASCII_WS_RUN = re.compile(r"[ \t\n\r\f\v]+")


def _clean(value: object) -> str:
    if value is None:
        return ""
    return _ASCII_WS_RUN.sub(" ", str(value)).strip(_ASCII_WS)


def _join_ditto(items: Sequence[tuple[str, str]]) -> str:
    # rstrip: an empty last value would otherwise leave a dangling space ("... COL price VAL ").
    return " ".join(f"COL {attr} VAL {value}" for attr, value in items).rstrip()


def _resolve_fields(mapping: Mapping[str, object], fields: FieldSpec) -> list[str] | None:
    """Attribute names to write, or ``None`` for title-only."""
    if isinstance(fields, str):
        if fields == "title":
            return None
        if fields == "all":
            return [k for k in mapping if k not in NON_ATTRIBUTE_KEYS]
        return [fields]
    names = list(fields)
    if not names:
        raise ValueError("fields must name at least one attribute")
    return names


def serialize_product(mapping: Mapping[str, object], fields: FieldSpec = "title") -> str:
    """Serialise a plain product dict (``title``, ``brand``, ``price`` ...) like :func:`serialize`.

    ``fields="all"`` takes the mapping's own key order, minus :data:`NON_ATTRIBUTE_KEYS`; pass the
    model's attribute list explicitly when the service dict may carry extra keys.
    """
    names = _resolve_fields(mapping, fields)
    if names is None:
        return _clean(title_of(mapping))
    if len(names) == 1:
        return _clean(mapping.get(names[0]))
    return _join_ditto([(name, _clean(mapping.get(name))) for name in names])


class HasFields(Protocol):
    """Anything with a ``fields`` mapping, such as :class:`training.data.records.Record`."""

    @property
    def fields(self) -> Mapping[str, object]: ...


def serialize(record: HasFields, fields: FieldSpec = "title") -> str:
    """Serialise a record: ``"title"``, ``"all"`` (schema order), one attribute name, or a list."""
    return serialize_product(record.fields, fields)


def ditto_items(text: str) -> list[tuple[str, str]] | None:
    """``(attr, value)`` pairs of a Ditto string in order, or ``None`` when it is not one.

    Values are stripped and may be empty. Attribute names may repeat (all occurrences are kept).
    """
    matches = list(_MARKER.finditer(text))
    if not matches or text[: matches[0].start()].strip():
        return None
    items: list[tuple[str, str]] = []
    for k, match in enumerate(matches):
        end = matches[k + 1].start() if k + 1 < len(matches) else len(text)
        items.append((match.group(1), text[match.end() : end].strip(_ASCII_WS)))
    return items


def is_ditto(text: str) -> bool:
    """Whether ``text`` starts with a Ditto ``COL <attr> VAL`` marker."""
    return ditto_items(text) is not None


def parse_ditto(text: str) -> dict[str, str]:
    """Parse ``COL x VAL y COL z VAL w`` into ``{"x": "y", "z": "w"}`` (values stripped, may be empty).

    Raises ``ValueError`` when ``text`` does not start with a field marker.
    """
    items = ditto_items(text)
    if items is None:
        raise ValueError(f"not a Ditto serialisation (expected 'COL <attr> VAL ...'): {text[:80]!r}")
    parsed: dict[str, str] = {}
    for attr, value in items:
        if attr in parsed:
            logger.debug("attribute %r repeated in a Ditto string; keeping the last value", attr)
        parsed[attr] = value
    return parsed


def join_ditto(items: Sequence[tuple[str, str]]) -> str:
    """Inverse of :func:`ditto_items` (values whitespace-normalised)."""
    return _join_ditto([(attr, _clean(value)) for attr, value in items])
