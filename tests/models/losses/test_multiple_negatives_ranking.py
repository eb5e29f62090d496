"""MultipleNegativesRankingLoss: hand-computed values, duplicate masking, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from models.losses import MultipleNegativesRankingLoss


def _unit(*rows: list[float]) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.tensor(rows, dtype=torch.float32), dim=-1)


def test_hand_computed() -> None:
    a = _unit([1, 0], [0, 1])
    p = _unit([1, 0], [1, 1])
    scale = 2.0
    c = 1 / math.sqrt(2)
    # Row 0: scores [2*1, 2*c], target 0. Row 1: scores [2*0, 2*c], target 1.
    row0 = -math.log(math.exp(2) / (math.exp(2) + math.exp(2 * c)))
    row1 = -math.log(math.exp(2 * c) / (math.exp(0) + math.exp(2 * c)))
    loss = MultipleNegativesRankingLoss(scale=scale)(a, p)
    assert loss.item() == pytest.approx((row0 + row1) / 2, rel=1e-6)


def test_equals_cross_entropy_of_scaled_cosines() -> None:
    torch.manual_seed(0)
    a, p = torch.randn(5, 6), torch.randn(5, 6)
    scores = 20 * torch.nn.functional.normalize(a, dim=-1) @ torch.nn.functional.normalize(p, dim=-1).T
    expected = torch.nn.functional.cross_entropy(scores, torch.arange(5))
    assert MultipleNegativesRankingLoss()(a, p).item() == pytest.approx(expected.item(), rel=1e-6)


def test_duplicate_products_are_never_negatives() -> None:
    # Rows 0 and 1 are two offers of one product: row 1's positive equals row 0's positive.
    a = _unit([1, 0], [1, 0.05], [0, 1])
    p = _unit([1, 0.01], [1, 0.02], [0, 1])
    plain = MultipleNegativesRankingLoss(scale=20)(a, p)
    masked = MultipleNegativesRankingLoss(scale=20)(a, p, labels=torch.tensor([7, 7, 3]))
    # Without labels the duplicate acts as a hard negative and inflates the loss.
    assert masked.item() < plain.item()
    # With labels, row 0 only competes with row 2: the same value as a 2-row batch.
    two_rows = MultipleNegativesRankingLoss(scale=20)(a[[0, 2]], p[[0, 2]])
    row1_alone = MultipleNegativesRankingLoss(scale=20)(a[[1, 2]], p[[1, 2]])
    row2 = -torch.log_softmax(20 * a[2] @ p.T, dim=0)[2]
    row0 = two_rows * 2 - (-torch.log_softmax(20 * a[2] @ p[[0, 2]].T, dim=0)[1])
    row1 = row1_alone * 2 - (-torch.log_softmax(20 * a[2] @ p[[1, 2]].T, dim=0)[1])
    assert masked.item() == pytest.approx(((row0 + row1 + row2) / 3).item(), rel=1e-5)


def test_gradient_flows() -> None:
    torch.manual_seed(1)
    a = torch.randn(4, 8, requires_grad=True)
    p = torch.randn(4, 8, requires_grad=True)
    MultipleNegativesRankingLoss()(a, p, labels=torch.tensor([0, 1, 2, 3])).backward()
    for t in (a, p):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        MultipleNegativesRankingLoss(scale=0)
    with pytest.raises(ValueError):
        MultipleNegativesRankingLoss()(torch.randn(3, 2), torch.randn(2, 2))
