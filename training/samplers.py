"""Batch samplers for blocker training (METHODS §3.4, §3.5).

* :class:`BlockingEnrichedBatchSampler` builds Block-SCL batches: K anchor products with P
  offers each (mutual positives), the top-M blocker candidates of *other* products as hard
  negatives, and random offers to fill the batch. Random in-batch negatives are mostly easy for
  product titles; the blocker's own confusions are what the matcher has to separate.
* :class:`NoDuplicateProductPairSampler` builds MNRL batches with at most one row per product,
  because in-batch-negative losses would otherwise push two offers of one product apart.

Both yield lists of indices, are seeded, and give a different but reproducible order per
epoch (``set_epoch``).
"""

from __future__ import annotations

import logging
import math
import random
from collections import defaultdict
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence

import faiss
import numpy as np

logger = logging.getLogger(__name__)

#: A precomputed (n, k) neighbour table (item indices, best first, -1 = none), or a callable
#: ``epoch -> table`` that re-mines with the current encoder.
NeighbourSource = np.ndarray | Callable[[int], np.ndarray]


def mine_neighbours(
    embeddings: np.ndarray,
    k: int,
    labels: Sequence[int] | None = None,
    components: Sequence[int] | None = None,
) -> np.ndarray:
    """Top-``k`` nearest items of every item by exact inner product, excluding itself.

    With ``labels``, items of the same product are skipped (they are positives, not
    candidates); with ``components``, items of the same uncapped component too. Rows with fewer
    than ``k`` candidates are padded with -1. This is the "blocker candidate" table of §3.4.
    """
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    n = x.shape[0]
    out = np.full((n, k), -1, dtype=np.int64)
    if n <= 1 or k <= 0:
        return out
    label_arr = np.asarray(labels) if labels is not None else None
    comp_arr = np.asarray(components) if components is not None else None
    largest = 1
    for arr in (label_arr, comp_arr):
        if arr is not None and len(arr):
            largest = max(largest, int(np.unique(arr, return_counts=True)[1].max()))
    depth = min(n, k + largest + 1)
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    _, found = index.search(x, depth)
    for i in range(n):
        row = found[i]
        keep = (row >= 0) & (row != i)
        if label_arr is not None:
            keep &= label_arr[np.clip(row, 0, None)] != label_arr[i]
        if comp_arr is not None:
            keep &= comp_arr[np.clip(row, 0, None)] != comp_arr[i]
        chosen = row[keep][:k]
        out[i, : len(chosen)] = chosen
    return out


