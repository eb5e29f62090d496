"""Label-noise detection from pretrained, label-free pair signals (the ``signals`` noise method).

The loss-based detectors (:mod:`training.noise.bmm`) read the losses of the model being trained,
which memorises the flips and finds the hard true matches as hard to fit as the flips. The
signals here never saw a label: the cosine of the two sides under the packaged (zero-shot)
bi-encoder and the raw per-signal values of :func:`models.pair_signals.pair_signals`
(identifier agreement, token coverage both ways, soft F1, brand, price ratio). Only raw
values: the zero-shot scorer's blended score has weights tuned on the benchmarks' labelled
validation splits and would leak clean labels into the detector. With symmetric flips on a
rare match class, most wrong "match" labels are random non-matching pairs with low
similarity and most wrong "non-match" labels are true matches with high similarity, which
these signals see without any training.

**Noise model.** A latent clean label ``z`` in {0, 1}; the observed label ``y`` flips with
class-conditional rates ``r01 = P(y=1 | z=0)`` and ``r10 = P(y=0 | z=1)`` (independent of the
features given ``z``). :func:`fit_label_noise` fits it by EM and returns the posterior
``P(z=1 | x, y)``; a pair's noise probability is the posterior of the other class.

* **Stage 1, generative** (initialised from the observed labels): ``x | z`` is a Gaussian on
  the Fisher z-transform ``atanh(cos)`` of the cosine times a categorical distribution of the
  identifier agreement (match / conflict / absent), ``z ~ Bernoulli(pi)``. Both are clearly
  bimodal across the classes, so this fit is robust even when 40 % of the labels are flipped.
* **Stage 2, discriminative**: the label-noise logistic regression of Bootkrajang & Kabán
  (2012): ``P(z=1 | x) = σ(w·x)`` on every signal (standardised, L2-regularised, fitted by
  weighted Newton steps against the posterior), ``P(y | x) = Σ_z P(y | z) P(z | x)``, started
  from stage 1's posterior and rates.

Why both (Abt-Buy's training split with 20 % / 40 % of the labels flipped; the benchmark is
``benchmarks/bench_noise_detectors.py``, numbers in ``docs/benchmarks/noise.md``; the
alternatives below were prototypes on the same data): a per-class density over *all* signals
(naive Bayes, diagonal Gaussians) double counts the strongly correlated coverages, soft F1 and
cosine, and ranks the flips worse than stage 1's two signals (flip-detection AUC 0.965 against
0.98); a full covariance collapses on the signals' point masses (coverage 0 or 1, one-hot
agreements; AUC 0.91). The logistic model takes correlated signals as they are, but EM started
from the observed labels stays at its "no flips" fixed point (at 40 % flips it flagged nothing):
the regression on noisy labels already explains them with a flat slope. Started from stage 1
it ranks the flips at AUC 0.992 at 20 % flips, against 0.98 for stage 1 alone and 0.994 for an
oracle (a logistic regression fitted on the clean labels, with the true rates); at 40 % flips it
adds little over stage 1.

Rates are capped at ``max_rate`` < 0.5 each, so ``r01 + r10 < 1`` (beyond that the labels say
the opposite of the truth and the model is not identifiable). EM stops when the (penalised)
log-likelihood gains less than ``tol`` per pair, or after ``max_iter`` iterations per stage.
Everything is deterministic: no random initialisation, closed-form and Newton updates.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from models.pair_signals import FEATURE_NAMES, pair_signals
from models.product_text import embed_text, title_of

if TYPE_CHECKING:
    from models.bi_encoder import BiEncoder

logger = logging.getLogger(__name__)

#: Columns of :func:`signal_features`: the cosine, then the pair signals at ``_RAW`` (their
#: ``FEATURE_NAMES`` positions). The "absent" agreements are left out: they are one minus the
#: other two, which the logistic model's intercept already covers.
_RAW = tuple(i for i, name in enumerate(FEATURE_NAMES) if not name.endswith("_absent"))
SIGNAL_NAMES: tuple[str, ...] = ("cosine", *(FEATURE_NAMES[i] for i in _RAW))
_COL = {name: i for i, name in enumerate(SIGNAL_NAMES)}

#: Fisher z of the cosine is clipped here: identical texts (cosine 1) would be infinite.
_COS_CLIP = 0.999
#: Variance floor of the stage-1 Gaussians, in atanh(cosine) units: a class of a few identical
#: pairs must not get a zero-width density.
_VAR_FLOOR = 1e-3
_RATE_FLOOR = 1e-6
_EXP_CLIP = 35.0


# --------------------------------------------------------------------------------------------
# features
# --------------------------------------------------------------------------------------------


def record_text(record: Mapping[str, Any]) -> str:
    """The text the bi-encoder embeds for a record: its title (``title`` or ``name``), led by the brand."""
    return embed_text({**record, "title": title_of(record)})


def side_cosines(
    encoder: BiEncoder, left_texts: Sequence[str], right_texts: Sequence[str], batch_size: int = 64
) -> np.ndarray:
    """Cosine of each (left, right) text pair under ``encoder``; every distinct text is embedded once."""
    if len(left_texts) != len(right_texts):
        raise ValueError(f"{len(left_texts)} left texts for {len(right_texts)} right texts")
    texts = sorted(set(left_texts) | set(right_texts))
    emb = encoder.encode(texts, batch_size=batch_size)  # unit rows
    row = {t: i for i, t in enumerate(texts)}
    u = emb[[row[t] for t in left_texts]]
    v = emb[[row[t] for t in right_texts]]
    return np.sum(u * v, axis=1).astype(np.float64)


def raw_pair_signals(lefts: Sequence[Mapping[str, Any]], rights: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """``(n, 10)`` raw :class:`~models.pair_signals.PairSignals` values, in ``SIGNAL_NAMES[1:]`` order."""
    if len(lefts) != len(rights):
        raise ValueError(f"{len(lefts)} left records for {len(rights)} right records")
    rows = [pair_signals(a, b).as_features() for a, b in zip(lefts, rights, strict=True)]
    full = np.asarray(rows, dtype=np.float64).reshape(len(rows), -1)
    return full[:, list(_RAW)] if len(rows) else np.zeros((0, len(_RAW)))


def signal_features(
    lefts: Sequence[Mapping[str, Any]],
    rights: Sequence[Mapping[str, Any]],
    encoder: BiEncoder,
    batch_size: int = 64,
) -> np.ndarray:
    """``(n, len(SIGNAL_NAMES))`` label-free signals of (left, right) record pairs.

    ``lefts`` / ``rights``: product mappings (a :class:`~training.data.records.Record`'s
    ``fields``, or service dicts). ``encoder``: a pretrained bi-encoder, normally
    ``BiEncoder.from_pretrained("minilm")`` (tests pass a tiny random one).
    """
    cos = side_cosines(encoder, [record_text(r) for r in lefts], [record_text(r) for r in rights], batch_size)
    return np.column_stack([cos, raw_pair_signals(lefts, rights)])


# --------------------------------------------------------------------------------------------
# the noise model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelNoiseFit:
    """What :func:`fit_label_noise` found: the clean-label posterior and the noise model."""

    #: ``P(z=1 | x, y)`` per pair: the soft clean label.
    posterior: np.ndarray
    #: ``pi = P(z=1)``: the clean match rate (mean posterior).
    match_rate: float
    #: ``P(y=1 | z=0)``: share of the clean non-matches labelled "match".
    rate_01: float
    #: ``P(y=0 | z=1)``: share of the clean matches labelled "non-match".
    rate_10: float
    log_likelihood: float
    iterations: dict[str, int]
    converged: bool
    features: tuple[str, ...]

    def p_noise(self, labels: np.ndarray | Sequence[int]) -> np.ndarray:
        """Posterior probability that each observed label is wrong."""
        y = np.asarray(labels, dtype=np.int64)
        return np.where(y == 1, 1.0 - self.posterior, self.posterior)

    def summary(self) -> dict[str, Any]:
        """JSON-able fit parameters (no per-pair values)."""
        return {
            "match_rate": self.match_rate,
            "rate_01": self.rate_01,
            "rate_10": self.rate_10,
            "log_likelihood": self.log_likelihood,
            "iterations": dict(self.iterations),
            "converged": self.converged,
            "features": list(self.features),
        }


def fit_label_noise(
    features: np.ndarray,
    labels: np.ndarray | Sequence[int],
    *,
    init_rate: float = 0.1,
    max_rate: float = 0.49,
    l2: float = 1e-4,
    tol: float = 1e-6,
    max_iter: int = 500,
    logistic: bool = True,
) -> LabelNoiseFit:
    """EM fit of the class-conditional label-noise model on :func:`signal_features` rows.

    ``init_rate``: both flip rates of stage 1's first E-step. Estimated from the labels
    themselves they would be 0, which is a fixed point of EM (the posterior would stay the
    labels). ``max_rate``: cap of each rate (< 0.5). ``l2``: ridge penalty of the logistic
    stage on standardised signals (mean-loss scale); kept small because the ridge flattens
    ``σ(w·x)``, and a flatter clean-label model explains fewer labels as flips: at 1e-3 the rate
    of flipped matches came out up to 0.16 low at 40 % flips, at 1e-4 within 0.03 (Abt-Buy and
    synthetic signals). ``tol``: log-likelihood gain per pair below which a stage stops;
    ``max_iter``: iteration cap per stage. ``logistic=False`` stops after stage 1 (an ablation).
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if x.ndim != 2 or x.shape[1] != len(SIGNAL_NAMES):
        raise ValueError(f"features must be (n, {len(SIGNAL_NAMES)}) rows in SIGNAL_NAMES order, got {x.shape}")
    if y.shape != (x.shape[0],):
        raise ValueError(f"{y.size} labels for {x.shape[0]} feature rows")
    if not np.all(np.isin(y, (0, 1))) or y.min() == y.max():
        raise ValueError("labels must be 0/1 with both classes present")
    if not np.all(np.isfinite(x)):
        raise ValueError("features must be finite")
    if not 0.0 < init_rate <= max_rate < 0.5:
        raise ValueError("need 0 < init_rate <= max_rate < 0.5")
    if max_iter < 1 or l2 <= 0 or tol <= 0:
        raise ValueError("need max_iter >= 1, l2 > 0 and tol > 0")
    cos_z = np.arctanh(np.clip(x[:, _COL["cosine"]], -_COS_CLIP, _COS_CLIP))
    # 0 = identifiers agree, 1 = conflict, 2 = absent on a side.
    ident = np.where(x[:, _COL["identifier_match"]] > 0.5, 0, np.where(x[:, _COL["identifier_conflict"]] > 0.5, 1, 2))
    q, r01, r10, ll, it1, ok1 = _fit_generative(cos_z, ident, y, init_rate, max_rate, tol, max_iter)
    used = [_COL["cosine"], _COL["identifier_match"], _COL["identifier_conflict"]]
    it2, ok2 = 0, True
    if logistic:
        design, used = _design(np.column_stack([cos_z, x[:, 1:]]))
        q, r01, r10, ll, it2, ok2 = _fit_logistic(design, y, q, r01, r10, max_rate, l2, tol, max_iter)
    fit = LabelNoiseFit(
        posterior=q,
        match_rate=float(q.mean()),
        rate_01=r01,
        rate_10=r10,
        log_likelihood=ll,
        iterations={"generative": it1, "logistic": it2} if logistic else {"generative": it1},
        converged=ok1 and ok2,
        features=tuple(SIGNAL_NAMES[i] for i in used),
    )
    logger.info(
        "signals noise model: match rate %.3f, flip rates 0->1 %.3f, 1->0 %.3f (%d + %d EM iterations%s)",
        fit.match_rate,
        r01,
        r10,
        it1,
        it2,
        "" if fit.converged else ", not converged",
    )
    return fit


