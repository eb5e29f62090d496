"""FastDropout: the same dropout as nn.Dropout (rate, scale, gradient), reproducible, off in eval."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models.fast_dropout import FastDropout, use_fast_dropout


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("p", [0.1, 0.5])
def test_drops_at_rate_p_and_scales_survivors(dtype: torch.dtype, p: float) -> None:
    torch.manual_seed(0)
    x = torch.ones(64, 128, 96, dtype=dtype)
    y = FastDropout(p).train()(x)
    assert y.dtype == dtype and y.shape == x.shape
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - p) < 0.005  # 786k draws: the standard error is < 0.0006
    survivors = y[y != 0].float()
    assert torch.allclose(survivors, torch.full_like(survivors, 1 / (1 - p)), rtol=1e-2)
    assert abs(y.float().mean().item() - 1.0) < 0.01  # unbiased in expectation


def test_masks_are_independent_across_calls_and_positions() -> None:
    torch.manual_seed(1)
    drop = FastDropout(0.5).train()
    a, b = (drop(torch.ones(200_000)) == 0).float(), (drop(torch.ones(200_000)) == 0).float()
    assert abs((a * b).mean().item() - 0.25) < 0.01  # two calls: independent masks
    assert abs((a[1:] * a[:-1]).mean().item() - 0.25) < 0.01  # neighbours: independent


def test_reproducible_under_manual_seed_and_identity_in_eval() -> None:
    x = torch.randn(8, 50)
    torch.manual_seed(7)
    first = FastDropout(0.1).train()(x)
    torch.manual_seed(7)
    again = FastDropout(0.1).train()(x)
    assert torch.equal(first, again)
    assert torch.equal(FastDropout(0.1).eval()(x), x)
    assert torch.equal(FastDropout(0.0).train()(x), x)


def test_gradient_is_the_mask_times_the_scale() -> None:
    torch.manual_seed(3)
    x = torch.randn(32, 40, requires_grad=True)
    y = FastDropout(0.25).train()(x)
    y.sum().backward()
    assert x.grad is not None
    expected = (y != 0).float() / 0.75
    assert torch.allclose(x.grad, expected)


def test_use_fast_dropout_swaps_every_dropout_and_keeps_p() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.2), nn.Sequential(nn.Dropout(0.3), nn.ReLU()))
    assert use_fast_dropout(model) == 2
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert [type(m) for m in drops] == [FastDropout, FastDropout]
    assert [m.p for m in drops] == [0.2, 0.3]
    assert use_fast_dropout(model) == 0  # already swapped


def test_the_matcher_trains_with_fast_dropout() -> None:
    from training.train_matcher import build_model

    tiny = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
    model = build_model("lea", "minilm", 32, tiny_config=tiny)
    kinds = {type(m) for m in model.model.modules() if isinstance(m, nn.Dropout)}
    assert kinds == {FastDropout}
