"""Turn matcher logits into calibrated match probabilities, and pick decision thresholds.

Why: the cross-encoder is trained with a positive-class weight (``pos_weight = sqrt(neg/pos)``),
so ``sigmoid(logit)`` over-states the match probability and cannot be read as one. A calibrator
fitted on the clean validation split maps logits to probabilities that mean what they say, so the
service can show them, and thresholds chosen on them (best F1, a precision target) are stable
numbers to store in a model folder.

Two methods (both monotone in the logit, so a threshold on the probability is a threshold on the
logit and decisions keep their ranking):

* ``"temperature"``: ``p = sigmoid(logit / T + b)``; ``T`` (and the bias ``b``, on by default
  because the class weight shifts the logits) minimise the validation log-loss. Two parameters:
  cannot over-fit a small validation split.
* ``"isotonic"``: pool-adjacent-violators on the validation logits; the fitted step function is
  stored as breakpoints and applied by linear interpolation, constant beyond the fitted range.
  More flexible, needs more validation data.
* ``"none"``: plain ``sigmoid(logit)`` (an uncalibrated model behind the same interface).

Pure numpy on purpose: the web service imports this to serve a model, with no training code.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

METHODS = ("temperature", "isotonic", "none")
CALIBRATOR_FORMAT = 1

# Bounds on the inverse temperature: a perfectly separable validation split drives it to infinity.
_MIN_SCALE = 1e-3
_MAX_SCALE = 1e3


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function (float64)."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out


def _check_xy(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = np.asarray(logits, dtype=np.float64).reshape(-1)
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    if z.shape != y.shape:
        raise ValueError(f"scores and labels differ in length: {z.shape[0]} != {y.shape[0]}")
    if z.size == 0:
        raise ValueError("need at least one example")
    if not np.all(np.isfinite(z)):
        raise ValueError("scores contain NaN or infinite values")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("labels must be 0/1")
    return z, y


def log_loss(probs: np.ndarray, labels: np.ndarray, eps: float = 1e-12) -> float:
    """Mean negative log-likelihood of 0/1 labels under probabilities ``probs``."""
    p = np.clip(np.asarray(probs, dtype=np.float64), eps, 1 - eps)
    y = np.asarray(labels, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _nll_affine(z: np.ndarray, y: np.ndarray, a: float, b: float) -> float:
    # sum of softplus(s) - y*s with s = a*z + b, stable for large |s|.
    s = a * z + b
    return float(np.sum(np.logaddexp(0.0, s) - y * s))


def fit_temperature(
    logits: np.ndarray, labels: np.ndarray, bias: bool = True, max_iter: int = 100, tol: float = 1e-10
) -> tuple[float, float]:
    """``(T, b)`` minimising the log-loss of ``sigmoid(logit / T + b)`` (Newton with backtracking).

    The loss is convex in ``(1/T, b)``, so Newton converges in a handful of steps. ``1/T`` is kept
    in ``[1e-3, 1e3]`` (separable data would push it to infinity).
    """
    z, y = _check_xy(logits, labels)
    a, b = 1.0, 0.0
    if bias:  # start at the log-odds of the base rate: the optimum of the bias alone
        rate = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))
        b = math.log(rate / (1 - rate))
    loss = _nll_affine(z, y, a, b)
    for _ in range(max_iter):
        p = sigmoid(a * z + b)
        r = p - y
        w = p * (1 - p) + 1e-12
        if bias:
            grad = np.array([np.dot(r, z), r.sum()])
            hess = np.array([[np.dot(w, z * z), np.dot(w, z)], [np.dot(w, z), w.sum()]])
            hess += 1e-9 * np.eye(2)
            step = np.linalg.solve(hess, grad)
        else:
            step = np.array([np.dot(r, z) / (np.dot(w, z * z) + 1e-9), 0.0])
        t = 1.0
        while True:  # backtracking: accept the first step that does not increase the loss
            na = float(np.clip(a - t * step[0], _MIN_SCALE, _MAX_SCALE))
            nb = b - t * float(step[1])
            new_loss = _nll_affine(z, y, na, nb)
            if new_loss <= loss + 1e-12 or t < 1e-8:
                break
            t *= 0.5
        if new_loss > loss:  # no descent possible any more: at the optimum up to round-off
            break
        converged = loss - new_loss <= tol * max(1.0, abs(loss))
        a, b, loss = na, nb, new_loss
        if converged:
            break
    if a <= _MIN_SCALE or a >= _MAX_SCALE:
        logger.warning("temperature fit hit its bound (1/T = %.3g): validation logits are degenerate", a)
    return 1.0 / a, b


def fit_isotonic(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pool-adjacent-violators fit; returns the breakpoints ``(x, y)`` of the step function.

    Equal logits are pooled first (they must get one value). Every pooled block contributes its
    lowest and highest logit as breakpoints with the block's mean label, so interpolating
    between breakpoints is flat inside a block and linear across the gap between blocks.
    """
    z, y = _check_xy(logits, labels)
    ux, inverse = np.unique(z, return_inverse=True)
    weight = np.bincount(inverse).astype(np.float64)
    mean = np.bincount(inverse, weights=y) / weight
    # Stack of blocks: value, weight, first and last unique-x index.
    values: list[float] = []
    weights: list[float] = []
    lo: list[int] = []
    hi: list[int] = []
    for i in range(ux.size):
        values.append(float(mean[i]))
        weights.append(float(weight[i]))
        lo.append(i)
        hi.append(i)
        while len(values) > 1 and values[-2] > values[-1]:
            w = weights[-2] + weights[-1]
            v = (values[-2] * weights[-2] + values[-1] * weights[-1]) / w
            values[-2:] = [v]
            weights[-2:] = [w]
            hi[-2:] = [hi[-1]]
            lo.pop()
    xs: list[float] = []
    ys: list[float] = []
    for v, a, b in zip(values, lo, hi):
        xs.append(float(ux[a]))
        ys.append(v)
        if b != a:
            xs.append(float(ux[b]))
            ys.append(v)
    return np.asarray(xs), np.clip(np.asarray(ys), 0.0, 1.0)


