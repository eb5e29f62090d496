"""Attribute dropout: a catalogue the model never saw may store only a title, or put the brand
inside it. Each training record side independently loses attributes, so the matcher learns to
decide from whatever fields a catalogue happens to fill (never applied to validation data)."""

from __future__ import annotations

import random
from typing import Any

from training.default_recipe.config import DropoutConfig

Product = dict[str, Any]


def drop_attributes(product: Product, config: DropoutConfig, rng: random.Random) -> Product:
    """A copy of ``product`` with attributes dropped (the title always stays).

    Draw order (fixed, so a seed reproduces a run): title-only?, then per non-title field in the
    mapping's order drop?, then brand-into-title?. A dropped field becomes None, which the
    serialiser writes exactly as the service writes a field a catalogue does not fill.
    """
    out = dict(product)
    others = [k for k in out if k != "title"]
    if rng.random() < config.p_title_only:
        for key in others:
            out[key] = None
        return out
    for key in others:
        if rng.random() < config.p_field:
            out[key] = None
    brand, title = out.get("brand"), str(out.get("title") or "")
    if rng.random() < config.p_brand_in_title and brand and str(brand).casefold() not in title.casefold():
        out["title"] = f"{brand} {title}".strip()
        out["brand"] = None
    return out


__all__ = ["drop_attributes"]
