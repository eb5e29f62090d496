"""Pair signals that mean the same in every catalogue: identifiers, token coverage, brand, price.

A catalogue-specific model learns what a word is worth in one shop; these signals need no
corpus statistics, so they carry over to catalogues nobody labelled. The zero-shot scorer
(``app/pipeline/scoring.py``) blends them with the bi-encoder cosine, and a trained matcher head
may take :meth:`PairSignals.as_features` as extra inputs.

Public API (stable; the feature order is :data:`FEATURE_NAMES`):

* :func:`pair_signals` ``(left, right) -> PairSignals`` for two product mappings (``title`` or
  ``name``, ``brand`` or ``manufacturer``, ``price``, ``currency``, ``attributes`` ...). By
  convention ``left`` is the offer and ``right`` the catalogue product; only the coverages are
  directional, every other signal is symmetric.
* :class:`PairSignals` with ``as_features()`` (``as_features_v2()`` adds the quantity agreement,
  :data:`FEATURE_NAMES_V2`; ``as_features_v3()`` the colour agreement too, :data:`FEATURE_NAMES_V3`)
  and :meth:`PairSignals.f_beta`.
* :func:`tokenize`, :func:`identifiers` and :func:`identifier_similarity`, the building blocks.

Tokens come from :func:`models.product_text.embed_text` (the text the bi-encoder embeds: NFKC,
title led by the brand), case-folded and split on whitespace and punctuation; hyphens, dots and
underscores inside a word are dropped, so "WH-1000XM5" and "wh1000xm5" are one token. Adjacent
fragments are joined when the join is a token of the other side ("WH 1000XM5" vs "WH-1000XM5").

Identifiers (model numbers) are tokens of at least four characters that mix letters and digits,
or runs of at least four digits, minus measures ("128gb", "2.4ghz", "4k", "2nd", "3user") and
years ("2007"). Two identifiers agree when equal, when one adds a letter suffix to the other
("un55f6300" / "un55f6300afxza": a colour or region code) or a letter prefix ("csr9100" /
"r9100"), or when one typo apart: a letter added or dropped, or a letter swapped with its
neighbour. A changed letter or a changed, added, dropped or swapped *digit* is another model
("kdl46w4100" vs "kdl46s4100", "wh1000xm4" vs "wh1000xm5"), never a typo
(:func:`identifier_similarity` grades them).

Coverage of one side by the other is the weighted share of its tokens found on the other side,
each credited with its best similarity (identifiers by :func:`identifier_similarity`, numbers
and measures exactly, words by normalised Levenshtein similarity of at least
:data:`WORD_MATCH_CUTOFF`). Identifiers weigh most, colours and measures (what tells variants
apart) next, stop words least. The soft F1 of the two coverages is below 1.0 whenever either
side has a token the other lacks, unlike rapidfuzz's ``token_set_ratio``, which is 1.0 for any
subset.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from rapidfuzz.distance import Levenshtein
from rapidfuzz.process import cdist

from models.product_text import clean_text, embed_text, title_of
from models.quantities import quantity_agreement

Agreement = Literal["match", "conflict", "absent"]
MATCH: Agreement = "match"
CONFLICT: Agreement = "conflict"
ABSENT: Agreement = "absent"

#: Order of :meth:`PairSignals.as_features`; a model trained on these features stores this tuple.
FEATURE_NAMES: tuple[str, ...] = (
    "identifier_match",
    "identifier_conflict",
    "identifier_absent",
    "identifier_score",
    "left_coverage",
    "right_coverage",
    "token_f1",
    "brand_match",
    "brand_conflict",
    "brand_absent",
    "price_log_ratio",
    "price_missing",
)

#: The second signal set (``"pair_signals_v2"`` in a head): :data:`FEATURE_NAMES` and the
#: agreement of the quantities the titles name (:mod:`models.quantities`). Heads fitted on the
#: first set keep reading :data:`FEATURE_NAMES`, so both stay.
FEATURE_NAMES_V2: tuple[str, ...] = (*FEATURE_NAMES, "quantity_match", "quantity_conflict", "quantity_absent")

#: The third signal set (``"pair_signals_v3"``): :data:`FEATURE_NAMES_V2` and the agreement of the
#: colours the titles name (:func:`colour_agreement`).
FEATURE_NAMES_V3: tuple[str, ...] = (*FEATURE_NAMES_V2, "colour_match", "colour_conflict", "colour_absent")

#: Words below this normalised Levenshtein similarity do not cover each other. 0.8 lets a
#: five-letter word differ by one edit ("blakc"/"black") and keeps four-letter words exact.
WORD_MATCH_CUTOFF = 0.8
#: Identifier similarity from which two identifiers count as the same model.
IDENTIFIER_MATCH_CUTOFF = 0.8
#: |log price ratio| is capped here in features: beyond e^3 (x20) the size of the gap says nothing new.
PRICE_LOG_RATIO_CAP = 3.0

# Graded identifier similarities (see the module docstring).
_SUFFIX_VARIANT = 0.9
_PREFIX_VARIANT = 0.85
_ONE_EDIT_TYPO = 0.8
_MIN_TYPO_LENGTH = 5
_MIN_SUFFIX_BASE = 4
_MIN_BARE_DIGITS_BEHIND_PREFIX = 6

# Token weights in the coverages.
_WEIGHT_IDENTIFIER = 3.0
_WEIGHT_VARIANT = 2.0
_WEIGHT_WORD = 1.0
_WEIGHT_SHORT = 0.5
_WEIGHT_STOP = 0.2

_STOP_WORDS = frozenset("a an and at by for from in into of on or the to with w without plus per new".split())
# Colours name variants of one model in every catalogue; a colour on one side only is a real
# difference, unlike a product-type word ("headphones") that terse offers leave out.
_COLOURS = frozenset(
    """black white silver grey gray red blue green yellow pink purple violet gold rose orange brown
    beige navy bronze titanium graphite midnight charcoal cream ivory teal turquoise cyan magenta
    maroon khaki olive copper platinum champagne lavender coral mint""".split()
)
_UNITS = (
    "tb|gb|mb|kb|ghz|mhz|khz|hz|mm|cm|km|m|in|inch|inches|ft|w|kw|v|mah|ah|wh|lb|lbs|oz|g|kg|mg|ml|l"
    "|mp|fps|rpm|bit|bits|th|st|nd|rd|x|k|p|d|pk|pack|pcs|pc|ct|yr|yrs|gen|db|c|f|ms|s|h|hr|hrs|min"
)
_NUMBER = r"\d+(?:[.,]\d+)?"
_MEASURE = re.compile(rf"^{_NUMBER}(?:x{_NUMBER})*(?:{_UNITS})?$")
_HAS_DIGIT = re.compile(r"\d")
_HAS_LETTER = re.compile(r"[^\W\d_]")
_MIN_IDENTIFIER = 4
_YEAR = re.compile(r"^(?:19|20)\d\d$")
# Standards and interfaces that many different products share: "802.11n", "usb3", "ddr4",
# "pc3-10600", "h264", "cat6e", "sata3". They look like model numbers but agreeing on one says
# nothing about being the same product (a Netgear and a Linksys 802.11n router).
_STANDARD = re.compile(
    r"^(?:80211[a-z]{1,3}|usb\d*(?:c|typec)?|ddr\d[a-z]?|lpddr\d[a-z]?|gddr\d|pc\d{3,7}"
    r"|h26\d|x26\d|mpeg\d|mp[34]|sata\d*|pcie\d*|cat\d[a-z]?|hdmi\d*|ipv[46]|wifi\d|bluetooth\d*|bt\d|ieee\d+)$"
)
# A count and what it counts, written as one token: "3user", "100agent", "11speed", "10card".
_COUNTED = re.compile(r"^\d+[^\W\d_]{3,}$")
_APOSTROPHES = re.compile(r"['\u2019`]")
_CHUNKS = re.compile(r"[^\w.\-]+")
_INNER = re.compile(r"(?<!\d)\.|\.(?!\d)|[-_]")
_PRICE = re.compile(r"\d+(?:[.,]\d+)*")
_MAX_JOIN = 3
_TEXT_CACHE = 65_536
_WORD_CACHE = 262_144

#: Attribute keys whose values are manufacturer model or part numbers, compared after case-folding
#: and dropping everything but letters and digits ("Item model number", "Model #", "MPN",
#: "Manufacturer Part Number"). Not a shop's own number (SKU, ASIN: another shop never has it), and
#: not a barcode (GTIN, EAN, UPC): one shop lists the barcode where the other lists the part
#: number, and the two never agree although the product is the same (ProMap's Walmart-Target pairs).
IDENTIFIER_KEYS = frozenset(
    """model modelnumber modelno modelid itemmodelnumber mpn partnumber partno manufacturerpartnumber
    mfrpartnumber mfrpart mfgpartnumber mfgpart""".split()
)
_KEY_JUNK = re.compile(r"[\W_]+")


def identifier_key(key: object) -> bool:
    """Whether an attribute named ``key`` holds a manufacturer identifier (:data:`IDENTIFIER_KEYS`)."""
    return _KEY_JUNK.sub("", str(key).casefold()) in IDENTIFIER_KEYS


# --------------------------------------------------------------------------- tokens


def tokenize(text: str) -> list[str]:
    """Case-folded tokens of ``text``, in order, duplicates kept.

    Splits on whitespace and punctuation except hyphens, underscores and dots inside a word,
    which are dropped ("WH-1000XM5" -> ``wh1000xm5``, "T120.407.17" -> ``t12040717``); a
    decimal point stays in a number or measure ("5.1", "2.4ghz").
    """
    return list(_tokens(text))


# Serving scores one offer against k candidates and a catalogue repeats its titles: the same
# texts and words come back again and again, so tokens and word classes are cached.
@lru_cache(maxsize=_TEXT_CACHE)
def _tokens(text: str) -> tuple[str, ...]:
    low = _APOSTROPHES.sub("", clean_text(text).casefold())
    tokens = []
    for chunk in _CHUNKS.split(low):
        token = _INNER.sub("", chunk.strip(".-_"))
        if "." in token and not is_measure(token):
            token = token.replace(".", "")
        if token:
            tokens.append(token)
    return tuple(tokens)


# One colour, several spellings: "grey" and "gray" must not read as a conflict.
_COLOUR_SPELLINGS = {"grey": "gray", "violet": "purple"}


def colours(tokens: Sequence[str]) -> frozenset[str]:
    """The colour words among a title's tokens, one spelling per colour."""
    return frozenset(_COLOUR_SPELLINGS.get(t, t) for t in tokens if t in _COLOURS)


