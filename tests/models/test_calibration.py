"""Calibrator (temperature, isotonic) and the threshold helpers, on synthetic data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.calibration import (
    Calibrator,
    fit_isotonic,
    fit_temperature,
    log_loss,
    precision_envelope,
    sigmoid,
    threshold_for_best_f1,
    threshold_for_precision,
    wilson_interval,
)


def synthetic(n: int = 20000, temperature: float = 2.5, bias: float = 0.0, seed: int = 0):
    """Logits whose true probability is sigmoid(z / T + b): a calibrator must recover T and b."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 4.0, n)
    y = (rng.random(n) < sigmoid(z / temperature + bias)).astype(int)
    return z, y


def test_temperature_recovers_known_t_without_bias() -> None:
    z, y = synthetic(temperature=2.5)
    t, b = fit_temperature(z, y, bias=False)
    assert b == 0.0
    assert t == pytest.approx(2.5, rel=0.05)


def test_temperature_recovers_t_and_bias() -> None:
    z, y = synthetic(temperature=0.5, bias=-1.2, seed=1)
    cal = Calibrator.fit(z, y, "temperature")
    assert cal.temperature == pytest.approx(0.5, rel=0.05)
    assert cal.bias == pytest.approx(-1.2, abs=0.1)
    assert cal.stats["nll_calibrated"] < cal.stats["nll_uncalibrated"]
    # Monotone in the logit: the ranking (and so any threshold rule) is preserved.
    grid = np.linspace(-10, 10, 101)
    assert np.all(np.diff(cal.apply(grid)) > 0)


def test_temperature_survives_separable_data() -> None:
    z = np.array([-3.0, -2.0, -1.0, 1.0, 2.0, 3.0])
    y = np.array([0, 0, 0, 1, 1, 1])
    cal = Calibrator.fit(z, y, "temperature")
    p = cal.apply(z)
    assert np.all(np.isfinite(p)) and np.all((p >= 0) & (p <= 1))
    assert np.all(p[y == 1] > 0.5) and np.all(p[y == 0] < 0.5)


def test_isotonic_is_monotone_in_unit_interval_and_beats_raw_sigmoid() -> None:
    z, y = synthetic(n=5000, temperature=3.0, seed=2)
    cal = Calibrator.fit(z, y, "isotonic")
    grid = np.linspace(z.min() - 5, z.max() + 5, 2001)
    p = cal.apply(grid)
    assert np.all((p >= 0) & (p <= 1))
    assert np.all(np.diff(p) >= 0)
    # Constant beyond the fitted range (clipped), not extrapolated.
    assert cal.apply(np.array([z.min() - 100]))[0] == pytest.approx(p[0])
    assert cal.apply(np.array([z.max() + 100]))[0] == pytest.approx(p[-1])
    assert log_loss(cal.apply(z), y) < log_loss(sigmoid(z), y)


def test_pav_on_hand_made_data() -> None:
    # Labels 0 1 0 1 1 over increasing logits: the violator (1, 0) pools to 0.5.
    xs, ys = fit_isotonic(np.array([1.0, 2.0, 3.0, 4.0, 5.0]), np.array([0, 1, 0, 1, 1]))
    assert list(xs) == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert list(ys) == [0.0, 0.5, 0.5, 1.0, 1.0]
    # Tied logits are pooled before PAV: they must get one value.
    xs, ys = fit_isotonic(np.array([0.0, 0.0, 1.0]), np.array([0, 1, 1]))
    assert list(xs) == [0.0, 1.0] and list(ys) == [0.5, 1.0]


@pytest.mark.parametrize("method", ["temperature", "isotonic", "none"])
def test_round_trip_through_json(method: str) -> None:
    z, y = synthetic(n=500, seed=3)
    cal = Calibrator.fit(z, y, method)
    again = Calibrator.from_dict(json.loads(json.dumps(cal.to_dict())))
    probe = np.linspace(-20, 20, 333)
    np.testing.assert_array_equal(again.apply(probe), cal.apply(probe))
    assert again.method == method


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError):
        Calibrator.fit(np.array([0.1, 0.2]), np.array([0, 1, 1]))
    with pytest.raises(ValueError):
        Calibrator.fit(np.array([0.1, np.nan]), np.array([0, 1]))
    with pytest.raises(ValueError):
        Calibrator.fit(np.array([0.1, 0.2]), np.array([0, 1]), "platt")
    with pytest.raises(ValueError):
        Calibrator.from_dict({"format": 99, "method": "none"})


