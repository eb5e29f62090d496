"""The flat backend's matrix-product path for a few queries gives FAISS's exact answers."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from app.search.backends import Backend, FlatBackend, top_k_rows
from app.search.params import IndexParams
from tests.app.search import catalogue, queries_near

DIM = 32


def _backend(n: int) -> tuple[FlatBackend, np.ndarray, np.ndarray]:
    ids, vectors, _, _ = catalogue(n, DIM)
    backend = FlatBackend.empty(DIM, IndexParams(kind="flat"))
    backend.add(ids, vectors)
    return backend, ids, vectors


def _faiss(backend: FlatBackend, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    return backend.index.search(queries, k)


@pytest.mark.parametrize("nq", [1, 3, 8])
def test_few_queries_match_faiss(nq: int, monkeypatch: pytest.MonkeyPatch) -> None:
    backend, _, vectors = _backend(3000)
    queries = queries_near(vectors, nq)
    want_scores, want_keys = _faiss(backend, queries, 50)

    def no_faiss(*args: object, **kwargs: object) -> None:
        raise AssertionError("a search of up to 8 unfiltered queries went to FAISS's scan")

    monkeypatch.setattr(Backend, "search", no_faiss)
    scores, keys = backend.search(queries, 50, None)
    np.testing.assert_array_equal(keys, want_keys)
    np.testing.assert_allclose(scores, want_scores, rtol=0, atol=1e-5)


def test_ties_go_to_the_lower_id_and_short_rows_are_padded_like_faiss() -> None:
    backend = FlatBackend.empty(4, IndexParams(kind="flat"))
    vectors = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0]], dtype=np.float32)
    backend.add(np.array([40, 10, 20, 30]), vectors)
    query = np.array([[1, 0.5, 0, 0]], dtype=np.float32)
    scores, keys = backend.search(query, 2, None)
    assert keys.tolist() == [[20, 40]] and scores.tolist() == [[1.0, 1.0]]
    scores, keys = backend.search(query, 6, None)
    assert keys.tolist() == [[20, 40, 10, 30, -1, -1]]
    want_scores, want_keys = _faiss(backend, query, 6)
    np.testing.assert_array_equal(scores[:, 3:], want_scores[:, 3:])  # 0.0 then FAISS's -FLT_MAX padding
    assert sorted(keys[0, :4]) == sorted(want_keys[0, :4])


def test_after_deletes_and_with_a_selector() -> None:
    backend, ids, vectors = _backend(2000)
    backend.delete(ids[::3])
    queries = queries_near(vectors, 2)
    scores, keys = backend.search(queries, 20, None)
    assert not set(keys.ravel().tolist()) & set(ids[::3].tolist())
    np.testing.assert_array_equal(keys, _faiss(backend, queries, 20)[1])
    selector = faiss.IDSelectorBatch(np.ascontiguousarray(ids[1::3][:50], dtype=np.int64))
    _, filtered = backend.search(queries, 5, selector)  # a selector keeps FAISS's own scan
    assert set(filtered.ravel().tolist()) <= set(ids[1::3][:50].tolist())


def test_top_k_rows_orders_by_score_then_id() -> None:
    scores = np.array([[0.5, 0.9, 0.5, 0.1, 0.9]], dtype=np.float32)
    ids = np.array([7, 3, 1, 9, 2])
    got_scores, got_ids = top_k_rows(scores, ids, 3)
    assert got_ids.tolist() == [[2, 3, 1]] and got_scores.tolist() == np.float32([[0.9, 0.9, 0.5]]).tolist()