def colour_agreement(left_title: Sequence[str], right_title: Sequence[str]) -> Agreement:
    """``conflict`` when both titles name colours and share none ("Red" / "Black"): one model's
    variants. ``match`` when they share one, ``absent`` when a side names none (a title that
    leaves its colour out says nothing about it)."""
    left, right = colours(left_title), colours(right_title)
    if not left or not right:
        return ABSENT
    return MATCH if left & right else CONFLICT


def is_measure(token: str) -> bool:
    """A number, alone or with a unit or counted noun ("128gb", "2.4ghz", "4k", "2nd", "3user")."""
    return bool(_MEASURE.match(token) or _COUNTED.match(token))


def is_year(token: str) -> bool:
    return bool(_YEAR.match(token))


@lru_cache(maxsize=_WORD_CACHE)
def is_identifier(token: str) -> bool:
    """A model-number-like token: letters mixed with digits, or a run of >= 4 digits.

    At least four characters ("cs3", "x1" name too many things), and neither a measure nor a
    year: "2007" is the edition of many products, not one model.
    """
    if len(token) < _MIN_IDENTIFIER or not _HAS_DIGIT.search(token) or _STANDARD.match(token):
        return False
    if token.isdigit():
        return not is_year(token)
    return bool(_HAS_LETTER.search(token)) and not is_measure(token)


