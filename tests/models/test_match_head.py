"""The default matcher's head: margins, JSON round trip, fitting with per-source balance and
cross-fitted thresholds."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.match_head import MatchHead, candidate_margins, feature_matrix, signal_rows, signal_set
from training.default_recipe.head import cross_fitted, fit_head, fit_logistic


def test_margins_against_the_best_other_candidate() -> None:
    m = candidate_margins(np.array([3.0, 1.0, -2.0]))
    np.testing.assert_allclose(m[:, 0], [2.0, -2.0, -5.0])
    assert m[:, 1].tolist() == [0.0, 0.0, 0.0]
    grouped = candidate_margins(np.array([1.0, 5.0, 0.5]), groups=["a", "b", "a"])
    np.testing.assert_allclose(grouped, [[0.5, 0.0], [0.0, 1.0], [-0.5, 0.0]])
    assert candidate_margins(np.array([40.0, -40.0]))[0, 0] == 10.0  # clipped


def _data(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n).astype(float)
    logit = 2.5 * (y - 0.5) + rng.normal(0, 1.0, n)
    cosine = 0.3 * y + rng.normal(0.5, 0.15, n)
    noise = rng.normal(0, 1, n)
    sources = ["big"] * (n - 100) + ["small"] * 100
    return feature_matrix(logit, cosine, noise[:, None], None), y, sources


def test_fit_separates_and_round_trips_through_json() -> None:
    x, y, sources = _data()
    head = fit_head(x, y, sources, ("logit", "cosine", "noise"), signals="custom", margin=False, folds=3)
    assert head.coef[0] > 0 and head.coef[1] > 0 and abs(head.coef[2]) < head.coef[0]
    cf = head.valid["cross_fitted"]
    assert cf["best_f1"]["f1"] > 0.8 and set(head.valid["per_source"]) == {"big", "small"}
    assert head.threshold == cf["best_f1"]["threshold"]
    for target, cut in head.thresholds_for_precision.items():
        if cut is not None:
            assert cf["for_precision"][target]["threshold"] == cut and cut >= head.threshold - 0.5
    again = MatchHead.from_dict(json.loads(json.dumps(head.to_dict())))
    np.testing.assert_allclose(again.apply(x), head.apply(x))
    assert again.thresholds_for_precision == head.thresholds_for_precision
    with pytest.raises(ValueError, match="expects 3 features"):
        head.apply(x[:, :2])


def test_source_weights_balance_the_fit() -> None:
    # "small" has the opposite relation between the feature and the label: unweighted, the big
    # source decides; balanced, the two pull equally and the slope shrinks towards zero.
    rng = np.random.default_rng(1)
    xb = rng.normal(0, 1, (900, 1))
    xs = rng.normal(0, 1, (100, 1))
    x = np.vstack([xb, xs])
    y = np.concatenate([(xb[:, 0] > 0), (xs[:, 0] < 0)]).astype(float)
    even = np.ones(1000)
    balanced = np.concatenate([np.full(900, 1000 / 2 / 900), np.full(100, 1000 / 2 / 100)])
    assert abs(fit_logistic(x, y, balanced)[2][0]) < 0.3 * abs(fit_logistic(x, y, even)[2][0])


def test_cross_fitted_scores_come_from_other_folds() -> None:
    x, y, sources = _data(n=300)
    oof = cross_fitted(x, y, np.ones(len(y)), sources, k=3, l2=1.0, seed=0)
    assert oof.shape == y.shape and np.all((oof > 0) & (oof < 1))
    mean, scale, coef, b = fit_logistic(x, y, np.ones(len(y)))
    in_sample = 1 / (1 + np.exp(-(((x - mean) / scale) @ coef + b)))
    assert not np.allclose(oof, in_sample)


def test_signal_sets() -> None:
    assert signal_set("none") == (None, ())
    fn, names = signal_set("pair_signals")
    assert fn is not None and len(names) > 0
    rows = signal_rows(fn, [{"title": "sony wh-1000xm5"}], [{"title": "Sony WH1000XM5 black"}], len(names))
    assert rows.shape == (1, len(names))
    fn2, names2 = signal_set("pair_signals_v2")
    assert names2[: len(names)] == names and names2[len(names) :] == (
        "quantity_match",
        "quantity_conflict",
        "quantity_absent",
    )
    assert fn2 is not None
    left, right = [{"title": "Senna 200 Count"}], [{"title": "Senna 500 Count"}]
    rows2 = signal_rows(fn2, left, right, len(names2))
    assert rows2[0, : len(names)].tolist() == signal_rows(fn, left, right, len(names))[0].tolist()
    assert rows2[0, len(names) :].tolist() == [0.0, 1.0, 0.0]
    fn3, names3 = signal_set("pair_signals_v3")
    assert fn3 is not None and names3[: len(names2)] == names2
    assert names3[len(names2) :] == ("colour_match", "colour_conflict", "colour_absent")
    left, right = [{"title": "Alta Luggage 20 inch Red"}], [{"title": "Alta Luggage 20 inch - Black"}]
    rows3 = signal_rows(fn3, left, right, len(names3))
    assert rows3[0, : len(names2)].tolist() == signal_rows(fn2, left, right, len(names2))[0].tolist()
    assert rows3[0, len(names2) :].tolist() == [0.0, 1.0, 0.0]
    with pytest.raises(KeyError):
        signal_set("nope")
