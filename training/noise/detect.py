"""Label-noise detection on labelled pairs and what training does with it (METHODS §7.1, §7.2).

:func:`detect_noisy_pairs` turns per-pair training losses (beta mixture, §7.1) and/or pair
embeddings (kNN disagreement, §7.2) into a :class:`NoiseReport`: a noise probability and a
flag per pair. ``method="both"`` averages the two probabilities, so a pair is flagged (at the
default threshold 0.5) when one method is sure or both lean the same way. ``method="signals"``
fits a label-noise model on pretrained, label-free pair signals (:mod:`training.noise.signals`):
it does not read the model being trained, so the trainer runs it once, before training.

Handling (:func:`noisy_batch_targets`), per pair with noise probability ``w``:

* ``downweight``: BCE on the given label with weight ``1 - w``;
* ``relabel``: the spec's dynamic hard bootstrapping, ``(1 - w) BCE(p, y) + w BCE(p, ẑ)`` with
  ``ẑ`` the model's own current hard prediction (no gradient). BCE is linear in its target, so
  this is one BCE against the soft target ``(1 - w) y + w ẑ``: a confidently noisy pair whose
  prediction disagrees with its label is trained towards the flipped label.

The matcher is trained with ``pos_weight``, which shifts its logits by ``log(pos_weight)``
against the label odds; ``ẑ`` and the anti-collapse prior (§7.1 step 4) use the logit minus
that offset so that the bootstrap target is not biased towards "match".
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from models.precision import autocast
from training.noise.bmm import bmm_noise_probability
from training.noise.knn import knn_noise_probability, pair_features
from training.noise.signals import fit_label_noise

if TYPE_CHECKING:
    from models.bi_encoder import BiEncoder
    from models.lea import LeaCrossEncoder
    from models.lexical import EncodedPair

logger = logging.getLogger(__name__)

NOISE_METHODS: tuple[str, ...] = ("none", "bmm", "knn", "both", "signals")
NOISE_ACTIONS: tuple[str, ...] = ("downweight", "relabel", "forward")
KNN_FEATURES: tuple[str, ...] = ("matcher", "bi-encoder")


@dataclass(frozen=True)
class NoiseConfig:
    """Settings of noise detection and handling; every field is recorded in the manifest.

    ``warmup_epochs``: epochs of plain training before the first detection (None: 3/8 of the
    epochs, at least 1 - the spec's 3-epoch warm-up of an 8-epoch cross-encoder). Detection then
    re-runs after every later epoch and its result weights the next epoch.
    ``knn_features``: ``"matcher"`` = the cross-encoder's own final [CLS] state from the same
    pass that gives the losses (MOIT detects on the features of the network being trained);
    ``"bi-encoder"`` = the spec's ``[u, v, |u - v|, u ⊙ v]`` of ``knn_encoder`` embeddings of the
    two sides (``knn_fields``: text fields, default the matcher's).
    ``prior_weight``: weight of the anti-collapse term ``Σ_c π_c log(π_c / p̄_c)`` added in
    ``relabel`` mode; ``π`` = ``prior_match_rate``, by default the match rate of the training
    labels (the spec's "real match rate", computed from train). The report's
    ``estimated_match_rate`` is not used: with a rare class, a few points of noise probability
    on many non-matches inflate it.
    ``method="signals"`` (:mod:`training.noise.signals`): EM label-noise model on the
    ``signals_encoder`` bi-encoder cosine and the raw pair signals of the two records. It reads
    no model in training, so the trainer detects once before the first epoch and trains the whole
    budget on the corrected targets (like ``restart`` after a warm-up, without the warm-up);
    ``warmup_epochs``, ``restart`` and ``require_disagreement`` (which needs the model's
    losses) do not apply to it and are refused.
    """

    method: str = "bmm"
    action: str = "downweight"
    warmup_epochs: int | None = None
    flag_threshold: float = 0.5
    bmm_iterations: int = 10
    bmm_per_class: bool = True
    bmm_min_class: int = 20
    clip_percentiles: tuple[float, float] = (5.0, 95.0)
    knn_k: int = 25
    knn_rate: float | None = None
    knn_features: str = "matcher"
    knn_encoder: str = "minilm"
    knn_fields: str | list[str] | None = None
    prior_weight: float = 1.0
    prior_match_rate: float | None = None
    # Only a pair the current model also gets wrong (loss above ln 2: the predicted class is not
    # the label) may be flagged. With a rare positive class the mixture fitted on non-match
    # losses puts the hard negatives - correct labels, high loss, still predicted non-match -
    # in the "noisy" component; the gate keeps them.
    require_disagreement: bool = False
    # Detect once after the warm-up, then train a fresh model from the pretrained weights for the
    # whole budget on the corrected labels (DRPL's second stage; MOIT+ retrains on the clean set).
    # Continuing the noisy run leaves only the last, low-learning-rate epochs to learn from the
    # cleaned labels, and its weights have already fitted part of the noise.
    restart: bool = False
    restart_rounds: int = 1
    # Handle the flag (0/1) instead of the probability: a flagged pair is dropped (downweight) or
    # fully relabelled. The soft probability leaves about a third of each flip's weight in place.
    hard_flags: bool = False
    # Bi-encoder of the "signals" method: a packaged name or a saved folder (zero-shot, never tuned on labels).
    signals_encoder: str = "minilm"

    def __post_init__(self) -> None:
        if self.method not in NOISE_METHODS[1:]:
            raise ValueError(f"noise method must be one of {NOISE_METHODS[1:]}, got {self.method!r}")
        if self.action not in NOISE_ACTIONS:
            raise ValueError(f"noise action must be one of {NOISE_ACTIONS}, got {self.action!r}")
        if self.knn_features not in KNN_FEATURES:
            raise ValueError(f"knn_features must be one of {KNN_FEATURES}, got {self.knn_features!r}")
        if self.restart_rounds < 1:
            raise ValueError("restart_rounds must be >= 1")
        if self.warmup_epochs is not None and self.warmup_epochs < 1:
            raise ValueError("warmup_epochs must be >= 1")
        if not 0.0 < self.flag_threshold <= 1.0:
            raise ValueError("flag_threshold must be in (0, 1]")
        if self.before_training and (self.warmup_epochs is not None or self.restart or self.require_disagreement):
            raise ValueError(
                "noise method 'signals' detects once before training: warmup_epochs, restart and "
                "require_disagreement do not apply"
            )

    @property
    def uses_bmm(self) -> bool:
        return self.method in ("bmm", "both")

    @property
    def uses_knn(self) -> bool:
        return self.method in ("knn", "both")

    @property
    def before_training(self) -> bool:
        """Detection independent of the model in training: once, before the first epoch."""
        return self.method == "signals"

    def warmup_for(self, epochs: int) -> int:
        """Warm-up epochs for a run of ``epochs`` epochs."""
        return self.warmup_epochs if self.warmup_epochs is not None else max(1, (3 * epochs) // 8)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["clip_percentiles"] = list(self.clip_percentiles)
        return out

    @classmethod
    def build(cls, method: str, action: str, options: NoiseConfig | dict[str, Any] | None = None) -> NoiseConfig:
        """``method`` and ``action`` plus the other fields from ``options`` (a dict or a config)."""
        if isinstance(options, NoiseConfig):
            return replace(options, method=method, action=action)
        return cls(method=method, action=action, **(options or {}))


@dataclass
class NoiseReport:
    """Per-pair noise probabilities and flags, in the order of the labels given to detection."""

    method: str
    labels: np.ndarray
    p_noise: np.ndarray
    flagged: np.ndarray
    p_bmm: np.ndarray | None = None
    p_knn: np.ndarray | None = None
    knn_labels: np.ndarray | None = None
    bmm_fits: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    epoch: int | None = None
    # "signals": P(clean label = match | signals, label) per pair, the fitted flip rates
    # (P(label 1 | true 0), P(label 0 | true 1)) and the noise model's parameters.
    posterior: np.ndarray | None = None
    rates: tuple[float, float] | None = None
    signals_fit: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def estimated_match_rate(self) -> float:
        """Match rate after correcting each label by its noise probability."""
        y = self.labels.astype(np.float64)
        return float(np.mean((1.0 - self.p_noise) * y + self.p_noise * (1.0 - y))) if len(self) else 0.0

    def precision_recall(self, truly_noisy: np.ndarray | Sequence[bool]) -> dict[str, float]:
        """Precision / recall / F1 of the flags against a known noise mask (benchmarks, tests)."""
        truth = np.asarray(truly_noisy, dtype=bool)
        tp = int((self.flagged & truth).sum())
        n_flag, n_true = int(self.flagged.sum()), int(truth.sum())
        precision = tp / n_flag if n_flag else 0.0
        recall = tp / n_true if n_true else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {"precision": precision, "recall": recall, "f1": f1, "flagged": n_flag, "noisy": n_true}

    def summary(self) -> dict[str, Any]:
        """Small JSON-able summary (for manifests and logs)."""
        out: dict[str, Any] = {
            "method": self.method,
            "epoch": self.epoch,
            "pairs": len(self),
            "flagged": int(self.flagged.sum()),
            "flagged_share": float(self.flagged.mean()) if len(self) else 0.0,
            "flagged_by_label": {str(c): int((self.flagged & (self.labels == c)).sum()) for c in (0, 1)},
            "labelled_by_class": {str(c): int((self.labels == c).sum()) for c in (0, 1)},
            "mean_p_noise": float(self.p_noise.mean()) if len(self) else 0.0,
            "estimated_match_rate": self.estimated_match_rate,
        }
        if self.p_bmm is not None:
            out["flagged_bmm"] = int((self.p_bmm >= self.settings.get("flag_threshold", 0.5)).sum())
            out["bmm"] = self.bmm_fits
        if self.p_knn is not None:
            out["flagged_knn"] = int(self.settings.get("flagged_knn", 0))
        if self.rates is not None:
            out["fitted_flip_rates"] = {"label1_true0": self.rates[0], "label0_true1": self.rates[1]}
        if self.signals_fit:
            out["signals"] = self.signals_fit
        return out

    def to_dict(self) -> dict[str, Any]:
        """The summary plus per-pair lists (``p_noise``, ``flagged``, ``p_bmm``, ``p_knn``)."""
        out = self.summary()
        out["p_noise"] = [round(float(p), 6) for p in self.p_noise]
        out["flagged_pairs"] = [bool(f) for f in self.flagged]
        for name in ("p_bmm", "p_knn"):
            values = getattr(self, name)
            out[name] = None if values is None else [round(float(p), 6) for p in values]
        return out


def detect_noisy_pairs(
    labels: np.ndarray | Sequence[int],
    *,
    losses: np.ndarray | Sequence[float] | None = None,
    features: np.ndarray | None = None,
    config: NoiseConfig | None = None,
    method: str | None = None,
    epoch: int | None = None,
) -> NoiseReport:
    """Noise probability and flag of every labelled pair.

    ``losses``: per-pair loss against the given label from an eval-mode pass (needed by
    ``bmm``/``both``); ``features``: one embedding row per pair (needed by ``knn``/``both``), or
    for ``signals`` the :func:`training.noise.signals.signal_features` rows.
    ``method`` overrides ``config.method``. Deterministic: the same inputs give the same report.
    """
    cfg = config or NoiseConfig()
    if method is not None:
        cfg = replace(cfg, method=method)
    y = np.asarray(labels, dtype=np.int64)
    if y.ndim != 1 or y.size == 0:
        raise ValueError("labels must be a non-empty 1-d sequence")
    settings = cfg.to_dict()
    p_bmm = p_knn = knn_labels = posterior = rates = None
    flagged_knn = None
    fits: dict[str, Any] = {}
    signals_fit: dict[str, Any] = {}
    p_signals = None
    if cfg.method == "signals":
        if features is None:
            raise ValueError("noise method 'signals' needs the signal_features rows")
        fit = fit_label_noise(features, y)
        p_signals, posterior = fit.p_noise(y), fit.posterior
        rates, signals_fit = (fit.rate_01, fit.rate_10), fit.summary()
    if cfg.uses_bmm:
        if losses is None:
            raise ValueError(f"noise method {cfg.method!r} needs per-pair losses")
        p_bmm, fits = bmm_noise_probability(
            losses,
            y,
            per_class=cfg.bmm_per_class,
            min_class_size=cfg.bmm_min_class,
            iterations=cfg.bmm_iterations,
            percentiles=cfg.clip_percentiles,
        )
    if cfg.uses_knn:
        if features is None:
            raise ValueError(f"noise method {cfg.method!r} needs pair features")
        p_knn, flagged_knn, details = knn_noise_probability(features, y, k=cfg.knn_k, rate=cfg.knn_rate)
        knn_labels = details["corrected_labels"]
        settings["knn_k_used"] = details["k"]
        settings["flagged_knn"] = int(flagged_knn.sum())
    if p_bmm is not None and p_knn is not None:
        p_noise = (p_bmm + p_knn) / 2.0
        flagged = p_noise >= cfg.flag_threshold
    elif p_bmm is not None:
        p_noise = p_bmm
        flagged = p_bmm >= cfg.flag_threshold
    elif p_signals is not None:
        p_noise = p_signals
        flagged = p_signals >= cfg.flag_threshold
    else:
        assert p_knn is not None and flagged_knn is not None
        p_noise, flagged = p_knn, flagged_knn
    if cfg.require_disagreement and losses is not None:
        disagree = np.asarray(losses, dtype=np.float64) > math.log(2.0)
        p_noise = np.where(disagree, p_noise, 0.0)
        flagged = np.asarray(flagged, dtype=bool) & disagree
        settings["gated_by_disagreement"] = int((~disagree).sum())
    if cfg.hard_flags:
        p_noise = np.asarray(flagged, dtype=np.float64)
    report = NoiseReport(
        method=cfg.method,
        labels=y,
        p_noise=np.asarray(p_noise, dtype=np.float64),
        flagged=np.asarray(flagged, dtype=bool),
        p_bmm=p_bmm,
        p_knn=p_knn,
        knn_labels=knn_labels,
        bmm_fits=fits,
        settings=settings,
        epoch=epoch,
        posterior=posterior,
        rates=rates,
        signals_fit=signals_fit,
    )
    s = report.summary()
    logger.info(
        "noise detection (%s%s): %d of %d pairs flagged (%d labelled match, %d non-match), estimated match rate %.3f",
        cfg.method,
        "" if epoch is None else f", after epoch {epoch}",
        s["flagged"],
        s["pairs"],
        s["flagged_by_label"]["1"],
        s["flagged_by_label"]["0"],
        s["estimated_match_rate"],
    )
    return report


# --------------------------------------------------------------------------------------------
# model passes
# --------------------------------------------------------------------------------------------


@torch.inference_mode()
def score_training_pairs(
    model: LeaCrossEncoder,
    pairs: Sequence[tuple[str, str]],
    *,
    batch_size: int = 64,
    features: bool = False,
    progress: bool = False,
    encoded: Sequence[EncodedPair] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Eval-mode ``(logits (n,), unit [CLS] states (n, h) or None)`` for serialised pairs.

    Runs in the model's :attr:`~models.lea.LeaCrossEncoder.precision`; ``encoded`` (the pairs
    already passed through ``model.collator.encode``) skips the tokenisation.

    The [CLS] state is the encoder's last hidden state at position 0, caught with a forward hook
    on the HF base model, so it comes from the same pass as the logit at no extra cost.
    """
    n = len(encoded) if encoded is not None else len(pairs)
    logits = np.empty(n, dtype=np.float32)
    feats: np.ndarray | None = None
    caught: list[torch.Tensor] = []
    hook = None
    if features:
        feats = np.empty((n, int(model.model.config.hidden_size)), dtype=np.float32)

        def catch(_module: torch.nn.Module, _inputs: Any, output: Any) -> None:
            caught.append(output[0][:, 0].detach())

        hook = model.model.base_model.register_forward_hook(catch)
    items = list(encoded) if encoded is not None else model.collator.encode(list(pairs))
    if len(items) != n:
        raise ValueError(f"{len(items)} encoded pairs for {n} pairs")
    was_training = model.training
    model.eval()
    order = np.argsort([len(it) for it in items], kind="stable")
    try:
        starts = range(0, n, batch_size)
        with torch.inference_mode(), autocast(model.precision, model.device):
            for start in tqdm(starts, desc="noise scan", unit="batch", disable=not progress, leave=False):
                chunk = order[start : start + batch_size]
                batch = model.collator.pad([items[i] for i in chunk])
                caught.clear()
                logits[chunk] = model.batch_forward(batch).float().cpu().numpy()
                if feats is not None:
                    feats[chunk] = caught[-1].float().cpu().numpy()
    finally:
        if hook is not None:
            hook.remove()
        if was_training:
            model.train()
    if feats is not None:
        feats /= np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
    return logits, feats


def bce_losses(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-pair binary cross-entropy of logits against 0/1 labels (numerically stable)."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    return np.maximum(z, 0.0) - z * y + np.log1p(np.exp(-np.abs(z)))


def bi_encoder_features(
    encoder: BiEncoder, lefts: Sequence[str], rights: Sequence[str], batch_size: int = 64
) -> np.ndarray:
    """The spec's ``[u, v, |u - v|, u ⊙ v]`` pair rows; each distinct text is embedded once."""
    texts = sorted(set(lefts) | set(rights))
    emb = encoder.encode(texts, batch_size=batch_size)
    row = {t: i for i, t in enumerate(texts)}
    u = emb[[row[t] for t in lefts]]
    v = emb[[row[t] for t in rights]]
    return pair_features(u, v)


# --------------------------------------------------------------------------------------------
# handling in the loss
# --------------------------------------------------------------------------------------------


def corrected_targets(
    labels: np.ndarray,
    weights: np.ndarray,
    report: NoiseReport,
    action: str,
    predictions: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Fixed ``(targets, weights)`` for training a fresh model after one detection (``restart``).

    ``downweight``: the labels, each weight times ``1 - p_noise``; ``relabel``: the soft target
    ``(1 - p) y + p ẑ`` with ``ẑ`` the detecting model's hard prediction (0/1), weights unchanged;
    ``forward``: labels and weights unchanged (the loss corrects for the flips, see
    :func:`forward_corrected_bce`). With ``predictions = 1 - labels`` the ``relabel`` target is
    ``P(clean label = match)`` under the report (the ``signals`` method's posterior).
    """
    y = np.asarray(labels, dtype=np.float64)
    p = np.asarray(report.p_noise, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if action == "forward":  # the labels stay; the loss models their flips (flip_rates)
        return y, w
    if action == "downweight":
        return y, w * (1.0 - p)
    if action == "relabel":
        return (1.0 - p) * y + p * np.asarray(predictions, dtype=np.float64), w
    raise ValueError(f"noise action must be one of {NOISE_ACTIONS}, got {action!r}")


# Above this, a flip rate leaves too little signal to invert (the two rates must sum below 1).
MAX_FLIP_RATE = 0.45


def flip_rates(labels: np.ndarray, report: NoiseReport) -> tuple[float, float]:
    """Class-conditional flip rates ``(P(label 1 | true 0), P(label 0 | true 1))`` from a detection.

    The detection's noise probabilities say how many observed 1s are really 0s and the other way
    round; the clean class sizes follow, and each rate is the flipped count over its clean
    class. Capped at :data:`MAX_FLIP_RATE` each.
    """
    y = np.asarray(labels, dtype=np.float64)
    p = np.asarray(report.p_noise, dtype=np.float64)
    flipped_to_1 = float((p * y).sum())  # labelled 1, really 0
    flipped_to_0 = float((p * (1.0 - y)).sum())  # labelled 0, really 1
    clean_1 = float(y.sum()) - flipped_to_1 + flipped_to_0
    clean_0 = float(len(y) - y.sum()) - flipped_to_0 + flipped_to_1
    rate_01 = flipped_to_1 / clean_0 if clean_0 > 0 else 0.0
    rate_10 = flipped_to_0 / clean_1 if clean_1 > 0 else 0.0
    return min(MAX_FLIP_RATE, max(0.0, rate_01)), min(MAX_FLIP_RATE, max(0.0, rate_10))


def forward_corrected_bce(
    logits: torch.Tensor, labels: torch.Tensor, rates: tuple[float, float], logit_offset: float = 0.0
) -> torch.Tensor:
    """Per-pair BCE of the *noisy* labels against the model's clean belief pushed through the flips.

    Forward loss correction (Patrini et al., 2017) for binary labels: with ``p = σ(logit -
    offset)`` the model's clean match probability, a label is 1 with probability
    ``q = r01 + (1 - r01 - r10) p``; the loss is ``-[y log q + (1 - y) log(1 - q)]``. Its
    minimiser is the clean posterior, so the model is not pushed to fit the flipped labels; no
    pair is dropped, so the hard true matches a loss-based detector flags stay in training.
    Unweighted by class (``q`` is a calibrated probability; ``offset`` = ``log(pos_weight)``
    keeps the logit's meaning the same as in the class-balanced warm-up).
    """
    r01, r10 = rates
    p = torch.sigmoid(logits.float() - logit_offset)
    q = (r01 + (1.0 - r01 - r10) * p).clamp(1e-6, 1.0 - 1e-6)
    y = labels.float()
    return -(y * torch.log(q) + (1.0 - y) * torch.log1p(-q))


def pos_weight_for_targets(targets: np.ndarray, weights: np.ndarray) -> float:
    """``sqrt(neg / pos)`` of weighted soft targets (METHODS §9.4 on the corrected labels); 1.0 if a class is empty."""
    t = np.asarray(targets, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    pos, neg = float((w * t).sum()), float((w * (1.0 - t)).sum())
    return math.sqrt(neg / pos) if pos > 0 and neg > 0 else 1.0


def noisy_batch_targets(
    labels: torch.Tensor,
    p_noise: torch.Tensor,
    logits: torch.Tensor,
    action: str,
    logit_offset: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(targets, weights)`` of a batch under a noise action (see the module docstring).

    ``logit_offset``: ``log(pos_weight)``; the model's own hard prediction is
    ``logit - offset > 0``.
    """
    p = p_noise.to(labels.dtype)
    if action == "downweight":
        return labels, 1.0 - p
    if action == "relabel":
        z_hat = ((logits.detach() - logit_offset) > 0).to(labels.dtype)
        return (1.0 - p) * labels + p * z_hat, torch.ones_like(labels)
    raise ValueError(f"noise action must be one of {NOISE_ACTIONS}, got {action!r}")


def prior_penalty(logits: torch.Tensor, match_rate: float, logit_offset: float = 0.0) -> torch.Tensor:
    """``Σ_c π_c log(π_c / p̄_c)`` with ``p̄`` the batch-mean (offset-corrected) prediction."""
    pi = min(max(float(match_rate), 1e-6), 1.0 - 1e-6)
    p_bar = torch.sigmoid(logits - logit_offset).mean().clamp(1e-6, 1.0 - 1e-6)
    return pi * torch.log(pi / p_bar) + (1.0 - pi) * torch.log((1.0 - pi) / (1.0 - p_bar))


def flip_labels(labels: np.ndarray | Sequence[int], rate: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Flip exactly ``round(rate * n)`` labels chosen uniformly at random: ``(new labels, flipped)``."""
    y = np.asarray(labels, dtype=np.int64)
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must be in [0, 1], got {rate}")
    n_flip = int(round(rate * y.size))
    flipped = np.zeros(y.size, dtype=bool)
    flipped[np.random.default_rng(seed).choice(y.size, n_flip, replace=False)] = True
    return np.where(flipped, 1 - y, y), flipped


def log_pos_weight(pos_weight: float) -> float:
    return math.log(pos_weight) if pos_weight > 0 else 0.0


__all__ = [
    "KNN_FEATURES",
    "NOISE_ACTIONS",
    "NOISE_METHODS",
    "NoiseConfig",
    "NoiseReport",
    "bce_losses",
    "bi_encoder_features",
    "detect_noisy_pairs",
    "flip_labels",
    "flip_rates",
    "forward_corrected_bce",
    "log_pos_weight",
    "noisy_batch_targets",
    "prior_penalty",
    "score_training_pairs",
]