@lru_cache(maxsize=_WORD_CACHE)
def _weight(token: str) -> float:
    if is_identifier(token):
        return _WEIGHT_IDENTIFIER
    if token in _COLOURS or is_year(token) or (_HAS_LETTER.search(token) and _HAS_DIGIT.search(token)):
        return _WEIGHT_VARIANT
    if token in _STOP_WORDS:
        return _WEIGHT_STOP
    if len(token) == 1:
        return _WEIGHT_SHORT
    return _WEIGHT_WORD


def _joinable(joined: str) -> bool:
    return bool(_HAS_DIGIT.search(joined))


def join_fragments(tokens: Sequence[str], other: Sequence[str]) -> list[str]:
    """``tokens`` with runs of 2-3 adjacent fragments glued where the glued form is in ``other``.

    Only glued forms with a digit count: "wh 1000xm5" becomes ``wh1000xm5`` when the other side
    writes it so, while two plain words are never merged.
    """
    targets = {t for t in other if _joinable(t)}
    if not targets:
        return list(tokens)
    out: list[str] = []
    i = 0
    while i < len(tokens):
        for n in range(min(_MAX_JOIN, len(tokens) - i), 1, -1):
            joined = "".join(tokens[i : i + n])
            if joined in targets:
                out.append(joined)
                i += n
                break
        else:
            out.append(tokens[i])
            i += 1
    return out


