"""The released default matcher in ``artefacts/default-matcher/``, as `make run` serves it.

A release is committed, so these run on every checkout: a missing, broken, oversized or
unlicensed folder fails here rather than at a user's start-up.
"""

from __future__ import annotations

import json

import pytest

from app.core.config import SHIPPED_DEFAULT_MATCHER
from app.registry.default_matcher import check_folder, has_model
from models.default_matcher import MODEL_CARD, load_default_matcher

pytestmark = pytest.mark.integration

MAX_BYTES = 100 * 1024 * 1024


def test_release_folder_is_complete_small_and_licensed() -> None:
    assert has_model(SHIPPED_DEFAULT_MATCHER)
    assert check_folder(SHIPPED_DEFAULT_MATCHER).startswith("default-")
    files = [p for p in SHIPPED_DEFAULT_MATCHER.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= MAX_BYTES
    assert not [p.name for p in files if p.suffix in (".bin", ".pt", ".pth", ".pkl", ".ckpt")]
    manifest = json.loads((SHIPPED_DEFAULT_MATCHER / "manifest.json").read_text(encoding="utf-8"))
    sources = manifest["settings"]["sources"]
    assert sources and all(s["licence"] and s["licence"] != "see SOURCES.md" for s in sources)
    card = (SHIPPED_DEFAULT_MATCHER / MODEL_CARD).read_text(encoding="utf-8")
    assert "Licence" in card or "licence" in card


def test_release_tells_a_product_from_its_neighbours() -> None:
    matcher = load_default_matcher(SHIPPED_DEFAULT_MATCHER)
    offer = {"title": "Sony WH-1000XM5 Wireless Noise Cancelling Headphones, Black", "price": 348.0}
    candidates = [
        {"title": "SONY WH1000XM5/B headphones - black", "brand": "Sony", "price": 349.99},
        {"title": "Sony WH-1000XM4 Wireless Headphones Black", "brand": "Sony", "price": 248.0},
        {"title": "Canon EOS R50 mirrorless camera body", "brand": "Canon", "price": 679.0},
    ]
    probs = matcher.score(offer, candidates)
    # The same model in another spelling matches; the sibling model and another product rank below.
    assert probs[0] >= matcher.threshold > probs[2]
    assert probs[0] > max(probs[1], probs[2])
