"""Shared helpers for the vector index tests: seeded synthetic catalogues and recall measures.

They live here rather than in a conftest so that test modules import them explicitly.
"""

from __future__ import annotations

import faiss
import numpy as np

BRANDS = ("Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne")
CATEGORIES = ("phones", "laptops", "audio", "cameras", "tv")


def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, so inner product is cosine similarity."""
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clustered(n: int, dim: int = 32, n_clusters: int = 40, spread: float = 0.35, seed: int = 0) -> np.ndarray:
    """Gaussian-mixture unit vectors: closer to product embeddings than uniform noise."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, dim))
    members = rng.integers(0, n_clusters, size=n)
    return unit(centres[members] + spread * rng.standard_normal((n, dim)))


def catalogue(
    n: int, dim: int = 32, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, list[str | None], list[str | None]]:
    """Product ids (sparse, not 0..n-1), vectors, brands and categories (some missing)."""
    ids = np.arange(n, dtype=np.int64) * 7 + 1000
    vectors = clustered(n, dim, seed=seed)
    brands: list[str | None] = [BRANDS[i % len(BRANDS)] for i in range(n)]
    categories: list[str | None] = [CATEGORIES[(i // 3) % len(CATEGORIES)] for i in range(n)]
    for i in range(0, n, 17):
        brands[i] = None
    return ids, vectors, brands, categories


def queries_near(vectors: np.ndarray, nq: int, noise: float = 0.2, seed: int = 1) -> np.ndarray:
    """Queries that look like new listings of catalogue products: perturbed catalogue vectors."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(vectors), size=nq, replace=False)
    dim = vectors.shape[1]
    return unit(vectors[rows] + noise * rng.standard_normal((nq, dim)) / np.sqrt(dim))


def exact_topk(vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth from a plain IndexFlatIP (as faiss contrib tests do), mapped to product ids."""
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    scores, rows = flat.search(queries, k)
    return scores, ids[rows]


def knn_intersection_measure(found: list[list[int]], truth: np.ndarray) -> float:
    """Share of the exact top-k that the approximate top-k also returned (faiss contrib's measure)."""
    hits = sum(len(set(row) & set(t.tolist())) for row, t in zip(found, truth, strict=True))
    return hits / truth.size
