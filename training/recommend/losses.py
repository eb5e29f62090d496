"""Recommender losses: PRIME's dynamic-margin triplet (§4.4), its regulariser (§4.5), the
threshold-consistent margin loss (§6.2) and the ALC-style auxiliary objectives (§6.4).

``S`` is a (queries x labels) cosine matrix, ``Y`` a bool matrix of the same shape marking
every positive (so in-batch false negatives are never pushed away) and ``pos`` the column of
each row's sampled positive.
"""

from __future__ import annotations

import torch
from torch import nn


def sample_positive(y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One random positive column per row of ``y`` (rows must have at least one)."""
    if not bool(y.any(dim=1).all()):
        raise ValueError("every row needs a positive")
    return torch.multinomial(y.float(), 1, generator=generator).squeeze(1)


def hardest_negatives(s: torch.Tensor, y: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Values, columns and validity of the ``k`` highest-scoring negatives of each row."""
    k = max(1, min(k, s.shape[1]))
    masked = s.masked_fill(y, float("-inf"))
    values, cols = masked.topk(k, dim=1)
    return values, cols, torch.isfinite(values)


def dynamic_margin_triplet(
    s: torch.Tensor,
    y: torch.Tensor,
    pos: torch.Tensor,
    k: int = 100,
    m_min: float = 0.1,
    m_max: float = 0.3,
    tau: float = 0.1,
) -> torch.Tensor:
    """Mean over rows of the softmax-weighted hinge on the ``k`` hardest negatives.

    ``m = clamp(|s_p - s_n|, m_min, m_max)`` is detached; the softmax weights over violators are
    kept attached (as in the authors' code). ``m_min == m_max`` is NGAME's fixed margin.
    """
    s_p = s.gather(1, pos[:, None])
    s_n, _, valid = hardest_negatives(s, y, k)
    s_n = torch.where(valid, s_n, torch.zeros_like(s_n))
    margin = (s_p - s_n).abs().clamp(m_min, m_max).detach()
    hinge = torch.relu(s_n - s_p + margin)
    active = (hinge > 0) & valid
    logits = (s_n / tau).masked_fill(~active, float("-inf"))
    any_active = active.any(dim=1, keepdim=True)
    weights = torch.softmax(torch.where(any_active, logits, torch.zeros_like(logits)), dim=1)
    weights = torch.where(active, weights, torch.zeros_like(weights))
    return (weights * hinge).sum(dim=1).mean()


def _avg_positive(values: torch.Tensor) -> torch.Tensor:
    # "avg_{>0}": sum of the non-zero terms over their count, 0 when none.
    count = (values > 0).sum()
    return values.sum() / count.clamp(min=1)


def prototype_regulariser(
    s_final: torch.Tensor, s_text: torch.Tensor, y: torch.Tensor, pos: torch.Tensor, k: int = 10, margin: float = 0.1
) -> torch.Tensor:
    """Positives must score higher, negatives lower, in prototype space than in text space."""
    p_final = s_final.gather(1, pos[:, None])
    p_text = s_text.gather(1, pos[:, None])
    _, cols, valid = hardest_negatives(s_final.detach(), y, k)
    n_final = s_final.gather(1, cols)
    n_text = s_text.gather(1, cols)
    pos_term = torch.relu(p_text - p_final + margin)
    neg_term = torch.relu(n_final - n_text + margin) * valid
    return 0.5 * (_avg_positive(pos_term) + _avg_positive(neg_term))


def threshold_consistent_margin(
    s: torch.Tensor,
    y: torch.Tensor,
    pos: torch.Tensor,
    m_pos: float = 0.9,
    m_neg: float = 0.5,
    lambda_pos: float = 1.0,
    lambda_neg: float = 1.0,
) -> torch.Tensor:
    """TCM: pull sampled positives above ``m_pos``, push every in-batch negative below ``m_neg``."""
    s_p = s.gather(1, pos[:, None]).squeeze(1)
    pos_viol = torch.relu(m_pos - s_p)
    neg_viol = torch.relu(s - m_neg).masked_fill(y, 0.0)
    pos_count = (s_p <= m_pos).sum().clamp(min=1)
    neg_count = ((s >= m_neg) & ~y).sum().clamp(min=1)
    return lambda_pos * pos_viol.sum() / pos_count + lambda_neg * neg_viol.sum() / neg_count


def hard_set_softmax(
    s: torch.Tensor, y: torch.Tensor, pos: torch.Tensor, h: int = 10, tau: float = 0.05
) -> torch.Tensor:
    """Cross-entropy of the positive against its ``h`` hardest in-batch negatives at temperature ``tau``."""
    s_p = s.gather(1, pos[:, None])
    s_n, _, valid = hardest_negatives(s, y, h)
    logits = torch.cat([s_p, s_n.masked_fill(~valid, float("-inf"))], dim=1) / tau
    target = torch.zeros(len(s), dtype=torch.long, device=s.device)
    return nn.functional.cross_entropy(logits, target)


def pair_classifier_loss(
    head: nn.Module, queries: torch.Tensor, labels: torch.Tensor, s: torch.Tensor, y: torch.Tensor, pos: torch.Tensor
) -> torch.Tensor:
    """BCE of the pair head on (query, positive) -> 1 and (query, hardest in-batch negative) -> 0."""
    _, cols, valid = hardest_negatives(s.detach(), y, 1)
    keep = valid[:, 0]
    pos_logit = head(queries, labels[pos])
    neg_logit = head(queries[keep], labels[cols[keep, 0]])
    logits = torch.cat([pos_logit, neg_logit])
    target = torch.cat([torch.ones_like(pos_logit), torch.zeros_like(neg_logit)])
    return nn.functional.binary_cross_entropy_with_logits(logits, target)
