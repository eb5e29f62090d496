"""Leave one dataset out: the recipe trained without X, tested on X's test split.

The held-out benchmark decides nothing: the matcher is used at the threshold its own pooled
validation chose. The oracle threshold (the best F1 on X's test labels) is reported beside it,
labelled as such, to separate a score that does not transfer from a threshold that does not.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.calibration import threshold_for_best_f1
from models.default_matcher import DefaultMatcher, PairScores
from training.default_recipe.config import DEFAULT_SOURCES, RecipeConfig, SourceSpec
from training.default_recipe.head import f1_at
from training.default_recipe.sources import ProductPair, load_source
from training.metrics import pr_auc

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LooTarget:
    """A held-out benchmark: the source left out and the test set it is judged on."""

    name: str
    source: str
    reader_overrides: dict[str, Any]
    label: str


#: Abt-Buy, Amazon-Google and WDC Products with 100 % unseen products (leaving WDC Products out
#: leaves WDC Block out too: it was cut from WDC Products).
LOO_TARGETS: dict[str, LooTarget] = {
    "abt-buy": LooTarget("abt-buy", "abt-buy", {}, "Abt-Buy"),
    "amazon-google": LooTarget("amazon-google", "amazon-google", {}, "Amazon-Google"),
    "wdc-products": LooTarget("wdc-products", "wdc-products", {"test": "100un"}, "WDC Products 100 % unseen"),
}


def loo_config(target: str, base: RecipeConfig | None = None) -> RecipeConfig:
    """The recipe config without ``target``'s source (and what derives from it)."""
    cfg = base or RecipeConfig()
    return cfg.with_overrides(exclude=tuple(sorted({*cfg.exclude, LOO_TARGETS[target].source})))


def source_spec(name: str, sources: Sequence[SourceSpec]) -> SourceSpec:
    for spec in sources:
        if spec.name == name:
            return spec
    raise KeyError(f"no source named {name!r}")


def load_target_test(
    target: str, root: str | Path | None = None, sources: Sequence[SourceSpec] = DEFAULT_SOURCES
) -> list[ProductPair]:
    """The held-out test pairs as service products (the recipe's own field mapping)."""
    t = LOO_TARGETS[target]
    data = load_source(source_spec(t.source, sources), root, **t.reader_overrides)
    if not data.test:
        raise ValueError(f"{target}: no test pairs")
    return data.test


def binary_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, Any]:
    """F1/P/R at ``threshold`` and, labelled oracle, at the best threshold on these labels."""
    y = np.asarray(labels, dtype=np.int64)
    oracle = threshold_for_best_f1(scores, y)
    return {
        "threshold": float(threshold),
        **f1_at(scores, y, threshold),
        "oracle_threshold": oracle.threshold,
        "oracle_f1": oracle.f1,
        "oracle_precision": oracle.precision,
        "oracle_recall": oracle.recall,
        "pr_auc": pr_auc(np.asarray(scores, dtype=np.float64), y),
    }


def score_default_matcher(matcher: DefaultMatcher, pairs: Sequence[ProductPair]) -> PairScores:
    """The matcher's scores of each pair, one offer's candidates grouped as the service groups them."""
    return matcher.score_pairs([p.left for p in pairs], [p.right for p in pairs], groups=[p.left_id for p in pairs])


def evaluate_default_matcher(
    matcher: DefaultMatcher, pairs: Sequence[ProductPair], scores: PairScores | None = None
) -> dict[str, Any]:
    """The head's probabilities at its own threshold (and oracle), and the cross-encoder alone
    (temperature-calibrated, at its own validation threshold) beside it; ``scores`` are
    :func:`score_default_matcher`'s, computed here when not given."""
    if scores is None:
        scores = score_default_matcher(matcher, pairs)
    labels = np.asarray([p.label for p in pairs])
    out: dict[str, Any] = {
        "pairs": len(pairs),
        "positives": int(labels.sum()),
        "head": binary_metrics(scores.probabilities, labels, matcher.threshold),
    }
    if matcher.calibrator is not None:
        ce_threshold = float(matcher.manifest.metrics["valid_cross_encoder_only"]["best_f1"]["threshold"])
        out["cross_encoder_only"] = binary_metrics(matcher.calibrator.apply(scores.logits), labels, ce_threshold)
    return out


__all__ = [
    "LOO_TARGETS",
    "LooTarget",
    "binary_metrics",
    "evaluate_default_matcher",
    "load_target_test",
    "loo_config",
    "score_default_matcher",
    "source_spec",
]
