"""Multiple negatives ranking loss (in-batch negatives InfoNCE) over (anchor, positive) rows.

The usual bi-encoder baseline to compare Block-SCL against (METHODS §3.5): every row's
positive is a negative for every other row's anchor, so two rows of one product must not share
a batch, or their positives are pushed apart. The sampler takes care of that
(:class:`training.samplers.NoDuplicateProductPairSampler`); the optional ``labels`` argument
masks such pairs here too, as a second line of defence.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

logger = logging.getLogger(__name__)


class MultipleNegativesRankingLoss(nn.Module):
    """Cross-entropy over scaled cosine similarities, with the other rows as negatives.

    For rows ``(a_i, p_i)``: ``S[i, j] = scale * cos(a_i, p_j)`` and the loss is
    ``CE(S[i], i)`` averaged over rows, i.e. ``-log softmax_j(S[i, j])`` at ``j = i``.

    Args:
        scale: inverse temperature on the cosine (20 = tau 0.05, the sentence-transformers
            default). Higher values focus on the hardest in-batch negatives.

    References:
        - Henderson et al., *Efficient Natural Language Response Suggestion for Smart Reply*,
          arXiv 1705.00652.
        - van den Oord et al., *Representation Learning with Contrastive Predictive Coding*
          (InfoNCE), arXiv 1807.03748.

    Requirements:
        1. Rows of (anchor, positive) texts of the same product.
        2. At most one row per product id per batch (METHODS §3.5), or ``labels`` given.

    Inputs:
        +-----------------------------+-----------------------------+------------------------------+
        | anchors                     | positives                   | labels (optional)            |
        +=============================+=============================+==============================+
        | (B, D) float                | (B, D) float                | (B,) int product id per row  |
        +-----------------------------+-----------------------------+------------------------------+

        With ``labels``, off-diagonal entries whose rows share a product id are removed from the
        softmax: a duplicate of the anchor's product is never scored as a negative.

    Recommendations:
        - Large batches: every row adds one negative to every other row.
        - Use :class:`training.samplers.NoDuplicateProductPairSampler`; sentence-transformers'
          no-duplicates sampler only de-duplicates identical texts, not product ids.

    Relations:
        - :class:`models.losses.SupConLoss` generalises it to any number of offers per product
          in the batch, using labels instead of row pairing.

    Example:
        ::

            from models.losses import MultipleNegativesRankingLoss

            loss_fn = MultipleNegativesRankingLoss(scale=20.0)
            za = model(**model.tokenize(left_texts))     # (B, D)
            zp = model(**model.tokenize(right_texts))    # (B, D), row i matches row i
            loss = loss_fn(za, zp, labels=torch.tensor(product_ids))
            loss.backward()
    """

    def __init__(self, scale: float = 20.0) -> None:
        super().__init__()
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.scale = float(scale)

    def forward(
        self,
        anchors: torch.Tensor,
        positives: torch.Tensor,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if anchors.shape != positives.shape or anchors.dim() != 2:
            raise ValueError(
                f"anchors and positives must both be (B, D), got {tuple(anchors.shape)} and {tuple(positives.shape)}"
            )
        a = nn.functional.normalize(anchors, p=2, dim=-1)
        p = nn.functional.normalize(positives, p=2, dim=-1)
        scores = self.scale * (a @ p.T)
        n = scores.shape[0]
        target = torch.arange(n, device=scores.device)
        if labels is not None:
            labels = labels.reshape(-1).to(scores.device)
            if labels.shape[0] != n:
                raise ValueError(f"{labels.shape[0]} labels for {n} rows")
            duplicate = (labels[:, None] == labels[None, :]) & ~torch.eye(n, dtype=torch.bool, device=scores.device)
            scores = scores.masked_fill(duplicate, float("-inf"))
        return nn.functional.cross_entropy(scores, target)

    def extra_repr(self) -> str:
        return f"scale={self.scale}"
