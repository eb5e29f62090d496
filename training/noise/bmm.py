"""Two-component beta mixture over normalised per-pair losses (METHODS §7.1, Arazo et al. 2019).

Clean pairs are fitted early and have low loss; wrongly labelled pairs keep a high loss for a
while, so the loss distribution is bimodal. The losses are clipped to their [5th, 95th]
percentiles and min-max scaled into (eps, 1 - eps); a two-component beta mixture is fitted by EM
(10 iterations, init ``(α, β) = (1, 2)`` and ``(2, 1)``, weights ½) with the method-of-moments
M-step of the spec; the posterior of the high-loss component is the noise probability. As in
the authors' code, the posterior is tabulated on 100 bins and held at its maximum above the
bin where it peaks, so a larger loss never gets a *smaller* noise probability.

Adaptation [ours]: :func:`bmm_noise_probability` fits the mixture per labelled class, because
matches and non-matches have different loss distributions (and, under symmetric flips, very
different noise rates: with 10 % true matches, most pairs labelled "match" after 20 % flips are
flipped non-matches).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

#: Scaled losses live in (EPS, 1 - EPS): the beta density is infinite or zero at 0 and 1.
EPS = 1e-4
#: Floor of likelihoods / responsibilities (the authors' ``eps_nan``), against 0/0.
_TINY = 1e-12
#: Lower bound of fitted shape parameters: a degenerate component (variance ~ mean(1-mean))
#: would give alpha <= 0 from the moment equations.
_MIN_SHAPE = 1e-2
LOOKUP_BINS = 100


def normalise_losses(
    losses: np.ndarray | Sequence[float],
    percentiles: tuple[float, float] = (5.0, 95.0),
    eps: float = EPS,
) -> np.ndarray:
    """Clip to the given percentiles, min-max scale, and squeeze into ``(eps, 1 - eps)``.

    A constant input (no spread) maps to 0.5 everywhere: there is nothing to separate.
    """
    x = np.asarray(losses, dtype=np.float64)
    if x.size == 0:
        return x.copy()
    lo, hi = np.percentile(x, percentiles)
    if not hi > lo:
        return np.full_like(x, 0.5)
    x = (np.clip(x, lo, hi) - lo) / (hi - lo)
    return np.clip(x, eps, 1.0 - eps)


def beta_logpdf(x: np.ndarray, a: float, b: float) -> np.ndarray:
    """log Beta(x; a, b) for x in (0, 1), with ``math.lgamma`` (no scipy dependency)."""
    log_norm = math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
    return (a - 1.0) * np.log(x) + (b - 1.0) * np.log1p(-x) - log_norm


def _fit_beta_weighted(x: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    # Weighted method of moments (the spec's M-step).
    total = float(w.sum())
    mu = float((w * x).sum() / total)
    var = float((w * (x - mu) ** 2).sum() / total)
    mu = min(max(mu, EPS), 1.0 - EPS)
    var = max(var, 1e-8)
    common = mu * (1.0 - mu) / var - 1.0
    alpha = max(mu * common, _MIN_SHAPE)
    beta = max(alpha * (1.0 - mu) / mu, _MIN_SHAPE)
    return alpha, beta


@dataclass
class BetaMixture:
    """A two-component beta mixture on (0, 1), fitted by EM with method-of-moments M-steps."""

    alphas: list[float] = field(default_factory=lambda: [1.0, 2.0])
    betas: list[float] = field(default_factory=lambda: [2.0, 1.0])
    weights: list[float] = field(default_factory=lambda: [0.5, 0.5])
    iterations: int = 10

    def _weighted_likelihood(self, x: np.ndarray) -> np.ndarray:
        # (2, n); in log space first so that huge shapes do not overflow.
        logs = np.stack([beta_logpdf(x, a, b) for a, b in zip(self.alphas, self.betas)])
        logs = logs + np.log(np.maximum(np.asarray(self.weights), _TINY))[:, None]
        return np.exp(np.clip(logs, -700.0, 700.0))

    def responsibilities(self, x: np.ndarray) -> np.ndarray:
        """(2, n) posterior of each component for every x (E-step)."""
        r = np.maximum(self._weighted_likelihood(np.asarray(x, dtype=np.float64)), _TINY)
        return r / r.sum(axis=0, keepdims=True)

    def fit(self, x: np.ndarray | Sequence[float]) -> BetaMixture:
        """Run ``iterations`` EM steps on ``x`` (already in (0, 1)); returns self."""
        x = np.clip(np.asarray(x, dtype=np.float64), EPS, 1.0 - EPS)
        if x.size == 0:
            return self
        for _ in range(self.iterations):
            r = self.responsibilities(x)
            for k in range(2):
                self.alphas[k], self.betas[k] = _fit_beta_weighted(x, r[k])
            self.weights = [float(v) for v in r.sum(axis=1) / r.sum()]
        return self

    def means(self) -> list[float]:
        return [a / (a + b) for a, b in zip(self.alphas, self.betas)]

    @property
    def high(self) -> int:
        """Index of the high-loss (noisy) component: the one with the larger mean."""
        m = self.means()
        return int(m[1] >= m[0])

    def posterior(self, x: np.ndarray | Sequence[float], component: int | None = None) -> np.ndarray:
        """Exact posterior of ``component`` (default: the high-loss one) at each x."""
        k = self.high if component is None else component
        return self.responsibilities(np.clip(np.asarray(x, dtype=np.float64), EPS, 1.0 - EPS))[k]

    def lookup_table(self, bins: int = LOOKUP_BINS) -> np.ndarray:
        """High-component posterior on ``bins`` grid points, held at its peak above the peak."""
        grid = np.linspace(EPS, 1.0 - EPS, bins)
        table = self.posterior(grid)
        peak = int(np.argmax(table))
        table[peak:] = table[peak]
        return table

    def noise_probability(self, x: np.ndarray | Sequence[float], bins: int = LOOKUP_BINS) -> np.ndarray:
        """Tabulated noise probability of scaled losses ``x`` (the authors' ``look_lookup``)."""
        idx = np.clip((np.asarray(x, dtype=np.float64) * bins).astype(np.int64), 0, bins - 1)
        return self.lookup_table(bins)[idx]

    def to_dict(self) -> dict[str, Any]:
        return {
            "alphas": [round(a, 6) for a in self.alphas],
            "betas": [round(b, 6) for b in self.betas],
            "weights": [round(w, 6) for w in self.weights],
            "means": [round(m, 6) for m in self.means()],
            "high_component": self.high,
        }


def bmm_noise_probability(
    losses: np.ndarray | Sequence[float],
    labels: np.ndarray | Sequence[int],
    *,
    per_class: bool = True,
    min_class_size: int = 20,
    iterations: int = 10,
    percentiles: tuple[float, float] = (5.0, 95.0),
) -> tuple[np.ndarray, dict[str, Any]]:
    """Noise probability of every pair from its loss: ``(p_noise (n,), fitted mixtures)``.

    With ``per_class`` each labelled class gets its own normalisation and mixture; a class with
    fewer than ``min_class_size`` pairs is pooled with the rest (one global fit) because EM on a
    handful of points is meaningless. The second value maps ``"all"`` or ``"0"``/``"1"`` to
    :meth:`BetaMixture.to_dict`.
    """
    losses = np.asarray(losses, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if losses.shape != labels.shape:
        raise ValueError(f"{losses.shape[0]} losses for {labels.shape[0]} labels")
    p = np.zeros(losses.shape[0], dtype=np.float64)
    fits: dict[str, Any] = {}
    groups: list[tuple[str, np.ndarray]]
    classes = [c for c in (0, 1) if (labels == c).any()]
    if per_class and len(classes) == 2 and all((labels == c).sum() >= min_class_size for c in classes):
        groups = [(str(c), labels == c) for c in classes]
    else:
        groups = [("all", np.ones_like(labels, dtype=bool))]
    for name, mask in groups:
        if not mask.any():
            continue
        x = normalise_losses(losses[mask], percentiles)
        mixture = BetaMixture(iterations=iterations).fit(x)
        p[mask] = mixture.noise_probability(x)
        fits[name] = mixture.to_dict()
    return p, fits


__all__ = ["BetaMixture", "beta_logpdf", "bmm_noise_probability", "normalise_losses"]
