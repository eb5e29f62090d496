"""Supervised contrastive loss (SupCon) over product-labelled embeddings (METHODS §3.2, §3.5).

Block-SCL trains the blocker with SupCon: every offer of the same product in a batch is a
positive of every other, every other item a negative. This module holds the loss and the
helper that builds the §3.5 "likely unknown duplicate" mask.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

logger = logging.getLogger(__name__)

#: Cosine above which two items with different labels are treated as likely duplicates (§3.5).
DEFAULT_DUPLICATE_THRESHOLD = 0.95


class SupConLoss(nn.Module):
    """Supervised contrastive loss of Khosla et al. (2020) with integer product labels.

    For a batch of L2-normalised embeddings ``z`` with labels ``y``::

        L = 1/|I| sum_{i in I} -1/|P(i)| sum_{p in P(i)} log(exp(z_i.z_p/tau) / sum_{a!=i} exp(z_i.z_a/tau))
        P(i) = {p != i : y_p = y_i},   I = {i : |P(i)| > 0}

    Anchors without a positive in the batch are excluded (they would only contribute a
    constant-free push-away term and distort the mean). Every item with the same label is a
    positive, so several offers of one product never act as negatives of each other, which is
    the point of sampling ``P > 1`` offers per product.

    Args:
        temperature: ``tau``; 0.07 as in R-SupCon (METHODS §3.3). Lower values sharpen the
            softmax and weight the hardest negatives more.

    References:
        - Khosla et al., *Supervised Contrastive Learning*, NeurIPS 2020, arXiv 2004.11362.
        - Peeters & Bizer, *Supervised Contrastive Learning for Product Matching*, arXiv 2202.02098.
        - Almagro et al., *Block-SCL*, SIGIR eCom 2022, arXiv 2207.02008 (blocking-enriched batches).

    Requirements:
        1. Integer product labels: items of one product share a label.
        2. Batches holding at least two items of some product (see
           :class:`training.samplers.BlockingEnrichedBatchSampler`); otherwise the loss is 0.

    Inputs:
        +-------------------------------------+--------------------------+--------------------------+
        | embeddings                          | labels                   | ignore_mask (optional)   |
        +=====================================+==========================+==========================+
        | (B, D) float, L2-normalised         | (B,) int product ids     | (B, B) bool, True = drop |
        |                                     |                          | from the denominator     |
        +-------------------------------------+--------------------------+--------------------------+

        Embeddings are normalised again inside (a no-op on unit vectors), so cosine = inner
        product. ``ignore_mask`` removes *non-positive* pairs from the denominator: use it for
        the §3.5 mitigation (cosine > 0.95 and not a known non-match, see
        :func:`likely_duplicate_mask`). Positive pairs are never dropped.

    Recommendations:
        - Use blocking-enriched batches: K products x P offers plus the top-M blocker
          candidates of other products as hard negatives (METHODS §3.4).
        - Prefer labelled non-matches as hard negatives: unlabelled blocker candidates may be
          missed matches and SupCon would push them apart.

    Relations:
        - :class:`models.losses.MultipleNegativesRankingLoss` is the pairwise special case
          (one positive per anchor, the other rows' positives as negatives) and needs a
          no-duplicate-product sampler instead of labels.

    Example:
        ::

            from models.losses import SupConLoss

            loss_fn = SupConLoss(temperature=0.07)
            z = model(**model.tokenize(texts))          # (B, D), unit vectors
            labels = torch.tensor(product_ids)           # (B,)
            loss = loss_fn(z, labels)
            loss.backward()
    """

    def __init__(self, temperature: float = 0.07) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        ignore_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if embeddings.dim() != 2:
            raise ValueError(f"embeddings must be (B, D), got {tuple(embeddings.shape)}")
        n = embeddings.shape[0]
        labels = labels.reshape(-1).to(embeddings.device)
        if labels.shape[0] != n:
            raise ValueError(f"{labels.shape[0]} labels for {n} embeddings")
        z = nn.functional.normalize(embeddings, p=2, dim=-1)
        logits = z @ z.T / self.temperature

        eye = torch.eye(n, dtype=torch.bool, device=z.device)
        positive = (labels[:, None] == labels[None, :]) & ~eye
        in_denominator = ~eye
        if ignore_mask is not None:
            if ignore_mask.shape != (n, n):
                raise ValueError(f"ignore_mask must be ({n}, {n}), got {tuple(ignore_mask.shape)}")
            in_denominator = in_denominator & ~(ignore_mask.to(z.device).bool() & ~positive)

        anchors = positive.any(dim=1)
        if not bool(anchors.any()):
            # No positives: a zero that still belongs to the graph, so backward() works.
            return embeddings.sum() * 0.0
        log_denominator = torch.logsumexp(logits.masked_fill(~in_denominator, float("-inf")), dim=1)
        log_prob = logits - log_denominator[:, None]
        # masked_fill, not multiplication: log_prob may be -inf off the positives.
        mean_log_prob_pos = log_prob.masked_fill(~positive, 0.0).sum(dim=1) / positive.sum(dim=1).clamp(min=1)
        return -mean_log_prob_pos[anchors].mean()

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


@torch.no_grad()
def likely_duplicate_mask(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    known_non_match: torch.Tensor | None = None,
    threshold: float = DEFAULT_DUPLICATE_THRESHOLD,
) -> torch.Tensor:
    """Pairs that are probably the same product under different labels (METHODS §3.5).

    True where ``cos > threshold``, the labels differ and the pair is not a labelled non-match.
    Pass the result as ``ignore_mask`` to :class:`SupConLoss`: such pairs are neither pulled
    together nor pushed apart. Computed without gradient: it is a sampling decision.
    """
    z = nn.functional.normalize(embeddings.detach(), p=2, dim=-1)
    labels = labels.reshape(-1).to(z.device)
    mask = (z @ z.T > threshold) & (labels[:, None] != labels[None, :])
    if known_non_match is not None:
        mask &= ~known_non_match.to(z.device).bool()
    return mask
