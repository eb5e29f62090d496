"""Soft pseudo-labels on unlabelled pairs for the matcher (METHODS §8.1, §8.2).

The unlabelled pool (§8.1) is the blocker's top-k right records of every left record, minus
every pair that is labelled in any split (in DeepMatcher data unlisted pairs are unlabelled,
not negatives), and by default minus every record that occurs in a validation or test pair, so
that benchmark numbers stay inductive (``transductive=True`` keeps them).

Training with them (§8.2, Arazo et al. 2020), driven by :func:`training.train_matcher.train_matcher`:

1. warm-up on labelled pairs only (``warmup_epochs``, 2 for our cross-encoder);
2. before every later epoch, one eval-mode pass gives each unlabelled pair a **soft** label,
   the model's match probability, stored and reused for that epoch;
3. batches mix labelled and pseudo-labelled pairs with at least ``min_labelled_share`` labelled
   pairs per batch (the spec's minimum is 16 %; our default 50 % is more conservative), soft
   BCE targets, plus ``0.8 L_prior + 0.4 L_ent`` (prior = the labelled match rate).

The spec has no confidence threshold (soft labels, mixup and the labelled quota fight
confirmation bias); ``min_confidence`` optionally drops unlabelled pairs whose soft label is
within ``min_confidence`` of a coin flip [ours]. Mixup is not applied (the cross-encoder has no
pooled-feature mixing hook yet); neither is SWA.

The matcher's logits carry the ``log(pos_weight)`` shift of its class-balanced BCE, so soft
labels are ``sigmoid(logit - log(pos_weight))``: training towards them with the same balanced BCE
then has the current logit as its optimum instead of drifting towards "match" every epoch.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from models.product_text import FieldSpec, serialize
from training.data.records import Pair, PairDataset, Record
from training.length_grouping import length_grouped_order

if TYPE_CHECKING:
    from models.bi_encoder import BiEncoder

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PseudoLabelConfig:
    """Settings of pseudo-label training; recorded in the model manifest.

    ``warmup_epochs``: labelled-only epochs first (clipped to ``epochs - 1`` by the trainer).
    ``min_labelled_share``: lower bound of the labelled share of every batch.
    ``min_confidence``: keep unlabelled pairs with ``|p - 0.5| * 2 >= min_confidence`` (0 keeps all).
    ``weight``: loss weight of a pseudo-labelled pair relative to a labelled one.
    ``max_unlabelled``: seeded subsample of the pool (None keeps all).
    """

    warmup_epochs: int = 2
    min_labelled_share: float = 0.5
    min_confidence: float = 0.0
    prior_weight: float = 0.8
    entropy_weight: float = 0.4
    weight: float = 1.0
    max_unlabelled: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.min_labelled_share <= 1.0:
            raise ValueError(f"min_labelled_share must be in (0, 1], got {self.min_labelled_share}")
        if not 0.0 <= self.min_confidence < 1.0:
            raise ValueError(f"min_confidence must be in [0, 1), got {self.min_confidence}")
        if self.warmup_epochs < 0:
            raise ValueError("warmup_epochs must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def build(cls, value: PseudoLabelConfig | dict[str, Any] | bool | None) -> PseudoLabelConfig | None:
        """``None``/``False`` = off, ``True`` = defaults, a dict = overrides, a config as is."""
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        if isinstance(value, PseudoLabelConfig):
            return value
        return cls(**value)


# --------------------------------------------------------------------------------------------
# batches
# --------------------------------------------------------------------------------------------


def labelled_per_batch(n_labelled: int, n_unlabelled: int, batch_size: int, min_labelled_share: float) -> int:
    """Labelled pairs per full batch: the pool's natural share, but at least the minimum share."""
    if n_unlabelled == 0:
        return batch_size
    natural = n_labelled / (n_labelled + n_unlabelled)
    return min(batch_size, max(1, math.ceil(max(natural, min_labelled_share) * batch_size)))