def _unique(tokens: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(tokens))


# --------------------------------------------------------------------------- identifiers


def identifiers(tokens: Sequence[str]) -> list[str]:
    """The identifier tokens among ``tokens``, first occurrence order."""
    return _unique([t for t in tokens if is_identifier(t)])


def _is_typo(a: str, b: str) -> bool:
    """One letter added or dropped, or two neighbours swapped of which one is a letter."""
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return (
            len(diff) == 2
            and diff[1] == diff[0] + 1
            and a[diff[0]] == b[diff[1]]
            and a[diff[1]] == b[diff[0]]
            and not (a[diff[0]].isdigit() and a[diff[1]].isdigit())
        )
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    if len(long_) - len(short) != 1:
        return False
    return any(long_[:i] + long_[i + 1 :] == short and not long_[i].isdigit() for i in range(len(long_)))


def _split_letter_suffix(token: str) -> tuple[str, str]:
    """``(base, suffix)``: trailing letters after the last digit split off ("athm50xwh" -> "athm50", "xwh")."""
    base = token.rstrip("abcdefghijklmnopqrstuvwxyz")
    if base and base[-1].isdigit():
        return base, token[len(base) :]
    return token, ""


def identifier_similarity(a: str, b: str) -> float:
    """Graded agreement of two normalised identifiers, in [0, 1].

    * 1.0 equal;
    * 0.9 one extends the other's letter suffix after the last digit ("un55f6300" /
      "un55f6300afxza", "athm50x" / "athm50xwh": a colour or region code added), on a base of
      >= 4 characters; two different suffixes ("f360b" / "f360w") are two variants, 0.0;
    * 0.85 one is the other behind a letter prefix ("csr9100" / "r9100", "av23292" / "23292"):
      a series or shop prefix, when the shorter has a letter or >= 6 digits (a bare "9100" is
      too common);
    * 0.8 one typo apart on >= 5 characters: a letter added or dropped, or two neighbours
      swapped of which one is a letter ("wh1000mx5");
    * 0.0 otherwise: a changed letter ("kdl46w4100" / "kdl46s4100") or any changed, added, dropped
      or swapped digit ("wh1000xm4" / "wh1000xm5") names another model.
    """
    if a == b:
        return 1.0
    short, long_ = (a, b) if len(a) <= len(b) else (b, a)
    base, suffix = _split_letter_suffix(short)
    long_base, long_suffix = _split_letter_suffix(long_)
    if len(base) >= _MIN_SUFFIX_BASE and base == long_base and long_suffix.startswith(suffix):
        return _SUFFIX_VARIANT
    prefix = long_[: len(long_) - len(short)]
    if (
        long_.endswith(short)
        and prefix.isalpha()
        and (_HAS_LETTER.search(short) or len(short) >= _MIN_BARE_DIGITS_BEHIND_PREFIX)
    ):
        return _PREFIX_VARIANT
    if len(short) >= _MIN_TYPO_LENGTH and _is_typo(a, b):
        return _ONE_EDIT_TYPO
    return 0.0


