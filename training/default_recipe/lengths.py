"""``max_length`` from the measured token lengths of the serialised training pairs.

Training cost grows with the padded length, and the description (serialised last) is the
longest and least decisive field: the length is set so that the pairs *without* their
descriptions fit at ``quantile``, rounded up to a multiple of 32, plus room for some
description tokens, within a cap. The distribution and the choice are logged and kept in the
manifest.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Sequence
from typing import Any

import numpy as np
from transformers import PreTrainedTokenizerBase

from models.product_text import serialize_product
from training.default_recipe.sources import ProductPair

logger = logging.getLogger(__name__)

QUANTILES = (0.5, 0.9, 0.95, 0.99)


def pair_token_lengths(
    tokenizer: PreTrainedTokenizerBase, pairs: Sequence[ProductPair], fields: Sequence[str]
) -> np.ndarray:
    """Untruncated token counts of the serialised pairs (special tokens included)."""
    if not pairs:
        return np.zeros(0, dtype=np.int64)
    left = [serialize_product(p.left, list(fields)) for p in pairs]
    right = [serialize_product(p.right, list(fields)) for p in pairs]
    enc = tokenizer(left, right, truncation=False)
    return np.asarray([len(ids) for ids in enc["input_ids"]], dtype=np.int64)


def choose_max_length(
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[ProductPair],
    fields: Sequence[str],
    quantile: float = 0.95,
    description_tokens: int = 32,
    cap: int = 128,
    sample: int = 4000,
    seed: int = 0,
) -> tuple[int, dict[str, Any]]:
    """The chosen length and a report of the distribution (full pairs and pairs without description)."""
    chosen = list(pairs) if len(pairs) <= sample else random.Random(seed).sample(list(pairs), sample)
    core_fields = [f for f in fields if f != "description"]
    full = pair_token_lengths(tokenizer, chosen, fields)
    core = pair_token_lengths(tokenizer, chosen, core_fields)
    if not full.size:
        raise ValueError("no pairs to measure")
    need = 32 * math.ceil(float(np.quantile(core, quantile)) / 32)
    if "description" in fields:
        need += description_tokens
    length = int(max(32, min(cap, need)))
    report = {
        "pairs_measured": int(full.size),
        "full": {f"p{round(100 * q)}": float(np.quantile(full, q)) for q in QUANTILES} | {"mean": float(full.mean())},
        "without_description": {f"p{round(100 * q)}": float(np.quantile(core, q)) for q in QUANTILES},
        "rule": f"ceil32(p{round(100 * quantile)} without description) + {description_tokens}, cap {cap}",
        "wanted": int(need),
        "max_length": length,
        "truncated_share": float((full > length).mean()),
    }
    logger.info(
        "token lengths of %d serialised pairs: full p50 %.0f p90 %.0f p99 %.0f; without description p95 %.0f "
        "-> max_length %d (wanted %d, cap %d; %.1f%% of pairs truncated)",
        full.size,
        report["full"]["p50"],
        report["full"]["p90"],
        report["full"]["p99"],
        report["without_description"]["p95"],
        length,
        need,
        cap,
        100 * report["truncated_share"],
    )
    return length, report


__all__ = ["choose_max_length", "pair_token_lengths"]
