"""The default matcher's calibrated head: logistic regression over signals that mean the same in
every catalogue.

Features, in this order: the cross-encoder logit, the bi-encoder cosine of the two embedded
texts, the pair signals (identifier / model-number agreement, brand agreement, price ratio,
token coverage; ``models.pair_signals``) and, when the head was fitted with it, the margin of a
candidate's logit over the best *other* candidate of the same offer plus a flag for a lone
candidate. The head standardises the features with the fitting set's weighted mean and
deviation and applies ``sigmoid(coef . z + intercept)``: a probability calibrated on the pooled
validation set it was fitted on, compared with the thresholds stored beside it.

JSON only (``head.json``); numpy, no torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

HEAD_FILE = "head.json"
HEAD_FORMAT = 1
BASE_FEATURES: tuple[str, ...] = ("logit", "cosine")
MARGIN_FEATURES: tuple[str, ...] = ("margin", "single_candidate")
# A margin beyond this many logits says no more than the cap itself; clipping keeps one extreme
# candidate list from dominating the standardisation.
MARGIN_CLIP = 10.0

#: ``signals(left product, right product) -> feature values`` in the order of its names.
SignalFn = Callable[[Mapping[str, Any], Mapping[str, Any]], Sequence[float]]


#: The signal sets :func:`signal_set` builds in (what ``--signals`` offers).
SIGNAL_SETS: tuple[str, ...] = ("none", "pair_signals", "pair_signals_v2", "pair_signals_v3")


def signal_set(name: str) -> tuple[SignalFn | None, tuple[str, ...]]:
    """The pair-signal function and feature names a head JSON refers to by ``name``.

    ``"none"``: no signals. ``"pair_signals"``: :mod:`models.pair_signals` (imported here, so a
    checkout without it fails only when such a head is loaded); ``"pair_signals_v2"``: the same
    and the titles' quantity agreement (:data:`models.pair_signals.FEATURE_NAMES_V2`);
    ``"pair_signals_v3"``: those and the titles' colour agreement (``FEATURE_NAMES_V3``). Any other
    name is a function the caller passes itself (tests, experiments).
    """
    if name == "none":
        return None, ()
    if name in SIGNAL_SETS:
        from models.pair_signals import FEATURE_NAMES, FEATURE_NAMES_V2, FEATURE_NAMES_V3, PairSignals, pair_signals

        features, names = {
            "pair_signals": (PairSignals.as_features, FEATURE_NAMES),
            "pair_signals_v2": (PairSignals.as_features_v2, FEATURE_NAMES_V2),
            "pair_signals_v3": (PairSignals.as_features_v3, FEATURE_NAMES_V3),
        }[name]

        def signals(left: Mapping[str, Any], right: Mapping[str, Any]) -> Sequence[float]:
            return features(pair_signals(left, right))

        return signals, tuple(names)
    raise KeyError(f"pair-signal set {name!r} is not built in; pass its function explicitly")


def signal_rows(
    signals: SignalFn | None, lefts: Sequence[Mapping[str, Any]], rights: Sequence[Mapping[str, Any]], width: int
) -> np.ndarray:
    """``(n, width)`` signal values of the pairs (``width`` 0 without signals)."""
    if signals is None or width == 0 or not lefts:
        return np.zeros((len(lefts), 0 if signals is None else width), dtype=np.float64)
    rows = np.asarray([list(signals(a, b)) for a, b in zip(lefts, rights, strict=True)], dtype=np.float64)
    if rows.shape != (len(lefts), width):
        raise ValueError(f"pair signals gave shape {rows.shape}, expected {(len(lefts), width)}")
    return np.nan_to_num(rows, nan=0.0, posinf=0.0, neginf=0.0)


def candidate_margins(logits: np.ndarray, groups: Sequence[Hashable] | None = None) -> np.ndarray:
    """``(n, 2)``: each logit minus the best other logit of its group (clipped), and 1.0 for a
    candidate alone in its group (margin 0). ``groups=None``: all logits are one offer's list."""
    z = np.asarray(logits, dtype=np.float64)
    keys: Sequence[Hashable] = groups if groups is not None else [0] * z.size
    out = np.zeros((z.size, 2), dtype=np.float64)
    members: dict[Hashable, list[int]] = {}
    for i, key in enumerate(keys):
        members.setdefault(key, []).append(i)
    for idx in members.values():
        if len(idx) == 1:
            out[idx[0]] = (0.0, 1.0)
            continue
        values = z[idx]
        order = np.argsort(-values, kind="stable")
        best, second = values[order[0]], values[order[1]]
        top = int(order[0])
        for pos, i in enumerate(idx):
            other = second if pos == top else best
            out[i, 0] = float(np.clip(values[pos] - other, -MARGIN_CLIP, MARGIN_CLIP))
    return out