def plan_batches(
    n_labelled: int,
    n_unlabelled: int,
    batch_size: int,
    min_labelled_share: float,
    rng: np.random.Generator,
    lengths: Sequence[int] | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(labelled indices, unlabelled indices), ...]`` covering every labelled pair once.

    The labelled order is ``rng.permutation(n_labelled)``, or with ``lengths`` (one token
    length per labelled pair) :func:`~training.length_grouping.length_grouped_order`, so each
    batch's labelled pairs have similar lengths. Unlabelled pairs are drawn from successive permutations of the pool,
    so each is used about equally often. Every batch, the last included, keeps
    ``labelled / size >= min_labelled_share``.
    """
    if n_labelled < 1 or batch_size < 1:
        raise ValueError("plan_batches needs at least one labelled pair and batch_size >= 1")
    per_batch = labelled_per_batch(n_labelled, n_unlabelled, batch_size, min_labelled_share)
    if lengths is None:
        order = rng.permutation(n_labelled)
    else:
        if len(lengths) != n_labelled:
            raise ValueError(f"{len(lengths)} lengths for {n_labelled} labelled pairs")
        order = length_grouped_order(lengths, per_batch, rng)
    share = per_batch / batch_size
    stream: list[int] = []
    plan: list[tuple[np.ndarray, np.ndarray]] = []
    for start in range(0, n_labelled, per_batch):
        lab = order[start : start + per_batch]
        # Unlabelled fill: batch_size - per_batch for a full batch, fewer for a short last one.
        n_u = 0
        if n_unlabelled:
            n_u = batch_size - per_batch if len(lab) == per_batch else math.floor(len(lab) * (1 - share) / share)
        while len(stream) < n_u:
            stream.extend(int(i) for i in rng.permutation(n_unlabelled))
        unl = np.asarray(stream[:n_u], dtype=np.int64)
        del stream[:n_u]
        plan.append((lab, unl))
    return plan


# --------------------------------------------------------------------------------------------
# soft labels and the extra loss terms
# --------------------------------------------------------------------------------------------


def soft_pseudo_labels(logits: np.ndarray, logit_offset: float = 0.0) -> np.ndarray:
    """Match probability of each unlabelled pair, with the ``pos_weight`` shift removed."""
    z = np.asarray(logits, dtype=np.float64) - logit_offset
    return 1.0 / (1.0 + np.exp(-z))


def confident_mask(soft: np.ndarray, min_confidence: float) -> np.ndarray:
    """Pairs whose soft label is at least ``min_confidence`` away from 0.5 (scaled to [0, 1])."""
    return np.abs(np.asarray(soft) - 0.5) * 2.0 >= min_confidence


def entropy_penalty(logits: torch.Tensor, logit_offset: float = 0.0) -> torch.Tensor:
    """Mean binary entropy of the (offset-corrected) predictions: ``-(1/B) Σ_i Σ_c p_ic log p_ic``."""
    p = torch.sigmoid(logits - logit_offset).clamp(1e-6, 1.0 - 1e-6)
    return -(p * torch.log(p) + (1.0 - p) * torch.log(1.0 - p)).mean()


# --------------------------------------------------------------------------------------------
# the unlabelled pool
# --------------------------------------------------------------------------------------------


def _key(left: Record, right: Record) -> tuple[str, str]:
    return (left.id, right.id)


def unlabelled_candidates(
    dataset: PairDataset,
    *,
    k: int = 10,
    encoder: BiEncoder | None = None,
    fields: Sequence[str] | None = None,
    transductive: bool = False,
    max_pairs: int | None = None,
    seed: int = 0,
    batch_size: int = 64,
) -> list[tuple[Record, Record]]:
    """Blocking candidates of the dataset's tables that no split labels (METHODS §8.1).

    ``encoder``: the blocker (default: the packaged zero-shot MiniLM, §9.5); ``fields``: its
    text fields (default: the §9.5 fields of the dataset, e.g. Abt-Buy ``name description``).
    Returns ``[]`` for a dataset without left/right tables (Ditto, WDC Products). Order: by
    left record (table order), then rank; ``max_pairs`` keeps a seeded subsample in that order.
    """
    from training.blocking_tasks import default_fields, record_text
    from training.evaluate import search_topk

    if not dataset.left_table or not dataset.right_table:
        logger.warning("dataset %s has no left/right tables: no unlabelled pool", dataset.name)
        return []
    if encoder is None:
        from models.bi_encoder import BiEncoder

        encoder = BiEncoder.from_pretrained("minilm")
    use_fields = list(fields) if fields else default_fields(dataset)
    labelled: set[tuple[str, str]] = set()
    eval_left: set[str] = set()
    eval_right: set[str] = set()
    for name, pairs in dataset.splits.items():
        for p in pairs:
            labelled.add(_key(p.left, p.right))
            if name != "train":
                eval_left.add(p.left.id)
                eval_right.add(p.right.id)
    lefts = [r for r in dataset.left_table.values() if transductive or r.id not in eval_left]
    rights = [r for r in dataset.right_table.values() if transductive or r.id not in eval_right]
    if not lefts or not rights:
        return []
    query = encoder.encode([record_text(r, use_fields) for r in lefts], batch_size=batch_size)
    corpus = encoder.encode([record_text(r, use_fields) for r in rights], batch_size=batch_size)
    ranked = search_topk(query, corpus, k)
    out: list[tuple[Record, Record]] = []
    for qi, row in enumerate(ranked):
        for ci in row:
            if ci < 0:
                continue
            left, right = lefts[qi], rights[int(ci)]
            if _key(left, right) not in labelled:
                out.append((left, right))
    total = len(out)
    if max_pairs is not None and total > max_pairs:
        keep = sorted(np.random.default_rng(seed).choice(total, max_pairs, replace=False).tolist())
        out = [out[i] for i in keep]
    logger.info(
        "unlabelled pool of %s: %d pairs (top-%d of %d left vs %d right records, %s), kept %d",
        dataset.name,
        total,
        k,
        len(lefts),
        len(rights),
        "transductive" if transductive else "validation/test records excluded",
        len(out),
    )
    return out


def serialize_unlabelled(
    pairs: Sequence[tuple[Record, Record]] | Sequence[Pair], fields: FieldSpec
) -> list[tuple[str, str]]:
    """Text pairs for :func:`train_matcher`'s ``unlabelled_pairs``, serialised like training pairs."""
    out: list[tuple[str, str]] = []
    for p in pairs:
        left, right = (p.left, p.right) if isinstance(p, Pair) else p
        out.append((serialize(left, fields), serialize(right, fields)))
    return out


__all__ = [
    "PseudoLabelConfig",
    "confident_mask",
    "entropy_penalty",
    "labelled_per_batch",
    "plan_batches",
    "serialize_unlabelled",
    "soft_pseudo_labels",
    "unlabelled_candidates",
]