def _rates(q: np.ndarray, y: np.ndarray, max_rate: float) -> tuple[float, float]:
    """M-step flip rates: expected flipped pairs over the expected size of each clean class."""
    r01 = float(((1.0 - q) * y).sum() / max((1.0 - q).sum(), 1e-12))
    r10 = float((q * (1.0 - y)).sum() / max(q.sum(), 1e-12))
    return min(max_rate, max(_RATE_FLOOR, r01)), min(max_rate, max(_RATE_FLOOR, r10))


def _label_likelihoods(y: np.ndarray, r01: float, r10: float) -> tuple[np.ndarray, np.ndarray]:
    """``(P(y | z=1), P(y | z=0))`` per pair."""
    return np.where(y == 1, 1.0 - r10, r10), np.where(y == 1, r01, 1.0 - r01)


def _posterior(log_a1: np.ndarray, log_a0: np.ndarray) -> tuple[np.ndarray, float]:
    """``P(z=1 | ...)`` from the two joint log-likelihoods, and the summed log evidence."""
    m = np.maximum(log_a1, log_a0)
    e1, e0 = np.exp(log_a1 - m), np.exp(log_a0 - m)
    return e1 / (e1 + e0), float((m + np.log(e1 + e0)).sum())


def _fit_generative(
    cos_z: np.ndarray, ident: np.ndarray, y: np.ndarray, init_rate: float, max_rate: float, tol: float, max_iter: int
) -> tuple[np.ndarray, float, float, float, int, bool]:
    """Stage 1: Gaussian(atanh cos) x categorical(identifier) per clean class.

    Returns ``(q, r01, r10, log-likelihood, iterations, converged)``.
    """
    n = y.size
    q = y.astype(np.float64)  # the M-step's first responsibilities are the observed labels
    r01 = r10 = init_rate
    prev = ll = -math.inf
    converged = False
    it = 0
    for it in range(1, max_iter + 1):
        pi = min(max(float(q.mean()), 1e-6), 1.0 - 1e-6)
        log_density = []
        for w in (q, 1.0 - q):
            mass = max(float(w.sum()), 1e-12)
            mu = float(w @ cos_z) / mass
            var = float(w @ (cos_z - mu) ** 2) / mass + _VAR_FLOOR
            counts = np.array([w[ident == c].sum() for c in range(3)]) + 1.0  # Laplace smoothing
            log_gauss = -0.5 * (cos_z - mu) ** 2 / var - 0.5 * math.log(2 * math.pi * var)
            log_density.append(log_gauss + np.log(counts / counts.sum())[ident])
        if it > 1:
            r01, r10 = _rates(q, y, max_rate)
        p1, p0 = _label_likelihoods(y, r01, r10)
        q, ll = _posterior(math.log(pi) + log_density[0] + np.log(p1), math.log(1 - pi) + log_density[1] + np.log(p0))
        if ll - prev < tol * n:
            converged = True
            break
        prev = ll
    r01, r10 = _rates(q, y, max_rate)
    return q, r01, r10, ll, it, converged


