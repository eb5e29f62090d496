"""Per-catalogue calibration: thresholds for the serving scorer refitted on the catalogue's own
labelled pairs, and the decider that applies them.

A scorer's own thresholds were chosen elsewhere (settings for the zero-shot blend, the
benchmark's validation split for a trained matcher) and carry over badly to a new catalogue:
both the scores and the cut move. The review queue gives labelled pairs from the catalogue
itself, so the refit uses them:

* **match threshold**: the lowest cut whose precision on the labels reaches the target, read
  off the monotone precision envelope (:func:`models.calibration.threshold_for_precision`), on
  the raw scores. Raw scores keep the scorer's full ranking; an isotonic calibrator's flat
  steps would merge cuts. The Wilson interval of the precision at the cut says how much to trust
  it. When no cut reaches the target, automatic matches start above every labelled pair (and
  never below the scorer's own threshold): the labels show no region where the target holds.
* **calibrator**: maps a score to the probability that the pair matches, fitted on the logit of
  the score (``logit(s)``: a matcher's probabilities that are already calibrated give the
  identity, and the zero-shot blend's [0, 1] scores are spread over the real line).
* **review threshold**: the lowest score whose calibrated probability reaches the review
  probability (pairs less likely than that are rejected without a person), capped at the match
  threshold.

Pure numpy on top of :mod:`models.calibration`; the database side is ``app/registry/calibration.py``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from app.pipeline.scoring import Decider
from models.calibration import Calibrator, ThresholdChoice, sigmoid, threshold_for_precision

logger = logging.getLogger(__name__)

#: Methods a refit may ask for; "auto" picks by the label count (see :func:`choose_method`).
REFIT_METHODS = ("auto", "temperature", "isotonic")

# Isotonic regression (pool-adjacent-violators) needs many labels of both classes: its blocks
# are only as large as the ranking's violations, so with a few dozen labels each block holds a
# handful of pairs, its probability moves by 1/n with every new label and the review cut jumps
# from one refit to the next. Below these counts the two-parameter Platt fit is used.
ISOTONIC_MIN_LABELS = 200
ISOTONIC_MIN_PER_CLASS = 40

# Scores are probabilities or [0, 1] similarities; clipped before the logit so 0 and 1 stay finite.
_EPS = 1e-6
_MIN_SLOPE, _MAX_SLOPE = 1e-3, 1e3


class UnfittableLabels(ValueError):
    """The labels cannot support a calibration (one class only, or none)."""


@dataclass(frozen=True)
class CalibratedDecider(Decider):
    """A :class:`Decider` whose thresholds come from stored catalogue calibration ``calibration_id``;
    ``own`` is the scorer's own decider, which a revert returns to."""

    calibration_id: int
    own: Decider


def own_decider(decider: Decider) -> Decider:
    """The scorer's own thresholds behind ``decider`` (itself when it is not calibrated)."""
    return decider.own if isinstance(decider, CalibratedDecider) else decider


def calibration_of(decider: Decider) -> int | None:
    """The id of the catalogue calibration that decides, or None for the scorer's own thresholds."""
    return decider.calibration_id if isinstance(decider, CalibratedDecider) else None


def to_logit(scores: np.ndarray) -> np.ndarray:
    s = np.clip(np.asarray(scores, dtype=np.float64), _EPS, 1.0 - _EPS)
    return np.log(s) - np.log1p(-s)


def fit_platt(z: np.ndarray, labels: np.ndarray, max_iter: int = 100) -> tuple[float, float]:
    """``(a, b)`` of ``p = sigmoid(a * z + b)`` by Platt's method, with his smoothed targets.

    The targets ``(N+ + 1) / (N+ + 2)`` and ``1 / (N- + 2)`` instead of 1 and 0 are a prior of one
    pseudo-label of each class per class: a few dozen review labels are often perfectly
    separated by the score, and a plain maximum-likelihood fit would then drive the slope to
    infinity (a step at an arbitrary point between the classes). Convex in ``(a, b)``: Newton
    with backtracking converges in a few steps.
    """
    y = np.asarray(labels, dtype=np.float64)
    n_pos, n_neg = float(y.sum()), float(y.size - y.sum())
    t = np.where(y == 1, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))

    def loss(a: float, b: float) -> float:
        s = a * z + b
        return float(np.sum(np.logaddexp(0.0, s) - t * s))

    a, b = 1.0, math.log((n_pos + 1.0) / (n_neg + 1.0))
    current = loss(a, b)
    for _ in range(max_iter):
        p = sigmoid(a * z + b)
        r, w = p - t, p * (1.0 - p) + 1e-12
        grad = np.array([np.dot(r, z), r.sum()])
        hess = np.array([[np.dot(w, z * z), np.dot(w, z)], [np.dot(w, z), w.sum()]]) + 1e-9 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        scale = 1.0
        while True:
            na = float(np.clip(a - scale * step[0], _MIN_SLOPE, _MAX_SLOPE))
            nb = b - scale * float(step[1])
            new = loss(na, nb)
            if new <= current + 1e-12 or scale < 1e-8:
                break
            scale *= 0.5
        if new > current:
            break
        done = current - new <= 1e-10 * max(1.0, abs(current))
        a, b, current = na, nb, new
        if done:
            break
    return a, b


