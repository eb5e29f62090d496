"""Contrastive losses for bi-encoder (blocker) training."""

from __future__ import annotations

from models.losses.multiple_negatives_ranking import MultipleNegativesRankingLoss
from models.losses.supcon import SupConLoss, likely_duplicate_mask

__all__ = ["MultipleNegativesRankingLoss", "SupConLoss", "likely_duplicate_mask"]
