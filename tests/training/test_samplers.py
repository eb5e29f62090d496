"""Samplers: Block-SCL batch composition, MNRL no-duplicate batches, determinism."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from training.samplers import BlockingEnrichedBatchSampler, NoDuplicateProductPairSampler, mine_neighbours


def _labels() -> list[int]:
    # 12 products with 3 offers, then 20 singletons: 56 items.
    return [g for g in range(12) for _ in range(3)] + list(range(100, 120))


def _table(labels: list[int], k: int = 6) -> np.ndarray:
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(len(labels), 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return mine_neighbours(emb, k, labels)


def test_mine_neighbours_excludes_self_and_same_product() -> None:
    labels = _labels()
    table = _table(labels)
    assert table.shape == (len(labels), 6)
    for i, row in enumerate(table):
        assert i not in row
        assert all(labels[j] != labels[i] for j in row if j >= 0)


def test_batch_composition() -> None:
    labels = _labels()
    table = _table(labels)
    k, p, m, b = 4, 2, 2, 24
    sampler = BlockingEnrichedBatchSampler(
        labels, table, batch_size=b, anchors_per_batch=k, offers_per_anchor=p, hard_negatives=m, seed=3
    )
    batches = list(sampler)
    assert len(batches) == len(sampler) == 3  # 12 anchor products / K=4
    seen_anchor_products: set[int] = set()
    for batch in batches:
        assert len(batch) == b and len(set(batch)) == b
        anchors = batch[: k * p]
        counts = Counter(labels[i] for i in anchors)
        # K anchor products, P offers each, all of them products with >= 2 offers.
        assert len(counts) == k and set(counts.values()) == {p}
        assert all(labels[i] < 100 for i in anchors)
        seen_anchor_products |= set(counts)
        # Hard negatives: blocker candidates of the anchor offers, of *other* products.
        hard = batch[k * p : k * p + k * p * m]
        candidates = {int(c) for a in anchors for c in table[a] if c >= 0}
        for item in hard:
            assert item in candidates
            assert any(labels[item] != labels[a] and item in table[a] for a in anchors)
    assert seen_anchor_products == set(range(12))  # every anchor product once per epoch


def test_labelled_non_matches_come_first() -> None:
    labels = _labels()
    table = _table(labels)
    anchor_item = 0
    # Pick the last candidate of item 0 as a labelled non-match: it must be chosen first.
    labelled = int(table[anchor_item][-1])
    sampler = BlockingEnrichedBatchSampler(
        labels,
        table,
        batch_size=8,
        anchors_per_batch=1,
        offers_per_anchor=3,
        hard_negatives=1,
        known_non_matches={anchor_item: {labelled}},
        seed=0,
    )
    for batch in sampler:
        if anchor_item in batch[:3]:
            assert labelled in batch[3:6]
            break
    else:
        pytest.fail("product 0 never anchored")
    # Candidate order: the labelled non-match first, then the rest in blocker rank order.
    order = sampler._candidates(anchor_item, table)
    assert order[0] == labelled and order[1:] == [int(c) for c in table[anchor_item] if c != labelled]
    only = BlockingEnrichedBatchSampler(
        labels,
        table,
        anchors_per_batch=1,
        offers_per_anchor=3,
        batch_size=8,
        known_non_matches={anchor_item: {labelled}},
        only_labelled_negatives=True,
    )
    assert only._candidates(anchor_item, table) == [labelled]
    assert only._candidates(1, table) == []


def test_determinism_per_seed_and_epoch() -> None:
    labels = _labels()
    table = _table(labels)

    def run(seed: int, epoch: int) -> list[list[int]]:
        s = BlockingEnrichedBatchSampler(labels, table, batch_size=20, anchors_per_batch=4, seed=seed)
        s.set_epoch(epoch)
        return list(s)

    assert run(1, 0) == run(1, 0)
    assert run(1, 0) != run(2, 0)
    assert run(1, 0) != run(1, 1)


def test_callable_neighbours_called_per_epoch() -> None:
    labels = _labels()
    table = _table(labels)
    calls: list[int] = []

    def remine(epoch: int) -> np.ndarray:
        calls.append(epoch)
        return table

    s = BlockingEnrichedBatchSampler(labels, remine, batch_size=16, anchors_per_batch=4, seed=0)
    for epoch in range(3):
        s.set_epoch(epoch)
        list(s)
    assert calls == [0, 1, 2]


def test_rejects_oversized_anchor_block() -> None:
    with pytest.raises(ValueError):
        BlockingEnrichedBatchSampler([0, 0, 1, 1], np.zeros((4, 1), dtype=int), batch_size=4, anchors_per_batch=3)


def test_no_duplicate_product_pairs() -> None:
    # 30 rows over 12 products, one product with 8 rows.
    product_ids = [0] * 8 + [p for p in range(1, 12) for _ in range(2)]
    sampler = NoDuplicateProductPairSampler(product_ids, batch_size=5, seed=4)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    for batch in batches:
        pids = [product_ids[i] for i in batch]
        assert len(pids) == len(set(pids))
        assert 2 <= len(batch) <= 5
    covered = [i for b in batches for i in b]
    assert len(covered) == len(set(covered))
    # Only leftovers of the big product can be dropped (batches of one row).
    assert {product_ids[i] for i in set(range(len(product_ids))) - set(covered)} <= {0}
    again = NoDuplicateProductPairSampler(product_ids, batch_size=5, seed=4)
    assert list(again) == batches
    again.set_epoch(1)
    assert list(again) != batches