class Calibrator:
    """Maps logits to calibrated probabilities; fitted on validation, stored as JSON.

    >>> cal = Calibrator.fit(valid_logits, valid_labels, "temperature")
    >>> probs = cal.apply(test_logits)
    >>> Calibrator.from_dict(cal.to_dict()).apply(test_logits)  # identical
    """

    def __init__(
        self,
        method: str = "none",
        temperature: float = 1.0,
        bias: float = 0.0,
        x: np.ndarray | None = None,
        y: np.ndarray | None = None,
        stats: dict[str, Any] | None = None,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown calibration method {method!r}; choose one of {METHODS}")
        if method == "temperature" and not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if method == "isotonic":
            if x is None or y is None or len(x) == 0 or len(x) != len(y):
                raise ValueError("isotonic calibration needs non-empty breakpoints x and y of equal length")
            if np.any(np.diff(x) < 0) or np.any(np.diff(y) < 0):
                raise ValueError("isotonic breakpoints must be non-decreasing in x and y")
        self.method = method
        self.temperature = float(temperature)
        self.bias = float(bias)
        self.x = np.asarray(x if x is not None else [], dtype=np.float64)
        self.y = np.asarray(y if y is not None else [], dtype=np.float64)
        self.stats = dict(stats or {})

    @classmethod
    def fit(cls, logits: np.ndarray, labels: np.ndarray, method: str = "temperature", bias: bool = True) -> Calibrator:
        """Fit on validation logits and 0/1 labels; ``bias`` applies to ``"temperature"`` only."""
        z, y = _check_xy(logits, labels)
        if method == "temperature":
            t, b = fit_temperature(z, y, bias=bias)
            out = cls("temperature", temperature=t, bias=b)
        elif method == "isotonic":
            xs, ys = fit_isotonic(z, y)
            out = cls("isotonic", x=xs, y=ys)
        elif method == "none":
            out = cls("none")
        else:
            raise ValueError(f"unknown calibration method {method!r}; choose one of {METHODS}")
        out.stats = {
            "n": int(z.size),
            "positives": int(y.sum()),
            "nll_uncalibrated": log_loss(sigmoid(z), y),
            "nll_calibrated": log_loss(out.apply(z), y),
        }
        logger.info(
            "calibration %s on %d pairs: NLL %.4f -> %.4f",
            method,
            z.size,
            out.stats["nll_uncalibrated"],
            out.stats["nll_calibrated"],
        )
        return out

    def apply(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated match probabilities in [0, 1] (float64, same shape as ``logits``)."""
        z = np.asarray(logits, dtype=np.float64)
        if self.method == "temperature":
            return sigmoid(z / self.temperature + self.bias)
        if self.method == "isotonic":
            # np.interp is constant beyond the end points: clipped to the fitted range.
            return np.clip(np.interp(z, self.x, self.y), 0.0, 1.0)
        return sigmoid(z)

    __call__ = apply

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description (plain floats and lists)."""
        out: dict[str, Any] = {"format": CALIBRATOR_FORMAT, "method": self.method}
        if self.method == "temperature":
            out.update(temperature=self.temperature, bias=self.bias)
        elif self.method == "isotonic":
            out.update(x=[float(v) for v in self.x], y=[float(v) for v in self.y])
        if self.stats:
            out["stats"] = self.stats
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibrator:
        if data.get("format", CALIBRATOR_FORMAT) != CALIBRATOR_FORMAT:
            version = data.get("format")
            raise ValueError(f"calibrator format {version!r} is not supported ({CALIBRATOR_FORMAT})")
        method = data.get("method")
        if method == "temperature":
            return cls(
                "temperature",
                temperature=float(data["temperature"]),
                bias=float(data.get("bias", 0.0)),
                stats=data.get("stats"),
            )
        if method == "isotonic":
            return cls("isotonic", x=np.asarray(data["x"]), y=np.asarray(data["y"]), stats=data.get("stats"))
        if method == "none":
            return cls("none", stats=data.get("stats"))
        raise ValueError(f"unknown calibration method {method!r}; choose one of {METHODS}")

    def __repr__(self) -> str:
        if self.method == "temperature":
            return f"Calibrator(temperature, T={self.temperature:.4g}, bias={self.bias:.4g})"
        if self.method == "isotonic":
            return f"Calibrator(isotonic, {self.x.size} breakpoints)"
        return "Calibrator(none)"


# --------------------------------------------------------------------------------------------
# Thresholds
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ThresholdChoice:
    """A decision threshold (predict match iff ``score >= threshold``) and its validation quality."""

    threshold: float
    f1: float
    precision: float
    recall: float
    # How much to trust ``precision``: the pairs the cut accepts on this data and the Wilson 95 %
    # interval of the precision they measure (a cut accepting 12 pairs says little).
    n_accepted: int = 0
    precision_low: float = 0.0
    precision_high: float = 1.0

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def wilson_interval(successes: float, n: float, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95 % by default); (0, 1) for n = 0."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _choice(sweep: dict[str, np.ndarray], k: int) -> ThresholdChoice:
    tp, fp = float(sweep["tp"][k]), float(sweep["fp"][k])
    low, high = wilson_interval(tp, tp + fp)
    return ThresholdChoice(
        threshold=float(sweep["threshold"][k]),
        f1=float(sweep["f1"][k]),
        precision=float(sweep["precision"][k]),
        recall=float(sweep["recall"][k]),
        n_accepted=int(tp + fp),
        precision_low=low,
        precision_high=high,
    )


def precision_envelope(scores: np.ndarray, labels: np.ndarray, min_support: int = 20) -> np.ndarray:
    """Per cut of :func:`pr_sweep`, the lowest raw precision of any cut from the first one with
    ``min_support`` accepted pairs down to it (a running minimum): monotone non-increasing.

    Raw precision zig-zags as the threshold falls (with ~200 positives a few pairs move it by
    points), so "the lowest cut reaching the target" often lands on a lucky bump below a stretch
    that misses it. On the envelope the chosen cut is where precision first falls below the
    target and stays a valid cut for every threshold above it. The first ``min_support`` accepted
    pairs are exempt: one early false positive would otherwise pin the envelope near zero.
    Cuts above the support get their raw precision.
    """
    sweep = pr_sweep(scores, labels)
    precision = sweep["precision"].copy()
    accepted = sweep["tp"] + sweep["fp"]
    start = int(np.searchsorted(accepted, min(min_support, accepted[-1]) if accepted.size else 0))
    if accepted.size:
        precision[start:] = np.minimum.accumulate(precision[start:])
    return precision


def pr_sweep(scores: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Every distinct cut (descending) with its TP, FP, precision, recall and F1.

    Cut ``k`` predicts a match for every score ``>= score_k`` (equal scores are always decided
    together). ``threshold`` is the midpoint between ``score_k`` and the next lower distinct
    score (``score_k`` itself for the lowest): every threshold in that interval makes the same
    decisions on this data, and the midpoint keeps them when serving-time scores differ from the
    validation ones by round-off (other batch padding, another thread count).
    """
    s, y = _check_xy(scores, labels)
    n_pos = float(y.sum())
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    tp = np.cumsum(y)
    fp = np.cumsum(1.0 - y)
    last = np.r_[s[1:] != s[:-1], True]  # last index of each run of equal scores
    tp, fp, cut = tp[last], fp[last], s[last]
    mid = (cut[:-1] + cut[1:]) / 2.0
    # Adjacent floats have no midpoint strictly above the lower one: keep the accepted score.
    thr = np.r_[np.where(mid > cut[1:], mid, cut[:-1]), cut[-1:]]
    precision = tp / (tp + fp)
    recall = tp / n_pos if n_pos else np.zeros_like(tp)
    denom = tp + fp + n_pos
    f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1e-300), 0.0)
    return {
        "threshold": thr,
        "score": cut,
        "tp": tp,
        "fp": fp,
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }


def threshold_for_best_f1(probs: np.ndarray, labels: np.ndarray) -> ThresholdChoice:
    """The threshold maximising F1 of the match class (METHODS §0); ties -> the higher threshold.

    ``score >= threshold`` reproduces the chosen decisions on this data; the threshold sits
    midway between the lowest accepted and the highest rejected score (see :func:`pr_sweep`).
    """
    sweep = pr_sweep(probs, labels)
    if not sweep["tp"].size or sweep["tp"][-1] == 0:
        raise ValueError("best-F1 threshold needs at least one positive label")
    return _choice(sweep, int(np.argmax(sweep["f1"])))


def threshold_for_precision(
    probs: np.ndarray, labels: np.ndarray, target: float, curve: str = "envelope"
) -> ThresholdChoice | None:
    """The lowest threshold whose precision reaches ``target`` (max recall), or None.

    ``curve="envelope"`` (default) reads precision off :func:`precision_envelope`, which is
    monotone, so the cut is where precision first falls below the target rather than the lowest
    lucky bump of the raw curve; ``"raw"`` takes the lowest cut whose raw precision on this data
    reaches the target. The cut sits midway to the next lower score (:func:`pr_sweep`);
    the returned precision is the raw one at that cut, with its Wilson interval. None when no
    threshold reaches the target.
    """
    if not 0.0 < target <= 1.0:
        raise ValueError(f"precision target must be in (0, 1], got {target}")
    if curve not in ("envelope", "raw"):
        raise ValueError(f"curve must be envelope or raw, got {curve!r}")
    sweep = pr_sweep(probs, labels)
    precision = precision_envelope(probs, labels) if curve == "envelope" else sweep["precision"]
    ok = np.flatnonzero((precision >= target - 1e-12) & (sweep["tp"] > 0))
    if ok.size == 0:
        return None
    return _choice(sweep, int(ok[-1]))


__all__ = [
    "CALIBRATOR_FORMAT",
    "METHODS",
    "Calibrator",
    "ThresholdChoice",
    "fit_isotonic",
    "fit_temperature",
    "log_loss",
    "pr_sweep",
    "precision_envelope",
    "sigmoid",
    "threshold_for_best_f1",
    "threshold_for_precision",
    "wilson_interval",
]
