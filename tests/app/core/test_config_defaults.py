"""Settings defaults that restate a tuned default of `models/` (settings import nothing from it)."""

from __future__ import annotations

from app.core.config import Settings
from models.hybrid_blocking import DEFAULT_LEXICAL_CANDIDATES, DEFAULT_LEXICAL_WEIGHT, DEFAULT_POOL


def test_hybrid_blocking_defaults_match_the_models_defaults() -> None:
    fields = Settings.model_fields
    assert fields["blocking_pool"].default == DEFAULT_POOL
    assert fields["blocking_lexical_candidates"].default == DEFAULT_LEXICAL_CANDIDATES
    assert fields["blocking_lexical_weight"].default == DEFAULT_LEXICAL_WEIGHT
