"""SupConLoss: hand-computed values, positives/negatives handling, ignore mask, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from models.losses import SupConLoss, likely_duplicate_mask


def _unit(*rows: list[float]) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.tensor(rows, dtype=torch.float32), dim=-1)


def _reference(z: torch.Tensor, labels: list[int], tau: float, drop: set[tuple[int, int]] = frozenset()) -> float:
    """Literal double loop over METHODS §3.2."""
    n = len(labels)
    total, anchors = 0.0, 0
    for i in range(n):
        pos = [p for p in range(n) if p != i and labels[p] == labels[i]]
        if not pos:
            continue
        denom = sum(
            math.exp(float(z[i] @ z[a]) / tau)
            for a in range(n)
            if a != i and ((i, a) not in drop or labels[a] == labels[i])
        )
        total += -sum(math.log(math.exp(float(z[i] @ z[p]) / tau) / denom) for p in pos) / len(pos)
        anchors += 1
    return total / anchors


def test_hand_computed_two_pairs() -> None:
    # Orthogonal products: items 0,1 identical (product 0), items 2,3 identical (product 1).
    z = _unit([1, 0], [1, 0], [0, 1], [0, 1])
    tau = 0.5
    # Each anchor: positive logit 1/tau = 2, the two negatives 0 -> -log(e^2 / (e^2 + 2)).
    expected = -math.log(math.exp(2) / (math.exp(2) + 2))
    loss = SupConLoss(temperature=tau)(z, torch.tensor([0, 0, 1, 1]))
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_matches_reference_on_random_batch() -> None:
    torch.manual_seed(0)
    z = torch.nn.functional.normalize(torch.randn(7, 5), dim=-1)
    labels = [0, 0, 1, 2, 2, 2, 3]
    loss = SupConLoss(temperature=0.1)(z, torch.tensor(labels))
    assert loss.item() == pytest.approx(_reference(z, labels, 0.1), rel=1e-5)


def test_anchors_without_positives_are_excluded() -> None:
    z = _unit([1, 0], [1, 0.1], [0, 1])
    with_single = SupConLoss(0.2)(z, torch.tensor([0, 0, 5]))
    # Item 2 (label 5) has no positive: only anchors 0 and 1 count, item 2 stays a negative.
    assert with_single.item() == pytest.approx(_reference(z, [0, 0, 5], 0.2), rel=1e-4)
    no_pos = SupConLoss(0.2)(z, torch.tensor([0, 1, 2]))
    assert no_pos.item() == 0.0


def _cos_after_step(labels: list[int]) -> float:
    # One SGD step on the raw vectors; returns the new cosine of offers 0 and 2.
    raw = torch.tensor([[1.0, 0.0], [0.9, 0.3], [0.6, -0.8], [0.0, 1.0]], requires_grad=True)
    SupConLoss(0.1)(torch.nn.functional.normalize(raw, dim=-1), torch.tensor(labels)).backward()
    with torch.no_grad():
        new = torch.nn.functional.normalize(raw - 0.05 * raw.grad, dim=-1)
    return float(new[0] @ new[2])


def test_duplicates_of_one_product_are_positives_never_negatives() -> None:
    # Three offers of one product (0, 1, 2) plus another product (3).
    z = _unit([1, 0], [0.9, 0.3], [0.6, -0.8], [0, 1])
    same = SupConLoss(0.1)(z, torch.tensor([0, 0, 0, 1]))
    assert same.item() == pytest.approx(_reference(z, [0, 0, 0, 1], 0.1), rel=1e-5)
    start = float(z[0] @ z[2])
    # Same product: training pulls offers 0 and 2 together ...
    assert _cos_after_step([0, 0, 0, 1]) > start
    # ... whereas labelled as different products they would be pushed apart.
    assert _cos_after_step([0, 0, 2, 1]) < start


def test_ignore_mask_drops_pairs_from_denominator_only() -> None:
    torch.manual_seed(1)
    z = torch.nn.functional.normalize(torch.randn(5, 4), dim=-1)
    labels = [0, 0, 1, 1, 2]
    ignore = torch.zeros(5, 5, dtype=torch.bool)
    ignore[0, 4] = ignore[4, 0] = True  # a likely duplicate pair, dropped
    ignore[0, 1] = True  # a positive pair: must be kept regardless
    loss = SupConLoss(0.1)(z, torch.tensor(labels), ignore_mask=ignore)
    assert loss.item() == pytest.approx(_reference(z, labels, 0.1, drop={(0, 4), (4, 0)}), rel=1e-5)


def test_gradient_flows() -> None:
    torch.manual_seed(2)
    raw = torch.randn(6, 8, requires_grad=True)
    loss = SupConLoss(0.07)(torch.nn.functional.normalize(raw, dim=-1), torch.tensor([0, 0, 1, 1, 2, 3]))
    loss.backward()
    assert raw.grad is not None and torch.isfinite(raw.grad).all() and raw.grad.abs().sum() > 0
    # No positives at all: zero loss that still backpropagates.
    raw2 = torch.randn(3, 4, requires_grad=True)
    SupConLoss()(raw2, torch.tensor([0, 1, 2])).backward()
    assert raw2.grad is not None and torch.all(raw2.grad == 0)


def test_likely_duplicate_mask() -> None:
    z = _unit([1, 0], [1, 0.01], [0, 1], [1, 0.02])
    labels = torch.tensor([0, 1, 2, 3])
    known = torch.zeros(4, 4, dtype=torch.bool)
    known[0, 3] = known[3, 0] = True  # labelled non-match: stays a negative
    mask = likely_duplicate_mask(z, labels, known, threshold=0.95)
    assert mask[0, 1] and mask[1, 0] and mask[1, 3]
    assert not mask[0, 3] and not mask[0, 2] and not mask.diagonal().any()
    # Same label is never "a duplicate to ignore": it is a positive.
    assert not likely_duplicate_mask(z, torch.tensor([0, 0, 1, 2]))[0, 1]


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        SupConLoss(temperature=0)
    with pytest.raises(ValueError):
        SupConLoss()(torch.randn(3, 2), torch.tensor([0, 1]))
