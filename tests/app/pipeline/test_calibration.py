"""The refit of a scorer's thresholds on a catalogue's labels (app/pipeline/calibration.py)."""

from __future__ import annotations

import numpy as np
import pytest

from app.pipeline.calibration import (
    CalibratedDecider,
    UnfittableLabels,
    calibration_of,
    choose_method,
    fit_catalogue,
    fit_platt,
    own_decider,
    score_at_probability,
    to_logit,
)
from app.pipeline.scoring import Decider
from models.calibration import sigmoid

OWN = Decider(0.85, 0.65)


def shifted_catalogue(n_pos: int, n_neg: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Scores of a catalogue where the scorer runs low: true matches score 0.60-0.80 and
    non-matches 0.30-0.62, far below the scorer's own match threshold of 0.85."""
    rng = np.random.default_rng(seed)
    pos = rng.uniform(0.60, 0.80, n_pos)
    neg = rng.uniform(0.30, 0.62, n_neg)
    return np.r_[pos, neg].round(6), np.r_[np.ones(n_pos), np.zeros(n_neg)]


def precision_at(scores: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    accepted = scores >= threshold
    return float(labels[accepted].mean())


def test_labels_move_the_match_cut_down_to_where_the_target_holds():
    scores, labels = shifted_catalogue(60, 90)
    fit = fit_catalogue(scores, labels, 0.95, 0.2, OWN)
    assert fit.target_reached and fit.method == "temperature"
    # The cut falls far below the scorer's own 0.85, into the overlap region, and holds the target.
    assert 0.58 < fit.match_threshold < 0.7
    assert precision_at(scores, labels, fit.match_threshold) >= 0.95
    choice = fit.choice
    assert choice is not None
    assert choice.n_accepted == int((scores >= fit.match_threshold).sum())
    assert choice.precision_low < choice.precision <= choice.precision_high
    assert choice.recall > 0.8
    # The review band starts lower still, where a match is 20 % likely, and is never above the cut.
    assert 0.3 < fit.review_threshold < fit.match_threshold
    assert fit.n_positive == 60 and fit.n_negative == 90
    # The pair right at the cut is less sure than the pairs above it taken together.
    assert 0.2 < fit.match_probability < choice.precision


def test_a_stricter_target_moves_the_cut_up():
    scores, labels = shifted_catalogue(60, 90)
    loose = fit_catalogue(scores, labels, 0.8, 0.2, OWN)
    strict = fit_catalogue(scores, labels, 1.0, 0.2, OWN)
    assert loose.match_threshold < strict.match_threshold
    assert precision_at(scores, labels, strict.match_threshold) == 1.0


def test_scores_running_high_move_the_cut_up():
    # Here non-matches reach 0.9: the scorer's own 0.85 would accept them.
    rng = np.random.default_rng(3)
    scores = np.r_[rng.uniform(0.92, 0.99, 40), rng.uniform(0.5, 0.9, 60)]
    labels = np.r_[np.ones(40), np.zeros(60)]
    fit = fit_catalogue(scores, labels, 0.95, 0.2, OWN)
    assert fit.match_threshold > OWN.match_threshold
    assert precision_at(scores, labels, fit.match_threshold) >= 0.95
    assert precision_at(scores, labels, OWN.match_threshold) < 0.95


def test_unreached_target_puts_matches_above_every_labelled_pair():
    rng = np.random.default_rng(1)
    scores = rng.uniform(0.3, 0.8, 60)
    labels = (rng.uniform(size=60) < 0.5).astype(float)
    labels[np.argmax(scores)] = 0.0  # the best-scored pair is not a match: no cut is clean
    fit = fit_catalogue(scores, labels, 1.0, 0.2, OWN)
    assert not fit.target_reached and fit.choice is None
    assert fit.match_threshold == OWN.match_threshold  # above every labelled pair, never below its own
    assert fit.review_threshold <= fit.match_threshold
    high = scores + 0.15
    fit = fit_catalogue(high, labels, 1.0, 0.2, OWN)
    assert fit.match_threshold > high.max()


def test_one_class_is_refused():
    with pytest.raises(UnfittableLabels, match="both classes"):
        fit_catalogue(np.linspace(0.1, 0.9, 30), np.ones(30), 0.95, 0.2, OWN)
    with pytest.raises(UnfittableLabels, match="'no_match'"):
        fit_catalogue(np.linspace(0.1, 0.9, 30), np.zeros(30), 0.95, 0.2, OWN)


def test_method_follows_the_label_count():
    assert choose_method(20, 20) == "temperature"
    assert choose_method(150, 100) == "isotonic"
    assert choose_method(190, 30) == "temperature"  # too few of one class for isotonic steps
    assert choose_method(10, 10, "isotonic") == "isotonic"
    with pytest.raises(ValueError, match="unknown"):
        choose_method(10, 10, "beta")
    scores, labels = shifted_catalogue(150, 150)
    fit = fit_catalogue(scores, labels, 0.95, 0.2, OWN)
    assert fit.method == "isotonic"
    assert 0.3 < fit.review_threshold < fit.match_threshold


def test_platt_stays_finite_on_separable_labels():
    # Perfectly separated classes: plain maximum likelihood would send the slope to infinity.
    z = to_logit(np.r_[np.linspace(0.6, 0.8, 15), np.linspace(0.2, 0.5, 15)])
    y = np.r_[np.ones(15), np.zeros(15)]
    a, b = fit_platt(z, y)
    assert 0 < a < 100
    p = sigmoid(a * z + b)
    assert p[:15].min() > 0.5 > p[15:].max()
    assert p.max() < 1 - 1e-3 and p.min() > 1e-3  # Platt's targets keep the ends off 0 and 1


def test_score_at_probability_inverts_the_calibrator():
    scores, labels = shifted_catalogue(150, 150)
    for method in ("temperature", "isotonic"):
        fit = fit_catalogue(scores, labels, 0.95, 0.3, OWN, method=method)
        s = score_at_probability(fit.calibrator, 0.3)
        assert s is not None
        assert fit.calibrator.apply(to_logit(np.array([s + 1e-4])))[0] >= 0.3 - 1e-6
        assert fit.calibrator.apply(to_logit(np.array([s - 1e-3])))[0] < 0.3 + 1e-6


def test_calibrated_decider_keeps_the_scorers_own_thresholds():
    decider = CalibratedDecider(0.7, 0.5, calibration_id=4, own=OWN)
    assert decider.decide(0.72) == "match" and decider.decide(0.6) == "review" and decider.decide(0.4) == "no_match"
    assert own_decider(decider) == OWN and own_decider(OWN) == OWN
    assert calibration_of(decider) == 4 and calibration_of(OWN) is None
    assert decider != CalibratedDecider(0.7, 0.5, calibration_id=5, own=OWN)