def _is_variant(a: str, b: str) -> bool:
    """Two different model numbers of one series: one edit apart, or the same first four characters."""
    return a != b and (Levenshtein.distance(a, b) <= 1 or a[:_MIN_IDENTIFIER] == b[:_MIN_IDENTIFIER])


def _identifier_agreement(left: Sequence[str], right: Sequence[str]) -> tuple[Agreement, float]:
    if not left or not right:
        return ABSENT, 0.0
    sims = {(a, b): identifier_similarity(a, b) for a in left for b in right}
    best = max(sims.values())
    if best < IDENTIFIER_MATCH_CUTOFF:
        return CONFLICT, best
    # One shared code does not outweigh a sibling model on the other side: "wh1000xm4" listed
    # beside a shared accessory code still names another model than "wh1000xm5".
    agreed = {x for pair, sim in sims.items() if sim >= IDENTIFIER_MATCH_CUTOFF for x in pair}
    for (a, b), sim in sims.items():
        if sim < IDENTIFIER_MATCH_CUTOFF and a not in agreed and b not in agreed and _is_variant(a, b):
            return CONFLICT, sim
    return MATCH, best


# --------------------------------------------------------------------------- coverage


def _coverage(tokens: Sequence[str], other: Sequence[str]) -> float:
    """Weighted share of ``tokens`` found in ``other``, each credited with its best similarity."""
    if not tokens:
        return 0.0
    if not other:
        return 0.0
    other_ids = [t for t in other if is_identifier(t)]
    other_set = set(other)
    words = [t for t in tokens if not is_identifier(t) and not _HAS_DIGIT.search(t) and t not in other_set]
    fuzzy: dict[str, float] = {}
    other_words = [t for t in other if not _HAS_DIGIT.search(t)]
    if words and other_words:
        sims = cdist(words, other_words, scorer=Levenshtein.normalized_similarity, score_cutoff=WORD_MATCH_CUTOFF)
        fuzzy = {w: float(s) for w, s in zip(words, sims.max(axis=1))}
    total = covered = 0.0
    for token in tokens:
        weight = _weight(token)
        total += weight
        if token in other_set:
            credit = 1.0
        elif is_identifier(token):
            credit = max((identifier_similarity(token, o) for o in other_ids), default=0.0)
        else:
            credit = fuzzy.get(token, 0.0)  # numbers and measures count only when equal
        covered += weight * credit
    return covered / total


def f_beta(left_coverage: float, right_coverage: float, beta: float = 1.0) -> float:
    """Weighted harmonic mean of the coverages; ``beta`` > 1 weighs the left (offer) coverage more.

    The left coverage plays recall (how much of what the offer says the product has), the right
    one precision; 0.0 when either is 0.
    """
    if left_coverage <= 0.0 or right_coverage <= 0.0:
        return 0.0
    b2 = beta * beta
    return (1 + b2) * left_coverage * right_coverage / (b2 * right_coverage + left_coverage)


# --------------------------------------------------------------------------- brand and price


def brand_of(record: Mapping[str, Any]) -> str | None:
    """The record's brand field (``brand``, else ``manufacturer``), case-folded; None when blank."""
    for key in ("brand", "manufacturer"):
        value = record.get(key)
        if value not in (None, ""):
            text = clean_text(str(value)).casefold()
            if text:
                return text
    return None


def _contains_run(haystack: Sequence[str], needle: Sequence[str]) -> bool:
    n = len(needle)
    return n > 0 and any(list(haystack[i : i + n]) == list(needle) for i in range(len(haystack) - n + 1))