def _design(x: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Standardised columns that vary (a constant signal, e.g. no brand field anywhere, carries nothing)."""
    std = x.std(axis=0)
    used = [j for j in range(x.shape[1]) if std[j] > 1e-9]
    z = (x[:, used] - x[:, used].mean(axis=0)) / std[used]
    return np.column_stack([np.ones(x.shape[0]), z]), used


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -_EXP_CLIP, _EXP_CLIP)))


def _soft_logistic(a: np.ndarray, t: np.ndarray, beta: np.ndarray, l2: float, steps: int = 25) -> np.ndarray:
    """Ridge logistic regression against soft targets ``t`` by damped Newton steps from ``beta``.

    Minimises ``mean(BCE(σ(a·β), t)) + l2/2 |β[1:]|²`` (the intercept is not penalised).
    """
    n = a.shape[0]
    pen = np.full(a.shape[1], l2)
    pen[0] = 0.0

    def objective(b: np.ndarray) -> float:
        z = a @ b
        bce = np.maximum(z, 0.0) - z * t + np.log1p(np.exp(-np.abs(z)))
        return float(bce.mean() + 0.5 * (pen * b * b).sum())

    b = beta.copy()
    current = objective(b)
    for _ in range(steps):
        p = _sigmoid(a @ b)
        grad = a.T @ (p - t) / n + pen * b
        hess = (a * (p * (1.0 - p))[:, None]).T @ a / n + np.diag(pen) + 1e-9 * np.eye(a.shape[1])
        step = np.linalg.solve(hess, grad)
        size = 1.0
        while size > 1e-4:  # backtracking keeps every step a descent step
            trial = b - size * step
            value = objective(trial)
            if value <= current:
                break
            size *= 0.5
        else:
            break
        b, gain, current = trial, current - value, value
        if gain < 1e-12:
            break
    return b


def _fit_logistic(
    a: np.ndarray,
    y: np.ndarray,
    q: np.ndarray,
    r01: float,
    r10: float,
    max_rate: float,
    l2: float,
    tol: float,
    max_iter: int,
) -> tuple[np.ndarray, float, float, float, int, bool]:
    """Stage 2: label-noise logistic regression from stage 1's posterior; ``(q, r01, r10, ll, iters, converged)``."""
    n = y.size
    beta = np.zeros(a.shape[1])
    prev = -math.inf
    converged = False
    ll = -math.inf
    it = 0
    while it < max_iter:
        it += 1
        beta = _soft_logistic(a, q, beta, l2)  # M-step: P(z | x) against the current posterior
        r01, r10 = _rates(q, y, max_rate)
        p = _sigmoid(a @ beta)
        p1, p0 = _label_likelihoods(y, r01, r10)
        with np.errstate(divide="ignore"):
            q, ll = _posterior(np.log(p1 * p), np.log(p0 * (1.0 - p)))
        ll -= 0.5 * n * l2 * float((beta[1:] ** 2).sum())  # the penalised objective EM increases
        if ll - prev < tol * n:
            converged = True
            break
        prev = ll
    r01, r10 = _rates(q, y, max_rate)
    return q, r01, r10, ll, it, converged


__all__ = [
    "SIGNAL_NAMES",
    "LabelNoiseFit",
    "fit_label_noise",
    "raw_pair_signals",
    "record_text",
    "side_cosines",
    "signal_features",
]
