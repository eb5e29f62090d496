"""R12: approximate kinds at their default parameters against exact IndexFlatIP (faiss contrib style).

The floors are per-PR guards on seeded synthetic data: a change to efSearch, nprobe, the refine
factor or the filter path that costs recall fails here before it reaches the nightly check on
real catalogue queries.
"""

from __future__ import annotations

from collections.abc import Iterator

import faiss
import numpy as np
import pytest

from app.search import IndexParams, VectorIndex
from tests.app.search import catalogue, exact_topk, knn_intersection_measure, queries_near

DIM = 32
N = 5000
NQ = 200
# Observed on this data: hnsw 1.0, ivfpq 0.994 (k=10) / 0.9965 (k=20); the floors leave a margin.
FLOORS = {"flat": 1.0, "hnsw": 0.97, "ivfpq": 0.97}
FILTERED_FLOOR = 0.95


@pytest.fixture(autouse=True, scope="module")
def _one_faiss_thread() -> Iterator[None]:
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


@pytest.fixture(scope="module")
def data() -> tuple:
    return catalogue(N, DIM, seed=21)


@pytest.fixture(scope="module")
def queries(data: tuple) -> np.ndarray:
    return queries_near(data[1], NQ, noise=0.3, seed=22)


@pytest.fixture(scope="module", params=list(FLOORS))
def built(request: pytest.FixtureRequest, data: tuple) -> VectorIndex:
    """Each kind at its default parameters, built through the public rebuild path."""
    index = VectorIndex(DIM, IndexParams(kind=request.param))
    index.rebuild(*data, version=1)
    assert index.stats()["backend"] == request.param  # ivfpq really trained, not the exact fallback
    return index


@pytest.mark.parametrize("k", [10, 20])
def test_recall_against_exact(built: VectorIndex, data: tuple, queries: np.ndarray, k: int) -> None:
    ids, vectors, _, _ = data
    _, truth = exact_topk(vectors, ids, queries, k)
    found = built.search(queries, k).ids
    recall = knn_intersection_measure(found, truth)
    assert recall >= FLOORS[built.params.kind], f"{built.params.kind} recall@{k} = {recall:.4f}"


@pytest.mark.parametrize("kind", ["hnsw", "ivfpq"])
def test_filtered_recall_on_the_ann_path(data: tuple, queries: np.ndarray, kind: str) -> None:
    """With the exact-subset shortcut off, brand filters (1/7 of products) must keep recall."""
    ids, vectors, brands, _ = data
    index = VectorIndex(DIM, IndexParams(kind=kind, filter_exact_max=0))
    index.rebuild(*data, version=1)
    for brand in ("acme", "hooli"):
        mask = np.array([(b or "").casefold() == brand for b in brands])
        _, truth = exact_topk(vectors[mask], ids[mask], queries, 10)
        found = index.search(queries, 10, brand=brand).ids
        recall = knn_intersection_measure(found, truth)
        assert recall >= FILTERED_FLOOR, f"{kind} recall@10 with brand={brand}: {recall:.4f}"


def test_intersection_measure_helper() -> None:
    truth = np.array([[1, 2, 3], [4, 5, 6]])
    assert knn_intersection_measure([[3, 2, 1], [4, 9, 8]], truth) == pytest.approx(4 / 6)


def test_kinds_claiming_exact_scores_return_exact_inner_products(
    built: VectorIndex, data: tuple, queries: np.ndarray
) -> None:
    """A default matcher reuses the blocker's scores as its cosine feature only where
    ``IndexParams.exact_scores`` holds (app/registry/scorers.py): the score of every hit must be
    the inner product of the query and that product's stored vector."""
    ids, vectors, _, _ = data
    assert built.params.exact_scores  # every served kind: ivfpq is refined by default
    row_of = {int(pid): i for i, pid in enumerate(ids)}
    found = built.search(queries, 10)
    for q, hit_ids, scores in zip(queries, found.ids, found.scores):
        exact = [float(vectors[row_of[int(pid)]] @ q) for pid in hit_ids]
        np.testing.assert_allclose(scores, exact, rtol=0, atol=1e-5)


def test_unrefined_ivfpq_returns_approximate_scores(data: tuple, queries: np.ndarray) -> None:
    ids, vectors, _, _ = data
    index = VectorIndex(DIM, IndexParams(kind="ivfpq", ivf_refine=False))
    index.rebuild(*data, version=1)
    assert not index.params.exact_scores
    row_of = {int(pid): i for i, pid in enumerate(ids)}
    found = index.search(queries[:20], 10)
    gaps = [
        abs(s - float(vectors[row_of[int(p)]] @ q))
        for q, r, sc in zip(queries, found.ids, found.scores)
        for p, s in zip(r, sc)
    ]
    assert max(gaps) > 1e-3  # product-quantised distances: not the cosine feature a head was fitted on
