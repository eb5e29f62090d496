"""Balanced sampling across the training sources, and the pooled validation set.

A source's share of an epoch is proportional to ``size ** alpha`` (alpha 0.5: a source 16 times
larger gets 4 times the pairs), capped at ``max_share`` of the epoch and at ``max_repeats`` times
its own size; what a cap takes from one source is handed to the uncapped ones. Each epoch
draws a fresh sample from a generator seeded by ``(seed, epoch, source)``, so a resumed run draws
exactly the pairs the interrupted one would have.
"""

from __future__ import annotations

import logging
import math
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from training.default_recipe.sources import ProductPair, SourceData

logger = logging.getLogger(__name__)


def quotas(sizes: Mapping[str, int], total: int, alpha: float, max_share: float, max_repeats: float) -> dict[str, int]:
    """Pairs per source for one epoch: ``size ** alpha`` shares with the two caps (water-filling).

    The quotas add up to ``total`` unless every source is capped (then to the sum of the caps).
    """
    if total < 1 or not sizes:
        raise ValueError("quotas need a positive total and at least one source")
    caps = {k: min(max_share * total, max_repeats * n) for k, n in sizes.items()}
    alloc: dict[str, float] = {}
    free = {k for k, n in sizes.items() if n > 0}
    left = float(total)
    while free:
        weights = {k: sizes[k] ** alpha for k in free}
        norm = sum(weights.values())
        capped = {k for k in free if left * weights[k] / norm > caps[k]}
        if not capped:
            alloc.update({k: left * weights[k] / norm for k in free})
            break
        for k in capped:
            alloc[k] = caps[k]
            left -= caps[k]
        free -= capped
    return _round_preserving_sum(alloc, min(total, round(sum(alloc.values()))))


def _round_preserving_sum(values: Mapping[str, float], total: int) -> dict[str, int]:
    floors = {k: math.floor(v) for k, v in values.items()}
    rest = total - sum(floors.values())
    # Largest remainders first; names break ties so the result does not depend on dict order.
    for k in sorted(values, key=lambda k: (floors[k] - values[k], k))[: max(0, rest)]:
        floors[k] += 1
    return floors


@dataclass
class Mixture:
    """The sources' training pairs (+ mined negatives) and the per-epoch sampling plan."""

    sources: list[SourceData]
    mined: dict[str, list[ProductPair]]
    quota: dict[str, int]
    hard_negative_share: float
    seed: int

    @classmethod
    def build(
        cls,
        sources: Sequence[SourceData],
        mined: Mapping[str, list[ProductPair]],
        pairs_per_epoch: int,
        alpha: float,
        max_share: float,
        max_repeats: float,
        hard_negative_share: float,
        seed: int,
    ) -> Mixture:
        sizes = {s.name: len(s.train) for s in sources}
        quota = quotas(sizes, pairs_per_epoch, alpha, max_share, max_repeats)
        for s in sources:
            logger.info(
                "mixture: %s %d train pairs (+%d mined negatives) -> %d per epoch (%.1f%%)",
                s.name,
                sizes[s.name],
                len(mined.get(s.name, [])),
                quota[s.name],
                100 * quota[s.name] / max(1, sum(quota.values())),
            )
        return cls(list(sources), {k: list(v) for k, v in mined.items()}, quota, hard_negative_share, seed)

    @property
    def pairs_per_epoch(self) -> int:
        return sum(self.quota.values())

    def epoch(self, epoch: int) -> list[ProductPair]:
        """The shuffled training pairs of ``epoch`` (1-based); the same for the same seed and epoch."""
        out: list[ProductPair] = []
        for index, source in enumerate(self.sources):
            rng = np.random.default_rng([self.seed, epoch, index])
            n = self.quota[source.name]
            mined = self.mined.get(source.name, [])
            n_mined = min(len(mined), round(n * self.hard_negative_share)) if mined else 0
            out += _draw(source.train, n - n_mined, rng) + _draw(mined, n_mined, rng)
        order = np.random.default_rng([self.seed, epoch]).permutation(len(out))
        return [out[i] for i in order]


def _draw(pairs: Sequence[ProductPair], n: int, rng: np.random.Generator) -> list[ProductPair]:
    """``n`` pairs: whole shuffled passes over ``pairs``, then a sample without replacement."""
    if n <= 0 or not pairs:
        return []
    full, rest = divmod(n, len(pairs))
    idx = [int(i) for _ in range(full) for i in rng.permutation(len(pairs))]
    idx += [int(i) for i in rng.choice(len(pairs), size=rest, replace=False)]
    return [pairs[i] for i in idx]


def pooled_validation(sources: Sequence[SourceData], per_source: int, seed: int = 0) -> list[ProductPair]:
    """Up to ``per_source`` validation pairs of every source, stratified by label (fixed seed).

    Each source contributes the same number of pairs where it has them, so no source dominates
    the threshold; a smaller source is weighted up by the head (see ``source_weights``).
    """
    out: list[ProductPair] = []
    for source in sources:
        pairs = source.valid
        if len(pairs) > per_source:
            rng = random.Random(f"{seed}:{source.name}")
            pos = [p for p in pairs if p.label == 1]
            neg = [p for p in pairs if p.label != 1]
            n_pos = min(len(pos), max(1, round(per_source * len(pos) / len(pairs)))) if pos else 0
            pairs = rng.sample(pos, n_pos) + rng.sample(neg, min(len(neg), per_source - n_pos))
        out += pairs
    return out


def source_weights(sources: Sequence[str]) -> np.ndarray:
    """Per-pair weights giving every source the same total weight (mean weight 1)."""
    names = list(sources)
    if not names:
        return np.zeros(0)
    counts = Counter(names)
    per_source = len(names) / len(counts)
    return np.asarray([per_source / counts[k] for k in names], dtype=np.float64)


__all__ = ["Mixture", "pooled_validation", "quotas", "source_weights"]