def _brand_agreement(
    left: Mapping[str, Any], right: Mapping[str, Any], left_title: Sequence[str], right_title: Sequence[str]
) -> Agreement:
    lb, rb = brand_of(left), brand_of(right)
    if lb and rb:
        lt, rt = tokenize(lb), tokenize(rb)
        # "sony" and "sony electronics" are one brand; so is a one-letter slip in a long name.
        if _contains_run(lt, rt) or _contains_run(rt, lt):
            return MATCH
        return MATCH if Levenshtein.normalized_similarity("".join(lt), "".join(rt)) >= 0.9 else CONFLICT
    # One brand field: agreement when the other title names it; a title that does not is no
    # evidence against, because titles often leave the brand out.
    if lb and _contains_run(right_title, tokenize(lb)):
        return MATCH
    if rb and _contains_run(left_title, tokenize(rb)):
        return MATCH
    return ABSENT


def price_of(record: Mapping[str, Any]) -> float | None:
    """A positive price from ``price`` (a number or text such as "$1,299.00"); None otherwise."""
    value = record.get("price")
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        price = float(value)
    else:
        text = str(value).strip()
        if text.startswith("-"):
            return None
        match = _PRICE.search(text)
        if match is None:
            return None
        digits = match.group(0)
        # "1,299.00", "1.299,00", "399.0": the last separator is the decimal one when one or two
        # digits follow it; three digits after it ("1,299") make it a thousands separator.
        decimal = re.search(r"[.,](\d{1,2})$", digits)
        if decimal:
            digits = re.sub(r"[.,]", "", digits[: decimal.start()]) + "." + decimal.group(1)
        else:
            digits = re.sub(r"[.,]", "", digits)
        try:
            price = float(digits)
        except ValueError:
            return None
    return price if math.isfinite(price) and price > 0 else None


def _price_log_ratio(left: Mapping[str, Any], right: Mapping[str, Any]) -> float | None:
    lp, rp = price_of(left), price_of(right)
    if lp is None or rp is None:
        return None
    lc, rc = left.get("currency"), right.get("currency")
    if lc and rc and str(lc).strip().upper() != str(rc).strip().upper():
        return None  # no exchange rates here: different currencies are not comparable
    return abs(math.log(lp / rp))


# --------------------------------------------------------------------------- the signals


@dataclass(frozen=True)
class PairSignals:
    """Catalogue-independent evidence about one (left, right) pair; see the module docstring."""

    #: ``match`` / ``conflict`` (both sides name identifiers, none agree) / ``absent``.
    identifier: Agreement
    #: Best :func:`identifier_similarity` over the two sides' identifiers; 0.0 when absent.
    identifier_score: float
    #: Weighted share of the left (offer) tokens found in the right (product).
    left_coverage: float
    #: Weighted share of the right tokens found in the left.
    right_coverage: float
    #: Soft F1 of the two coverages (symmetric; 1.0 only when each side covers the other).
    token_f1: float
    #: ``match`` / ``conflict`` (both brand fields given, different) / ``absent``.
    brand: Agreement
    #: ``|log(left price / right price)|``; None when a price is missing or currencies differ.
    price_log_ratio: float | None
    left_identifiers: tuple[str, ...] = ()
    right_identifiers: tuple[str, ...] = ()
    #: ``match`` / ``conflict`` / ``absent`` of the titles' quantities (:mod:`models.quantities`).
    quantity: Agreement = ABSENT
    #: ``match`` / ``conflict`` / ``absent`` of the titles' colours (:func:`colour_agreement`).
    colour: Agreement = ABSENT

    def f_beta(self, beta: float = 1.0) -> float:
        """:func:`f_beta` of the coverages (``beta`` = 1 is :attr:`token_f1`)."""
        return f_beta(self.left_coverage, self.right_coverage, beta)

    def as_features(self) -> list[float]:
        """Numbers in :data:`FEATURE_NAMES` order: one-hot agreements, scores, capped price gap."""
        price = self.price_log_ratio
        return [
            float(self.identifier == MATCH),
            float(self.identifier == CONFLICT),
            float(self.identifier == ABSENT),
            self.identifier_score,
            self.left_coverage,
            self.right_coverage,
            self.token_f1,
            float(self.brand == MATCH),
            float(self.brand == CONFLICT),
            float(self.brand == ABSENT),
            0.0 if price is None else min(price, PRICE_LOG_RATIO_CAP),
            float(price is None),
        ]

    def as_features_v2(self) -> list[float]:
        """Numbers in :data:`FEATURE_NAMES_V2` order: :meth:`as_features` and the quantity one-hot."""
        return [
            *self.as_features(),
            float(self.quantity == MATCH),
            float(self.quantity == CONFLICT),
            float(self.quantity == ABSENT),
        ]

    def as_features_v3(self) -> list[float]:
        """Numbers in :data:`FEATURE_NAMES_V3` order: :meth:`as_features_v2` and the colour one-hot."""
        return [
            *self.as_features_v2(),
            float(self.colour == MATCH),
            float(self.colour == CONFLICT),
            float(self.colour == ABSENT),
        ]


