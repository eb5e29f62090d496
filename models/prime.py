"""PRIME label prototype network (METHODS §4.3) and the ALC pair head (§6.4).

A seen label ``r`` is the L2-normalised mean of one transformer encoder layer over three
vectors: its text embedding ``u_r``, a free vector ``v_c(r)`` shared by the labels of one
balanced k-means cluster, and its prototype ``z_r`` (centroid of its training queries). Unseen
labels have no prototype and are served by ``u_r`` alone.

Pure torch / numpy: nothing here imports the web app or the training package.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn

from models.construction import builds_models

logger = logging.getLogger(__name__)


def balanced_kmeans(vectors: np.ndarray, leaf_size: int, seed: int = 0, iters: int = 8) -> np.ndarray:
    """Cluster ids from recursive balanced 2-means (cosine), leaves of at most ``leaf_size`` rows.

    Each split ranks points on ``cos(x, mu_1) - cos(x, mu_2)`` and cuts at the median, so the
    two halves differ in size by at most one (METHODS §4.3).
    """
    n = len(vectors)
    out = np.zeros(n, dtype=np.int64)
    if n == 0:
        return out
    x = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    rng = np.random.default_rng(seed)
    stack: list[np.ndarray] = [np.arange(n)]
    next_id = 0
    while stack:
        idx = stack.pop()
        if len(idx) <= max(1, leaf_size):
            out[idx] = next_id
            next_id += 1
            continue
        pts = x[idx]
        a, b = rng.choice(len(idx), size=2, replace=False)
        mu = np.stack([pts[a], pts[b]])
        half = len(idx) // 2
        order = np.arange(len(idx))
        for _ in range(iters):
            diff = pts @ mu[0] - pts @ mu[1]
            order = np.argsort(-diff, kind="stable")
            first, second = order[:half], order[half:]
            new = np.stack([pts[first].mean(0), pts[second].mean(0)])
            new /= np.maximum(np.linalg.norm(new, axis=1, keepdims=True), 1e-12)
            if np.allclose(new, mu):
                break
            mu = new
        stack.append(idx[order[half:]])
        stack.append(idx[order[:half]])
    return out


class LabelPrototypeNetwork(nn.Module):
    """``l_r = norm(mean(TEL([u_r, v_c(r), z_r])))`` with a bank of free vectors."""

    @builds_models
    def __init__(self, dim: int, n_free: int, nhead: int = 8, dim_feedforward: int = 1024, dropout: float = 0.1):
        super().__init__()
        self.dim = dim
        self.free = nn.Parameter(torch.empty(max(1, n_free), dim))
        nn.init.xavier_uniform_(self.free)
        self.layer = nn.TransformerEncoderLayer(
            d_model=dim,
            nhead=nhead,
            dim_feedforward=dim_feedforward,
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=False,
        )
        # Zero-init both residual branches: the layer starts as LayerNorm(x), so an untrained LPN
        # already returns roughly the mean of its three inputs. With the few hundred CPU steps we
        # can afford, a random attention / FF branch would otherwise scramble the prototypes.
        nn.init.zeros_(self.layer.self_attn.out_proj.weight)
        nn.init.zeros_(self.layer.self_attn.out_proj.bias)
        nn.init.zeros_(self.layer.linear2.weight)
        nn.init.zeros_(self.layer.linear2.bias)

    def init_free_from(self, text_vectors: torch.Tensor, assignment: torch.Tensor) -> None:
        """ViXML option: each free vector starts as the mean of its cluster's label-text embeddings."""
        with torch.no_grad():
            sums = torch.zeros_like(self.free)
            sums.index_add_(0, assignment, text_vectors.to(sums.dtype))
            counts = torch.bincount(assignment, minlength=self.free.shape[0]).clamp(min=1).unsqueeze(1)
            self.free.copy_(nn.functional.normalize(sums / counts, dim=-1))

    def forward(self, text: torch.Tensor, free_index: torch.Tensor, prototype: torch.Tensor) -> torch.Tensor:
        seq = torch.stack([text, self.free[free_index], prototype], dim=1)  # (n, 3, d)
        out = self.layer(seq)
        return nn.functional.normalize(out.mean(dim=1), dim=-1)


class PairHead(nn.Module):
    """ALC-style pair classifier: ``[q, l, |q - l|, q * l]`` -> MLP (hidden 2d, GELU) -> logit."""

    @builds_models
    def __init__(self, dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4 * dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, 1))

    def forward(self, query: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        feats = torch.cat([query, label, (query - label).abs(), query * label], dim=-1)
        return self.net(feats).squeeze(-1)
