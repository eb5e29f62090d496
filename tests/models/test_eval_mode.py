from __future__ import annotations

from torch import nn

from models.eval_mode import enter_eval


def _model() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.Sequential(nn.Dropout(0.1)))


def test_training_model_goes_to_eval_and_reports_it() -> None:
    model = _model().train()
    assert enter_eval(model) is True
    assert not any(m.training for m in model.modules())


def test_a_submodule_left_in_training_is_caught() -> None:
    model = _model().eval()
    model[2][0].train()  # a stray dropout would make inference random
    assert enter_eval(model) is False  # the top was in eval: nothing to restore
    assert not any(m.training for m in model.modules())


def test_eval_model_stays_as_it_is() -> None:
    model = _model().eval()
    assert enter_eval(model) is False
    assert not any(m.training for m in model.modules())