def feature_matrix(
    logits: np.ndarray, cosines: np.ndarray, signals: np.ndarray, margins: np.ndarray | None
) -> np.ndarray:
    """The head's input rows: logit, cosine, signals (, margin, lone-candidate flag)."""
    cols = [np.asarray(logits, dtype=np.float64)[:, None], np.asarray(cosines, dtype=np.float64)[:, None], signals]
    if margins is not None:
        cols.append(margins)
    return np.concatenate(cols, axis=1)


def _cut_table(raw: Any) -> dict[str, float | None]:
    return {str(k): (None if v is None else float(v)) for k, v in dict(raw or {}).items()}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60.0, 60.0)))


@dataclass
class MatchHead:
    """A fitted logistic head and the thresholds chosen on its cross-fitted validation scores."""

    feature_names: tuple[str, ...]
    signals: str
    margin: bool
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    threshold: float = 0.5
    thresholds_for_precision: dict[str, float | None] = field(default_factory=dict)
    bi_encoder: str = "minilm"
    bi_encoder_max_length: int = 64
    valid: dict[str, Any] = field(default_factory=dict)
    # Cuts on the *top candidate* of ranked candidate lists (what the service decides on), chosen
    # on leave-one-source-out probabilities; empty for a head fitted before ranked lists existed.
    top1_threshold: float | None = None
    top1_thresholds_for_precision: dict[str, float | None] = field(default_factory=dict)

    @property
    def n_signals(self) -> int:
        return len(self.feature_names) - len(BASE_FEATURES) - (len(MARGIN_FEATURES) if self.margin else 0)

    def decision(self, features: np.ndarray) -> np.ndarray:
        """Logits of the head (before the sigmoid), one per row."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.feature_names):
            raise ValueError(f"head expects {len(self.feature_names)} features, got shape {x.shape}")
        return ((x - self.mean) / self.scale) @ self.coef + self.intercept

    def apply(self, features: np.ndarray) -> np.ndarray:
        """Calibrated match probabilities, float64 (n,)."""
        return _sigmoid(self.decision(features))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": HEAD_FORMAT,
            "kind": "logistic",
            "feature_names": list(self.feature_names),
            "signals": self.signals,
            "margin": self.margin,
            "mean": [float(v) for v in self.mean],
            "scale": [float(v) for v in self.scale],
            "coef": [float(v) for v in self.coef],
            "intercept": float(self.intercept),
            "threshold": float(self.threshold),
            "thresholds_for_precision": dict(self.thresholds_for_precision),
            "bi_encoder": self.bi_encoder,
            "bi_encoder_max_length": int(self.bi_encoder_max_length),
            "valid": self.valid,
            "top1_threshold": None if self.top1_threshold is None else float(self.top1_threshold),
            "top1_thresholds_for_precision": dict(self.top1_thresholds_for_precision),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MatchHead:
        if data.get("format") != HEAD_FORMAT or data.get("kind") != "logistic":
            raise ValueError(f"unsupported head: format {data.get('format')!r}, kind {data.get('kind')!r}")
        names = tuple(str(n) for n in data["feature_names"])
        arrays = {k: np.asarray(data[k], dtype=np.float64) for k in ("mean", "scale", "coef")}
        if any(a.shape != (len(names),) for a in arrays.values()):
            raise ValueError("head: mean, scale and coef must have one value per feature")
        if not all(math.isfinite(float(v)) for a in arrays.values() for v in a) or (arrays["scale"] <= 0).any():
            raise ValueError("head: non-finite weights or non-positive scales")
        return cls(
            feature_names=names,
            signals=str(data["signals"]),
            margin=bool(data["margin"]),
            mean=arrays["mean"],
            scale=arrays["scale"],
            coef=arrays["coef"],
            intercept=float(data["intercept"]),
            threshold=float(data["threshold"]),
            thresholds_for_precision=_cut_table(data.get("thresholds_for_precision")),
            bi_encoder=str(data.get("bi_encoder", "minilm")),
            bi_encoder_max_length=int(data.get("bi_encoder_max_length", 64)),
            valid=dict(data.get("valid") or {}),
            top1_threshold=None if data.get("top1_threshold") is None else float(data["top1_threshold"]),
            top1_thresholds_for_precision=_cut_table(data.get("top1_thresholds_for_precision")),
        )


__all__ = [
    "BASE_FEATURES",
    "HEAD_FILE",
    "HEAD_FORMAT",
    "MARGIN_FEATURES",
    "MatchHead",
    "SignalFn",
    "candidate_margins",
    "feature_matrix",
    "signal_rows",
    "signal_set",
]