class BlockingEnrichedBatchSampler:
    """Block-SCL batches: K products x P offers + M hard negatives per offer + random fill.

    Args:
        labels: product id of every item (index = item index).
        neighbours: (n, k) blocker-candidate table (see :func:`mine_neighbours`) or a callable
            ``epoch -> table``, called at the start of every epoch (re-mining).
        batch_size: B, items per batch.
        anchors_per_batch: K anchor products per batch.
        offers_per_anchor: P offers sampled from each anchor product.
        hard_negatives: M candidates of *other* products added per anchor offer, round-robin
            (every offer gets its first before any gets its second) until the batch is full.
        known_non_matches: item -> items it is labelled a non-match with; these candidates are
            taken first (METHODS §3.5: unlabelled candidates may be missed matches).
        only_labelled_negatives: use labelled non-matches only, never unlabelled candidates.
        components: optional uncapped component per item; candidates of the anchor's
            component are skipped (a split component is not a sure negative).
        min_offers: products with at least this many items are anchors; if there are none,
            every product is (the loss then has no positives, which is logged).
        seed: base seed; epoch ``e`` uses ``Random(seed * 1_000_003 + e)``.

    One epoch visits every anchor product once (shuffled); the last batch is topped up with
    random other anchor products, so every batch has K anchors when K <= #anchors.
    """

    def __init__(
        self,
        labels: Sequence[int],
        neighbours: NeighbourSource,
        *,
        batch_size: int = 128,
        anchors_per_batch: int = 32,
        offers_per_anchor: int = 2,
        hard_negatives: int = 4,
        known_non_matches: Mapping[int, Collection[int]] | None = None,
        only_labelled_negatives: bool = False,
        components: Sequence[int] | None = None,
        min_offers: int = 2,
        seed: int = 0,
    ) -> None:
        if anchors_per_batch < 1 or offers_per_anchor < 1 or hard_negatives < 0:
            raise ValueError("anchors_per_batch and offers_per_anchor must be >= 1, hard_negatives >= 0")
        if anchors_per_batch * offers_per_anchor > batch_size:
            raise ValueError(f"K*P = {anchors_per_batch}*{offers_per_anchor} exceeds the batch size {batch_size}")
        self.labels = [int(x) for x in labels]
        self.n_items = len(self.labels)
        if self.n_items == 0:
            raise ValueError("no items to sample from")
        self.batch_size = min(batch_size, self.n_items)
        self.anchors_per_batch = anchors_per_batch
        self.offers_per_anchor = offers_per_anchor
        self.hard_negatives = hard_negatives
        self.known_non_matches = {int(k): set(map(int, v)) for k, v in (known_non_matches or {}).items()}
        self.only_labelled_negatives = only_labelled_negatives
        self.components = [int(c) for c in components] if components is not None else None
        self.seed = seed
        self.epoch = 0
        self._neighbour_source = neighbours
        self._table: np.ndarray | None = None if callable(neighbours) else np.asarray(neighbours)

        members: dict[int, list[int]] = defaultdict(list)
        for idx, label in enumerate(self.labels):
            members[label].append(idx)
        self.members = dict(members)
        anchors = sorted(g for g, items in self.members.items() if len(items) >= min_offers)
        if not anchors:
            logger.warning("no product has %d+ items: anchors without positives (SupCon loss will be 0)", min_offers)
            anchors = sorted(self.members)
        self.anchor_groups = anchors

    # ------------------------------------------------------------------ epoch handling
    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def set_neighbours(self, table: np.ndarray) -> None:
        """Replace the candidate table (e.g. re-mined with the current encoder)."""
        self._table = np.asarray(table)

    def __len__(self) -> int:
        return math.ceil(len(self.anchor_groups) / self.anchors_per_batch)

    def _neighbour_table(self) -> np.ndarray:
        if callable(self._neighbour_source):
            self._table = np.asarray(self._neighbour_source(self.epoch))
        assert self._table is not None
        if self._table.shape[0] != self.n_items:
            raise ValueError(f"neighbour table has {self._table.shape[0]} rows for {self.n_items} items")
        return self._table

    # ------------------------------------------------------------------ batch building
    def _candidates(self, item: int, table: np.ndarray) -> list[int]:
        """Blocker candidates of ``item`` in preference order: labelled non-matches first."""
        row = [int(c) for c in table[item] if c >= 0]
        own_label = self.labels[item]
        own_comp = self.components[item] if self.components is not None else None
        row = [
            c
            for c in row
            if self.labels[c] != own_label and (own_comp is None or self.components[c] != own_comp)  # type: ignore[index]
        ]
        labelled = self.known_non_matches.get(item, set())
        first = [c for c in row if c in labelled]
        if self.only_labelled_negatives:
            return first
        return first + [c for c in row if c not in labelled]

    def _batch(self, anchor_groups: list[int], table: np.ndarray, rng: random.Random) -> list[int]:
        batch: list[int] = []
        in_batch: set[int] = set()
        anchor_items: list[int] = []
        for group in anchor_groups:
            items = self.members[group]
            chosen = rng.sample(items, min(self.offers_per_anchor, len(items)))
            for item in chosen:
                if item not in in_batch and len(batch) < self.batch_size:
                    batch.append(item)
                    in_batch.add(item)
                    anchor_items.append(item)

        anchor_labels = {self.labels[i] for i in anchor_items}
        if self.hard_negatives > 0 and len(batch) < self.batch_size:
            queues = [self._candidates(item, table) for item in anchor_items]
            pointers = [0] * len(queues)
            taken = [0] * len(queues)
            progress = True
            while progress and len(batch) < self.batch_size:
                progress = False
                for q, queue in enumerate(queues):
                    if taken[q] >= self.hard_negatives or len(batch) >= self.batch_size:
                        continue
                    while pointers[q] < len(queue):
                        cand = queue[pointers[q]]
                        pointers[q] += 1
                        # Another anchor's offer is already in: not a new negative.
                        if cand in in_batch or self.labels[cand] == self.labels[anchor_items[q]]:
                            continue
                        batch.append(cand)
                        in_batch.add(cand)
                        taken[q] += 1
                        progress = True
                        break

        # Fill with random offers, preferring ones that do not belong to an anchor product (they
        # would be extra positives, which is harmless, but random negatives are the point here).
        need = self.batch_size - len(batch)
        if need > 0:
            order = list(range(self.n_items))
            rng.shuffle(order)
            spare: list[int] = []
            for item in order:
                if need == 0:
                    break
                if item in in_batch:
                    continue
                if self.labels[item] in anchor_labels:
                    spare.append(item)
                    continue
                batch.append(item)
                in_batch.add(item)
                need -= 1
            for item in spare[:need]:
                batch.append(item)
                in_batch.add(item)
        return batch

    def __iter__(self) -> Iterator[list[int]]:
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        table = self._neighbour_table()
        order = list(self.anchor_groups)
        rng.shuffle(order)
        k = self.anchors_per_batch
        for start in range(0, len(order), k):
            groups = order[start : start + k]
            if len(groups) < k and len(order) > len(groups):
                chosen = set(groups)
                extra = [g for g in order if g not in chosen]
                groups = groups + rng.sample(extra, min(k - len(groups), len(extra)))
            yield self._batch(groups, table, rng)


class NoDuplicateProductPairSampler:
    """Batches of (anchor, positive) rows with at most one row per product id (MNRL).

    Rows are shuffled per epoch; each batch takes the next rows whose product is not in it yet,
    deferring the others to later batches. Batches of fewer than 2 rows (leftovers of a very
    large product) are dropped: in-batch negatives need another row.
    """

    def __init__(self, product_ids: Sequence[int], batch_size: int = 64, seed: int = 0) -> None:
        if batch_size < 2:
            raise ValueError("batch_size must be >= 2 for in-batch negatives")
        self.product_ids = [int(p) for p in product_ids]
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0
        self._cache: tuple[int, list[list[int]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _batches(self) -> list[list[int]]:
        if self._cache is not None and self._cache[0] == self.epoch:
            return self._cache[1]
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        remaining = list(range(len(self.product_ids)))
        rng.shuffle(remaining)
        batches: list[list[int]] = []
        while remaining:
            batch: list[int] = []
            seen: set[int] = set()
            rest: list[int] = []
            for row in remaining:
                pid = self.product_ids[row]
                if len(batch) < self.batch_size and pid not in seen:
                    batch.append(row)
                    seen.add(pid)
                else:
                    rest.append(row)
            if len(batch) >= 2:
                batches.append(batch)
            remaining = rest
        self._cache = (self.epoch, batches)
        return batches

    def __len__(self) -> int:
        return len(self._batches())

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._batches()
