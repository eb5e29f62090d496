"""Blocking recall@k: hand-made case, brute force agreement, exclusions, lexical baseline."""

from __future__ import annotations

import numpy as np
import pytest

from models.bm25 import BM25
from training.evaluate import (
    blocking_recall,
    bm25_recall,
    hybrid_recall,
    lexical_recall,
    ranked_from_scores,
    recall_from_embeddings,
    search_topk,
)

# 2-d unit vectors: the corpus sits on a circle, queries between known items.
ANGLES = np.deg2rad([0, 20, 45, 90, 135, 180, 250])
CORPUS = np.stack([np.cos(ANGLES), np.sin(ANGLES)], axis=1).astype(np.float32)


def _vec(deg: float) -> np.ndarray:
    return np.array([np.cos(np.deg2rad(deg)), np.sin(np.deg2rad(deg))], dtype=np.float32)


def test_hand_made_case() -> None:
    # Query at 10 deg: ranking 0(0), 1(20), 2(45), 3(90), ...; its match is item 2 -> rank 3.
    # Query at 170 deg: ranking 5(180), 4(135), ...; match 5 -> rank 1.
    # Query at 60 deg: ranking 2(45), 3(90), 1(20) ...; match {6} (250 deg) -> far away.
    queries = np.stack([_vec(10), _vec(170), _vec(60)])
    targets = [2, {5}, {6}]
    result = recall_from_embeddings(queries, CORPUS, targets, ks=[1, 3, 7])
    assert result["recall@1"] == pytest.approx(1 / 3)
    assert result["recall@3"] == pytest.approx(2 / 3)
    assert result["recall@7"] == pytest.approx(1.0)
    assert result["queries"] == 3 and result["corpus_size"] == 7


def test_any_of_several_targets_counts() -> None:
    queries = np.stack([_vec(10)])
    assert recall_from_embeddings(queries, CORPUS, [{2, 0}], ks=[1])["recall@1"] == 1.0


def test_equals_brute_force() -> None:
    rng = np.random.default_rng(0)
    corpus = rng.normal(size=(200, 16)).astype(np.float32)
    corpus /= np.linalg.norm(corpus, axis=1, keepdims=True)
    queries = rng.normal(size=(50, 16)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    targets = [set(rng.choice(200, size=rng.integers(1, 3), replace=False).tolist()) for _ in range(50)]
    ks = [1, 5, 10, 50]
    result = recall_from_embeddings(queries, corpus, targets, ks)
    scores = queries @ corpus.T
    for k in ks:
        brute = np.mean([bool(set(np.argsort(-scores[q])[:k].tolist()) & targets[q]) for q in range(50)])
        assert result[f"recall@{k}"] == pytest.approx(brute)


def test_ties_broken_by_corpus_order() -> None:
    corpus = np.stack([_vec(0), _vec(90), _vec(90), _vec(90)])
    ranked = search_topk(np.stack([_vec(90)]), corpus, 3)
    assert ranked.tolist() == [[1, 2, 3]]
    assert ranked_from_scores(np.array([[0.1, 0.5, 0.5, 0.5]]), 3).tolist() == [[1, 2, 3]]


def test_exclusions_are_skipped() -> None:
    # Query at 0 deg with its own copy at index 0 excluded: item 1 moves to rank 1.
    queries = np.stack([_vec(0)])
    assert recall_from_embeddings(queries, CORPUS, [1], ks=[1])["recall@1"] == 0.0
    assert recall_from_embeddings(queries, CORPUS, [1], ks=[1], exclude=[{0}])["recall@1"] == 1.0
    ranked = ranked_from_scores(np.array([[3.0, 2.0, 1.0]]), 3, exclude=[{0}])
    assert ranked.tolist() == [[1, 2, -1]]


def test_blocking_recall_with_encoder_fn() -> None:
    vocab = {"red": _vec(0), "green": _vec(120), "blue": _vec(240)}

    def encode(texts: list[str]) -> np.ndarray:
        return np.stack([vocab[t.split()[0]] for t in texts])

    corpus = ["red shoe", "green shoe", "blue shoe"]
    result = blocking_recall(encode, ["blue offer", "red offer"], [2, 0], corpus, ks=[1])
    assert result["recall@1"] == 1.0


def test_lexical_recall() -> None:
    corpus = ["apple iphone 12 black", "samsung galaxy s21", "apple ipad air"]
    queries = ["iphone 12 apple", "galaxy s21 samsung phone", "ipad"]
    result = lexical_recall(queries, [0, 1, 2], corpus, ks=[1, 3])
    assert result["recall@1"] == 1.0 and result["recall@3"] == 1.0
    assert lexical_recall(["apple"], [2], corpus, ks=[1])["recall@1"] == 0.0  # tie -> corpus order


def test_bad_targets_rejected() -> None:
    with pytest.raises(ValueError):
        recall_from_embeddings(np.stack([_vec(0)]), CORPUS, [99], ks=[1])
    with pytest.raises(ValueError):
        recall_from_embeddings(np.stack([_vec(0)]), CORPUS, [0, 1], ks=[1])


def test_bm25_recall_finds_rare_shared_tokens() -> None:
    corpus = ["apple iphone 12 black", "samsung galaxy s21", "apple ipad air", "apple watch"]
    result = bm25_recall(["galaxy s21 phone", "apple ipad"], [1, 2], corpus, ks=[1])
    assert result["recall@1"] == 1.0 and result["corpus_size"] == 4


def test_hybrid_rescues_lexical_matches_from_the_pool_and_from_bm25_candidates() -> None:
    # Dense ranks the target (item 3) fourth for the query at 10 degrees; BM25 sees its code.
    corpus_text = ["blue shoe", "red shoe", "green shoe", "shoe xk-4410", "hat", "scarf", "coat"]
    lexical = BM25(corpus_text).scores(["xk-4410 shoe"])
    query = np.stack([_vec(10)])
    dense = recall_from_embeddings(query, CORPUS, [3], ks=[1, 3])
    assert dense["recall@3"] == 0.0
    hybrid = hybrid_recall(query, CORPUS, lexical, [3], ks=[1, 3], pool=5, weight=1.0)
    assert hybrid["recall@1"] == 1.0
    # Outside the dense pool only BM25's own candidates can bring it in.
    assert hybrid_recall(query, CORPUS, lexical, [3], ks=[1, 3], pool=3, weight=1.0)["recall@1"] == 1.0
    no_lexical = hybrid_recall(query, CORPUS, lexical, [3], ks=[1, 3], pool=3, weight=1.0, lexical_candidates=0)
    assert no_lexical["recall@3"] == 0.0
    # Weight 0 is dense blocking.
    assert hybrid_recall(query, CORPUS, lexical, [3], ks=[1, 3], pool=5, weight=0.0)["recall@3"] == 0.0
    with pytest.raises(ValueError, match="pool"):
        hybrid_recall(query, CORPUS, lexical, [3], ks=[1], pool=0)