def choose_method(n_positive: int, n_negative: int, requested: str = "auto") -> str:
    if requested not in REFIT_METHODS:
        raise ValueError(f"unknown calibration method {requested!r}; choose one of {REFIT_METHODS}")
    if requested != "auto":
        return requested
    enough = n_positive + n_negative >= ISOTONIC_MIN_LABELS and min(n_positive, n_negative) >= ISOTONIC_MIN_PER_CLASS
    return "isotonic" if enough else "temperature"


def fit_calibrator(scores: np.ndarray, labels: np.ndarray, method: str) -> Calibrator:
    """A calibrator of ``logit(score)``: Platt (stored as temperature + bias) or isotonic."""
    z = to_logit(scores)
    y = np.asarray(labels, dtype=np.float64)
    if method == "isotonic":
        return Calibrator.fit(z, y, "isotonic")
    a, b = fit_platt(z, y)
    return Calibrator("temperature", temperature=1.0 / a, bias=b, stats={"n": int(y.size), "positives": int(y.sum())})


def score_at_probability(calibrator: Calibrator, probability: float) -> float | None:
    """The lowest score in [0, 1] whose calibrated probability reaches ``probability``; None if none."""
    if calibrator.method == "temperature":
        # p = sigmoid(z / T + b) >= q  <=>  z >= T * (logit(q) - b), with T > 0.
        z = calibrator.temperature * (math.log(probability / (1.0 - probability)) - calibrator.bias)
        return float(sigmoid(np.array([z]))[0])
    if calibrator.method == "isotonic":
        xs, ys = calibrator.x, calibrator.y
        above = np.flatnonzero(ys >= probability)
        if above.size == 0:
            return None
        i = int(above[0])
        if i == 0:  # constant below the fitted range: every score reaches it
            return 0.0
        # Linear between breakpoints i-1 and i (np.interp in Calibrator.apply).
        frac = (probability - ys[i - 1]) / (ys[i] - ys[i - 1])
        z = float(xs[i - 1] + frac * (xs[i] - xs[i - 1]))
        return float(sigmoid(np.array([z]))[0])
    raise ValueError(f"calibration method {calibrator.method!r} has no inverse here")


@dataclass(frozen=True)
class CatalogueFit:
    """The outcome of a refit: thresholds on the scorer's scale, and what backs them."""

    method: str
    calibrator: Calibrator
    match_threshold: float
    review_threshold: float
    target_reached: bool
    choice: ThresholdChoice | None
    match_probability: float
    n_positive: int
    n_negative: int


def fit_catalogue(
    scores: np.ndarray,
    labels: np.ndarray,
    target_precision: float,
    review_probability: float,
    own: Decider,
    method: str = "auto",
) -> CatalogueFit:
    """Fit the calibrator and choose both thresholds on labelled pairs' scores (module docstring)."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    if s.shape != y.shape:
        raise ValueError(f"scores and labels differ in length: {s.size} != {y.size}")
    if not 0.0 < review_probability < 1.0:
        raise ValueError(f"review probability must be in (0, 1), got {review_probability}")
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        only = "match" if n_neg == 0 else "no_match"
        raise UnfittableLabels(
            f"all {y.size} labels are {only!r}: a calibration needs labels of both classes"
            " (label some review items the other way)"
        )
    chosen = choose_method(n_pos, n_neg, method)
    calibrator = fit_calibrator(s, y, chosen)
    choice = threshold_for_precision(s, y, target_precision, curve="envelope")
    if choice is not None:
        match_at = choice.threshold
    else:
        # No cut reaches the target on these labels: automatic matches only above all of them.
        match_at = max(own.match_threshold, float(np.nextafter(s.max(), np.inf)))
        logger.warning(
            "no cut reaches precision %.3f on %d labels; match threshold %.4f (above every labelled pair)",
            target_precision,
            y.size,
            match_at,
        )
    review_at = score_at_probability(calibrator, review_probability)
    review_at = match_at if review_at is None else min(review_at, match_at)
    match_probability = float(calibrator.apply(to_logit(np.array([min(match_at, 1.0)])))[0])
    return CatalogueFit(
        method=chosen,
        calibrator=calibrator,
        match_threshold=float(match_at),
        review_threshold=float(review_at),
        target_reached=choice is not None,
        choice=choice,
        match_probability=match_probability,
        n_positive=n_pos,
        n_negative=n_neg,
    )
