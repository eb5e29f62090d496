"""The weight-interpolation study's mixing (benchmarks/study_weight_interpolation.py)."""

from __future__ import annotations

import pytest
import torch

from benchmarks.study_weight_interpolation import interpolated_state


def _states() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    tuned = {
        "model.layer.weight": torch.tensor([1.0, 3.0], dtype=torch.bfloat16),
        "model.classifier.weight": torch.tensor([5.0]),
        "model.position_ids": torch.tensor([0, 1]),
        "lex.table": torch.tensor([2.0, 2.0]),
    }
    other = {
        "model.layer.weight": torch.tensor([3.0, 1.0]),
        "model.classifier.weight": torch.tensor([1.0, 1.0]),  # another shape: a fresh head of another size
        "model.position_ids": torch.tensor([5, 5]),
        "lex.table": torch.tensor([0.0, 4.0]),
    }
    return tuned, other


def test_mixes_shared_floating_tensors_in_their_own_dtype() -> None:
    tuned, other = _states()
    out, kept = interpolated_state(tuned, other, 0.25)
    assert out["model.layer.weight"].dtype == torch.bfloat16
    assert out["model.layer.weight"].tolist() == [2.5, 1.5]
    assert out["lex.table"].tolist() == [0.5, 3.5]
    assert sorted(kept) == ["model.classifier.weight", "model.position_ids"]  # shape differs; integers
    assert out["model.position_ids"].tolist() == [0, 1]


def test_the_prefix_keeps_the_rest_as_trained() -> None:
    tuned, other = _states()
    out, kept = interpolated_state(tuned, other, 0.0, prefix="model.")
    assert out["model.layer.weight"].tolist() == [3.0, 1.0]  # alpha 0: the other end
    assert out["lex.table"].tolist() == [2.0, 2.0]
    assert "lex.table" in kept


def test_alpha_one_is_the_fine_tuned_model() -> None:
    tuned, other = _states()
    out, _ = interpolated_state(tuned, other, 1.0)
    assert all(torch.equal(out[k], tuned[k]) for k in tuned)


@pytest.mark.parametrize("alpha", [-0.1, 1.5])
def test_alpha_outside_the_unit_interval_is_refused(alpha: float) -> None:
    with pytest.raises(ValueError, match="alpha"):
        interpolated_state(*_states(), alpha)