def test_best_f1_threshold_on_hand_made_data() -> None:
    probs = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    labels = np.array([1, 1, 0, 1, 0, 0, 1, 0])
    best = threshold_for_best_f1(probs, labels)
    # Accepting down to 0.6: TP 3, FP 1, FN 1 -> F1 0.75, the maximum (down to 0.3 gives 8/11);
    # the threshold sits midway between 0.6 (accepted) and 0.5 (rejected).
    assert best.threshold == pytest.approx(0.55)
    assert best.f1 == pytest.approx(0.75)
    assert best.precision == pytest.approx(0.75) and best.recall == pytest.approx(0.75)
    # The rule "prob >= threshold" reproduces the chosen decisions.
    assert int(((probs >= best.threshold) & (labels == 1)).sum()) == 3


def test_best_f1_ties_decide_equal_scores_together() -> None:
    probs = np.array([0.9, 0.5, 0.5, 0.1])
    labels = np.array([1, 1, 0, 0])
    best = threshold_for_best_f1(probs, labels)
    # 0.9 alone: F1 = 2/3; down to 0.5 (both tied pairs together): F1 = 0.8.
    assert best.threshold == pytest.approx(0.3) and best.f1 == pytest.approx(0.8)
    # The lowest cut (everything a match) uses the lowest score itself.
    assert threshold_for_best_f1(np.array([0.7, 0.2]), np.array([1, 1])).threshold == 0.2
    with pytest.raises(ValueError):
        threshold_for_best_f1(probs, np.zeros(4, dtype=int))


def test_threshold_for_precision() -> None:
    probs = np.array([0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5, 0.4])
    labels = np.array([1, 1, 1, 0, 1, 1, 0, 0])
    # Precision by threshold: .95->1, .9->1, .85->1, .8->.75, .7->.8, .6->.833, .5->.714, .4->.625
    got = threshold_for_precision(probs, labels, 0.8)
    assert got is not None and got.threshold == pytest.approx(0.55)  # accepts down to 0.6
    assert got.precision == pytest.approx(5 / 6) and got.recall == pytest.approx(1.0)
    strict = threshold_for_precision(probs, labels, 0.95)
    assert strict is not None and strict.threshold == pytest.approx(0.825) and strict.recall == pytest.approx(0.6)
    # Unreachable: the top-scored pair is a non-match, so precision 1.0 never happens.
    assert threshold_for_precision(np.array([0.9, 0.1]), np.array([0, 1]), 0.99) is None


def test_precision_cut_ignores_a_lucky_bump_below_the_crossing() -> None:
    # 30 matches, then 3 non-matches, then 2 matches: raw precision dips to 30/33 = 0.909 and
    # climbs back to 32/35 = 0.914 at the bottom; for a 0.91 target the raw rule accepts the
    # whole dip, the envelope stops above it.
    labels = np.array([1] * 30 + [0] * 3 + [1] * 2)
    probs = np.linspace(0.99, 0.5, labels.size)
    raw = threshold_for_precision(probs, labels, 0.91, curve="raw")
    env = threshold_for_precision(probs, labels, 0.91)
    assert raw is not None and raw.n_accepted == 35 and raw.precision == pytest.approx(32 / 35)
    assert env is not None and env.n_accepted == 32 and env.precision == pytest.approx(30 / 32)
    assert env.threshold > raw.threshold
    # The envelope is monotone and equal to the raw curve where that already is.
    curve = precision_envelope(probs, labels)
    assert np.all(np.diff(curve) <= 0)
    assert np.allclose(curve[:30], 1.0)


def test_threshold_choices_carry_their_wilson_interval() -> None:
    low, high = wilson_interval(95, 100)
    assert 0.88 < low < 0.95 < high < 0.98  # the textbook 95 % Wilson interval for 95 / 100
    assert wilson_interval(0, 0) == (0.0, 1.0)
    labels = np.array([1] * 50 + [0] * 5 + [1] * 45 + [0] * 50)
    probs = np.r_[np.linspace(0.99, 0.6, 100), np.linspace(0.5, 0.01, 50)]
    choice = threshold_for_best_f1(probs, labels)
    assert choice.n_accepted == 100
    assert choice.precision_low == pytest.approx(low) and choice.precision_high == pytest.approx(high)
