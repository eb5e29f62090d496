"""Hard negatives mined with the bi-encoder inside each training catalogue.

For a left record, its nearest right records (cosine of the service's embedded text) that are
*not* its matches are the confusable products a blocker hands the matcher. That a neighbour is
not a match is only known where the source's cluster ids tell every match of a record
(``SourceData.left_clusters``, set only when they agree with every training label); the other
sources keep their given negatives. Only training records are used: no validation or test
record, nor its cluster id, enters the mined pairs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from models.product_text import embed_text
from training.default_recipe.sources import Product, ProductPair, SourceData

logger = logging.getLogger(__name__)


class TextEncoder(Protocol):
    """What mining needs of :class:`models.bi_encoder.BiEncoder`: unit vectors for texts."""

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray: ...


def mine_hard_negatives(
    source: SourceData,
    encoder: TextEncoder,
    k: int = 10,
    per_record: int = 3,
    batch_size: int = 128,
) -> list[ProductPair]:
    """Up to ``per_record`` negatives per left training record among its ``k`` nearest right
    training records; none for a source without complete clusters."""
    if source.left_clusters is None or source.right_clusters is None:
        return []
    left: dict[str, Product] = {}
    right: dict[str, Product] = {}
    given = set()
    for p in source.train:
        left.setdefault(p.left_id, p.left)
        right.setdefault(p.right_id, p.right)
        given.add((p.left_id, p.right_id))
    left_ids, right_ids = sorted(left), sorted(right)
    if not left_ids or not right_ids:
        return []
    q = encoder.encode([embed_text(left[i]) for i in left_ids], batch_size=batch_size)
    r = encoder.encode([embed_text(right[i]) for i in right_ids], batch_size=batch_size)
    k = min(k, len(right_ids))
    out: list[ProductPair] = []
    for start in range(0, len(left_ids), 1024):  # bounded memory: 1024 x |right| scores at a time
        sims = q[start : start + 1024] @ r.T
        top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        for row, neighbours in enumerate(top):
            lid = left_ids[start + row]
            cluster = source.left_clusters[lid]
            taken = 0
            for j in neighbours:
                rid = right_ids[int(j)]
                if source.right_clusters[rid] == cluster or (lid, rid) in given:
                    continue
                out.append(ProductPair(left[lid], right[rid], 0, source.name, lid, rid))
                taken += 1
                if taken >= per_record:
                    break
    logger.info(
        "mined %d hard negatives in %s (%d left records, %d nearest right records each)",
        len(out),
        source.name,
        len(left_ids),
        k,
    )
    return out


__all__ = ["TextEncoder", "mine_hard_negatives"]