#: A catalogue stores its products' model numbers in a column this wide (``products.model_numbers``).
MODEL_NUMBERS_CHARS = 255


def model_numbers(attributes: Mapping[str, Any] | None) -> str | None:
    """The values of the attributes that hold manufacturer identifiers (:func:`identifier_key`),
    space-joined and cut at :data:`MODEL_NUMBERS_CHARS`: what a catalogue keeps beside each product,
    so that matching reads them without its whole attribute JSON. ``None`` when there are none."""
    if not isinstance(attributes, Mapping):
        return None
    values = [clean_text(str(v)) for k, v in attributes.items() if v not in (None, "") and identifier_key(k)]
    text = " ".join(v for v in values if v)[:MODEL_NUMBERS_CHARS].strip()
    return text or None


def _attribute_identifiers(record: Mapping[str, Any]) -> list[str]:
    attributes = record.get("attributes")
    if not isinstance(attributes, Mapping):
        return []
    out: list[str] = []
    for key, value in attributes.items():
        if value not in (None, "") and identifier_key(key):
            out.extend(t for t in tokenize(str(value)) if is_identifier(t))
    return out


def _record_text(record: Mapping[str, Any]) -> str:
    # embed_text reads "title"; benchmark records may call it "name" (Abt-Buy).
    if record.get("title"):
        return embed_text(record)
    return embed_text({**record, "title": title_of(record)})


def pair_signals(left: Mapping[str, Any], right: Mapping[str, Any]) -> PairSignals:
    """All signals of one pair. ``left`` is the offer, ``right`` the catalogue product."""
    raw_left, raw_right = _tokens(_record_text(left)), _tokens(_record_text(right))
    lt = _unique(join_fragments(raw_left, raw_right))
    rt = _unique(join_fragments(raw_right, raw_left))
    title_left, title_right = identifiers(lt), identifiers(rt)
    attr_left, attr_right = _attribute_identifiers(left), _attribute_identifiers(right)
    left_ids, right_ids = _unique(title_left + attr_left), _unique(title_right + attr_right)
    identifier, id_score = _identifier_agreement(left_ids, right_ids)
    if identifier == CONFLICT and not (attr_left and attr_right):
        # A model number that only one side's attributes list is often just missing from the
        # other side's title (or is a part number where the title names a processor): it can
        # confirm a match, never contradict one. Two attribute lists, or two titles, can.
        identifier, id_score = _identifier_agreement(title_left, title_right)
    left_cov = _coverage(lt, rt)
    right_cov = _coverage(rt, lt)
    left_text, right_text = title_of(left), title_of(right)
    left_title, right_title = _tokens(left_text), _tokens(right_text)
    return PairSignals(
        identifier=identifier,
        identifier_score=id_score,
        left_coverage=left_cov,
        right_coverage=right_cov,
        token_f1=f_beta(left_cov, right_cov, 1.0),
        brand=_brand_agreement(left, right, left_title, right_title),
        price_log_ratio=_price_log_ratio(left, right),
        left_identifiers=tuple(left_ids),
        right_identifiers=tuple(right_ids),
        quantity=quantity_agreement(left_text, right_text),
        colour=colour_agreement(left_title, right_title),
    )
