"""Blocking recall@k: does the matching corpus record make the top k of a query? (METHODS §9.5)

Exact search only (``faiss.IndexFlatIP`` over unit vectors), so the number measures the
embedding, not an approximate index. Ties are broken by corpus order (stable), the same rule
as the lexical baseline; ties happen when the corpus holds records with identical text (cosines
are compared at 6 decimals, so float noise between batches does not decide them).

Nothing here imports the web app: training and benchmarks run without it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence

import faiss
import numpy as np
from rapidfuzz import fuzz, process

logger = logging.getLogger(__name__)

DEFAULT_KS: tuple[int, ...] = (1, 5, 10, 20, 50)

#: Extra depth searched beyond max(k) so ties straddling the cut are re-sorted correctly.
_TIE_MARGIN = 16
#: Cosines are compared at this many decimals: identical texts encoded in different batches
#: differ by ~1e-7 (padding), and must still count as ties, broken by corpus order.
_TIE_DECIMALS = 6

EncoderFn = Callable[[list[str]], np.ndarray]
Targets = Sequence[int] | Sequence[set[int]] | Sequence[Iterable[int]]
Exclude = Sequence[set[int]] | Sequence[Iterable[int]]


def _target_sets(query_targets: Targets, n_queries: int, corpus_size: int) -> list[set[int]]:
    if len(query_targets) != n_queries:
        raise ValueError(f"{len(query_targets)} target entries for {n_queries} queries")
    sets: list[set[int]] = []
    for entry in query_targets:
        s = {int(entry)} if isinstance(entry, (int, np.integer)) else {int(t) for t in entry}
        if not s:
            raise ValueError("every query needs at least one matching corpus item")
        bad = [t for t in s if not 0 <= t < corpus_size]
        if bad:
            raise ValueError(f"target indices {bad} outside the corpus (size {corpus_size})")
        sets.append(s)
    return sets


def _check_ks(ks: Iterable[int]) -> list[int]:
    out = sorted({int(k) for k in ks})
    if not out or out[0] < 1:
        raise ValueError(f"ks must be positive integers, got {ks!r}")
    return out


def _exclusions(exclude: Exclude | None, n_queries: int) -> list[set[int]]:
    if not exclude:
        return [set() for _ in range(n_queries)]
    if len(exclude) != n_queries:
        raise ValueError(f"{len(exclude)} exclusion entries for {n_queries} queries")
    return [{int(i) for i in e} for e in exclude]


def ranked_from_scores(scores: np.ndarray, depth: int, exclude: Exclude | None = None) -> np.ndarray:
    """Top-``depth`` corpus indices per row of a (n_queries, n_corpus) score matrix.

    Descending score, ties by ascending corpus index (stable sort), as used for both baselines.
    ``exclude[q]`` lists corpus indices left out of query ``q``'s ranking (padded with -1).
    """
    scores = np.array(scores, dtype=np.float64, copy=True)
    for q, items in enumerate(_exclusions(exclude, scores.shape[0])):
        if items:
            scores[q, list(items)] = -np.inf
    depth = min(depth, scores.shape[1])
    ranked = np.argsort(-scores, axis=1, kind="stable")[:, :depth]
    hidden = np.take_along_axis(scores, ranked, axis=1) == -np.inf
    ranked[hidden] = -1
    return ranked


def search_topk(
    query_emb: np.ndarray, corpus_emb: np.ndarray, depth: int, exclude: Exclude | None = None
) -> np.ndarray:
    """Exact inner-product top-``depth`` with ``IndexFlatIP``; ties re-sorted by corpus index.

    ``exclude[q]``: corpus indices removed from query ``q``'s ranking (-1 pads short rows).
    """
    corpus = np.ascontiguousarray(corpus_emb, dtype=np.float32)
    queries = np.ascontiguousarray(query_emb, dtype=np.float32)
    excl = _exclusions(exclude, queries.shape[0])
    depth = min(depth, corpus.shape[0])
    extra = max((len(e) for e in excl), default=0)
    search_depth = min(corpus.shape[0], depth + extra + _TIE_MARGIN)
    index = faiss.IndexFlatIP(corpus.shape[1])
    index.add(corpus)
    scores, found = index.search(queries, search_depth)
    out = np.full((queries.shape[0], depth), -1, dtype=np.int64)
    for q in range(queries.shape[0]):
        keep = (found[q] >= 0) & ~np.isin(found[q], list(excl[q])) if excl[q] else found[q] >= 0
        ids, sc = found[q][keep], scores[q][keep]
        # lexsort: last key is primary -> by -score (rounded: near-equal = tie), then by index.
        order = np.lexsort((ids, -np.round(sc, _TIE_DECIMALS)))
        chosen = ids[order][:depth]
        out[q, : len(chosen)] = chosen
    return out


def recall_from_ranking(ranked: np.ndarray, targets: list[set[int]], ks: Sequence[int]) -> dict[str, float]:
    """``recall@k`` = share of queries with a target among the first k ranked corpus items."""
    n = len(targets)
    result: dict[str, float] = {}
    first_hit = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    for q, tset in enumerate(targets):
        for rank, item in enumerate(ranked[q]):
            if int(item) in tset:
                first_hit[q] = rank
                break
    for k in ks:
        result[f"recall@{k}"] = float(np.mean(first_hit < k)) if n else 0.0
    return result


def _result(ranked: np.ndarray, targets: list[set[int]], ks: list[int], corpus_size: int) -> dict[str, float]:
    out: dict[str, float] = dict(recall_from_ranking(ranked, targets, ks))
    out["queries"] = len(targets)
    out["corpus_size"] = int(corpus_size)
    return out


def recall_from_embeddings(
    query_emb: np.ndarray,
    corpus_emb: np.ndarray,
    query_targets: Targets,
    ks: Iterable[int] = DEFAULT_KS,
    exclude: Exclude | None = None,
) -> dict[str, float]:
    """recall@k for precomputed unit vectors (re-use one corpus encoding across noisy copies)."""
    ks_list = _check_ks(ks)
    targets = _target_sets(query_targets, len(query_emb), len(corpus_emb))
    return _result(search_topk(query_emb, corpus_emb, max(ks_list), exclude), targets, ks_list, len(corpus_emb))


def blocking_recall(
    encoder_fn: EncoderFn,
    queries: list[str],
    query_targets: Targets,
    corpus: list[str],
    ks: Iterable[int] = DEFAULT_KS,
    exclude: Exclude | None = None,
) -> dict[str, float]:
    """Encode queries and corpus with ``encoder_fn`` (texts -> unit vectors) and score recall@k.

    ``query_targets[i]`` is the corpus index (or set of indices) matching query ``i``; a query
    is a hit at k when any of them is in its top k. Returns ``recall@k`` per k plus
    ``queries`` and ``corpus_size``. ``exclude[i]`` removes corpus indices from query ``i``'s
    ranking (e.g. the query's own copy in the corpus).
    """
    if not queries:
        raise ValueError("no queries")
    if not corpus:
        raise ValueError("empty corpus")
    corpus_emb = np.asarray(encoder_fn(list(corpus)), dtype=np.float32)
    query_emb = np.asarray(encoder_fn(list(queries)), dtype=np.float32)
    return recall_from_embeddings(query_emb, corpus_emb, query_targets, ks, exclude)


def lexical_scores(queries: Sequence[str], corpus: Sequence[str], workers: int = 1) -> np.ndarray:
    """rapidfuzz ``token_set_ratio`` of every query against every corpus text, (nq, nc)."""
    return process.cdist(list(queries), list(corpus), scorer=fuzz.token_set_ratio, dtype=np.float32, workers=workers)


def lexical_recall(
    queries: list[str],
    query_targets: Targets,
    corpus: list[str],
    ks: Iterable[int] = DEFAULT_KS,
    workers: int = 1,
    exclude: Exclude | None = None,
) -> dict[str, float]:
    """The lexical baseline of §9.5: rank the corpus by ``token_set_ratio``, ties by corpus order."""
    if not queries or not corpus:
        raise ValueError("need queries and a corpus")
    return _recall_from_scores(lexical_scores(queries, corpus, workers), query_targets, ks, exclude)


def _recall_from_scores(
    scores: np.ndarray, query_targets: Targets, ks: Iterable[int], exclude: Exclude | None
) -> dict[str, float]:
    """recall@k of a (n_queries, n_corpus) score matrix, ties by corpus order."""
    ks_list = _check_ks(ks)
    targets = _target_sets(query_targets, scores.shape[0], scores.shape[1])
    return _result(ranked_from_scores(scores, max(ks_list), exclude), targets, ks_list, scores.shape[1])


def hybrid_scores(
    query_emb: np.ndarray,
    corpus_emb: np.ndarray,
    lexical: np.ndarray,
    pool: int,
    weight: float,
    exclude: Exclude | None = None,
    lexical_candidates: int = 50,
) -> np.ndarray:
    """Hybrid blocking scores (:mod:`models.hybrid_blocking`) as a (n_queries, n_corpus) matrix.

    Each query's candidates - its dense top-``pool`` and its BM25 top-``lexical_candidates``
    with a positive score, after exclusions - get their fused score; everything else is
    ``-inf``, so it ranks after them exactly as the service never sees it.
    """
    from models.hybrid_blocking import fuse

    if pool < 1 or lexical_candidates < 0:
        raise ValueError(f"need pool >= 1 and lexical_candidates >= 0, got {pool} and {lexical_candidates}")
    dense = np.asarray(query_emb, dtype=np.float32) @ np.asarray(corpus_emb, dtype=np.float32).T
    if lexical.shape != dense.shape:
        raise ValueError(f"lexical scores {lexical.shape} do not fit {dense.shape}")
    pools = ranked_from_scores(dense, pool, exclude)
    lexical_top = ranked_from_scores(lexical, lexical_candidates, exclude) if lexical_candidates else None
    fused = np.full(dense.shape, -np.inf, dtype=np.float64)
    for q, row in enumerate(pools):
        ids = row[row >= 0]
        if lexical_top is not None:
            extra = lexical_top[q][lexical_top[q] >= 0]
            ids = np.union1d(ids, extra[lexical[q, extra] > 0])
        fused[q, ids] = fuse(dense[q, ids], lexical[q, ids], weight)
    return fused


def hybrid_recall(
    query_emb: np.ndarray,
    corpus_emb: np.ndarray,
    lexical: np.ndarray,
    query_targets: Targets,
    ks: Iterable[int] = DEFAULT_KS,
    pool: int = 200,
    weight: float = 0.3,
    exclude: Exclude | None = None,
    lexical_candidates: int = 50,
) -> dict[str, float]:
    """recall@k of hybrid blocking; ``lexical`` is the BM25 matrix of the queries vs the corpus."""
    fused = hybrid_scores(query_emb, corpus_emb, lexical, pool, weight, exclude, lexical_candidates)
    return _recall_from_scores(fused, query_targets, ks, exclude)


def bm25_recall(
    queries: list[str],
    query_targets: Targets,
    corpus: list[str],
    ks: Iterable[int] = DEFAULT_KS,
    exclude: Exclude | None = None,
) -> dict[str, float]:
    """The BM25 baseline: rank the whole corpus by Okapi BM25 (:mod:`models.bm25`)."""
    from models.bm25 import BM25

    if not queries or not corpus:
        raise ValueError("need queries and a corpus")
    return _recall_from_scores(BM25(corpus).scores(queries), query_targets, ks, exclude)
