"""Quantities a product title names (sizes, weights, volumes, counts, capacities) and whether two
titles agree on them.

Near-identical products differ most often in one number with a unit: "1.75 oz (Pack of 6)" and
"1.75 Ounce 2 Pack", "200 Count" and "500 Count", "32 fl oz" and "1 Gallon", "25 Watt" and "18W",
"128GB" and "256GB". Every catalogue writes such differences the same way, so a disagreement is
evidence against a match without any training on the catalogue (on the labelled pairs of
Abt-Buy, 1,160 of the 1,170 pairs whose titles disagree on a quantity are non-matches).

A quantity is a number followed by a unit, or a pack phrase ("pack of 6", "set of 4", "6-pack",
"2 x"). Units are grouped into families whose values are converted to one base unit, so that
"32 fl oz" and "0.95 l", or "10 ft" and "120 in", compare. Mass and volume share one family on
the fluid-ounce/ounce scale: titles write "oz" for both, and water-like products make 1 g and 1 ml
interchangeable within the tolerance.

Agreement of two titles (:func:`quantity_agreement`):

* ``conflict``: a family named on both sides where no value on one side is within
  :data:`RELATIVE_TOLERANCE` of a value on the other;
* ``match``: families shared, none in conflict;
* ``absent``: no family named on both sides.

A side may name several values of one family ("80 ct (Pack of 6)"); one common value is enough
for that family to agree, because titles often add a pack size the other side leaves out. When
both sides name the same number of values of a family ("4GB RAM, 500GB" and "4GB RAM, 128GB"),
every value needs a counterpart. A number glued to a word by a hyphen ("i5-3210M") belongs to a
model code and is not read.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Literal

QuantityAgreement = Literal["match", "conflict", "absent"]

#: Values within this share of the larger one are the same quantity ("1.75 oz" and "50 g").
RELATIVE_TOLERANCE = 0.06

# unit -> (family, factor to the family's base unit)
_UNITS: dict[str, tuple[str, float]] = {}


def _family(name: str, factor: float, *units: str) -> None:
    for unit in units:
        _UNITS[unit] = (name, factor)


_family("size", 1.0, "oz", "ounce", "ounces", "fl oz", "fl. oz", "floz", "fluid ounce", "fluid ounces")
_family("size", 16.0, "lb", "lbs", "pound", "pounds", "pint", "pints")
_family("size", 32.0, "qt", "quart", "quarts")
_family("size", 128.0, "gal", "gallon", "gallons")
_family("size", 1 / 29.5735, "ml", "milliliter", "milliliters", "millilitre", "millilitres")
_family("size", 33.814, "l", "liter", "liters", "litre", "litres")
_family("size", 1 / 28.3495, "g", "gram", "grams")
_family("size", 35.274, "kg", "kilogram", "kilograms")
_family("size", 1 / 28349.5, "mg")
_family(
    "count",
    1.0,
    "count",
    "ct",
    "pcs",
    "pc",
    "piece",
    "pieces",
    "pack",
    "packs",
    "pk",
    "tablets",
    "capsules",
    "caps",
    "softgels",
    "gummies",
    "sheets",
    "rolls",
    "pods",
    "wipes",
    "pads",
    "bags",
    "servings",
    "sprays",
)
_family("storage", 1.0, "gb")
_family("storage", 1000.0, "tb")
_family("storage", 0.001, "mb")
_family("length", 1.0, "mm")
_family("length", 10.0, "cm")
_family("length", 1000.0, "m")
_family("length", 25.4, "in", "inch", "inches", '"', "\u201d")
_family("length", 304.8, "ft", "feet", "foot", "'", "\u2019")
_family("power", 1.0, "w", "watt", "watts")
_family("power", 1000.0, "kw")
_family("voltage", 1.0, "v", "volt", "volts")
_family("charge", 1.0, "mah")
_family("frequency", 1.0, "ghz")
_family("frequency", 0.001, "mhz")

_NUMBER = r"(\d{1,3}(?:,\d{3})+|\d+(?:[.,]\d+)?)"
_UNIT_ALTERNATION = "|".join(re.escape(u) for u in sorted(_UNITS, key=len, reverse=True))
# A unit must end the word: "5g" is a unit, "5gb" another one, "5gx" none.
# A number glued to a word by a hyphen is part of a model code ("i5-3210m" is no length).
_WITH_UNIT = re.compile(rf"(?<![\w.,])(?<!\w-){_NUMBER}\s*-?\s*({_UNIT_ALTERNATION})(?![a-z0-9])")
_PACK_OF = re.compile(r"\b(?:pack|set|case|box|bundle|lot)\s+of\s+(\d+)\b")
_TIMES = re.compile(r"(?<![\w.,])(\d{1,3})\s*x\s+(?=\d)")
# "3 in 1", "2-in-1": a product type, not three inches.
_N_IN_ONE = re.compile(r"\d+\s*-?\s*in\s*-?\s*\d")
# Mobile network generations ("5G", "4G LTE") read as grams otherwise.
_NETWORK = re.compile(r"(?<![\w.,])[2-6]\s*g(?![a-z0-9])")
_CACHE = 65_536


def _number(text: str) -> float | None:
    if re.fullmatch(r"\d{1,3}(?:,\d{3})+", text):
        text = text.replace(",", "")
    else:
        text = text.replace(",", ".")
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value > 0 else None


@lru_cache(maxsize=_CACHE)
def _quantities(title: str) -> tuple[tuple[str, tuple[float, ...]], ...]:
    text = _NETWORK.sub(" ", _N_IN_ONE.sub(" ", title.casefold()))
    found: dict[str, set[float]] = {}
    for number, unit in _WITH_UNIT.findall(text):
        value = _number(number)
        if value is not None:
            family, factor = _UNITS[unit]
            found.setdefault(family, set()).add(value * factor)
    for number in (*_PACK_OF.findall(text), *_TIMES.findall(text)):
        value = _number(number)
        if value is not None:
            found.setdefault("count", set()).add(value)
    return tuple(sorted((family, tuple(sorted(values))) for family, values in found.items()))


def quantities(title: str) -> dict[str, tuple[float, ...]]:
    """The quantities ``title`` names, by family, in the family's base unit (sorted values)."""
    return dict(_quantities(title))


def _same(a: float, b: float) -> bool:
    return abs(a - b) <= RELATIVE_TOLERANCE * max(a, b)


def quantity_agreement(left_title: str, right_title: str) -> QuantityAgreement:
    """``match`` / ``conflict`` / ``absent`` for two titles (module docstring)."""
    left, right = quantities(left_title), quantities(right_title)
    shared = left.keys() & right.keys()
    if not shared:
        return "absent"
    for family in shared:
        if not _family_agrees(left[family], right[family]):
            return "conflict"
    return "match"


def _family_agrees(left: tuple[float, ...], right: tuple[float, ...]) -> bool:
    if len(left) == len(right) > 1:
        # Both sides list the same number of values ("4GB RAM, 500GB" / "4GB RAM, 128GB"): each
        # needs a counterpart, or one common value (the RAM) would hide the difference.
        return all(any(_same(a, b) for b in right) for a in left) and all(any(_same(a, b) for a in left) for b in right)
    return any(_same(a, b) for a in left for b in right)
