"""Settings defaults that restate a tuned default of `models/` (settings import nothing from it)."""

from __future__ import annotations

from typing import get_args

from app.core.config import SERVING_PRECISIONS, Settings
from models.hybrid_blocking import DEFAULT_LEXICAL_CANDIDATES, DEFAULT_LEXICAL_WEIGHT, DEFAULT_POOL
from models.serving_precision import SERVING_PRECISIONS as MODEL_SERVING_PRECISIONS


def test_hybrid_blocking_defaults_match_the_models_defaults() -> None:
    fields = Settings.model_fields
    assert fields["blocking_pool"].default == DEFAULT_POOL
    assert fields["blocking_lexical_candidates"].default == DEFAULT_LEXICAL_CANDIDATES
    assert fields["blocking_lexical_weight"].default == DEFAULT_LEXICAL_WEIGHT


def test_precision_values_match_the_models_values() -> None:
    assert SERVING_PRECISIONS == MODEL_SERVING_PRECISIONS
    assert get_args(Settings.model_fields["precision"].annotation) == MODEL_SERVING_PRECISIONS
