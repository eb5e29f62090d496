"""The compact base of :class:`models.bm25.LiveBM25`, and its exact pruned top-k search.

The base holds raw term frequencies and document lengths, never precomputed scores: a score
is computed at query time with the *current* statistics (idf, mean length), which change with
every upsert or removal. Every path here - the exhaustive scan, the pruned top-k search and
the per-document scoring - sums a document's terms in the query's word order with one
expression (:func:`impact`), so they give bit-identical float64 scores, and a document scores
the same in the base, in the delta or in a candidate pool.

Top-k (:meth:`CompactBase.top_rows`) runs MaxScore (:mod:`models.bm25_maxscore`). Each term's
upper bound is its current weight at the best (term frequency, document length) pair among its
postings - the impact grows with tf and falls with length whatever the statistics, so the
per-term maxima stored at build time stay valid bounds after any change. Removed rows stay in
the postings (masked), which only loosens a bound. Pruning keeps a relative margin far above
float64 summation error and float32 rounding, and the surviving rows are rescored here in
query order, so the ids are exactly those of the exhaustive scan, ties (equal float32 scores,
broken by id) included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse

from models.bm25_maxscore import maxscore_rows

# A pruning bound must fall below the threshold by this relative margin: far above float64
# summation-order error (~1e-15), and wide enough that a pruned document's float32 score is
# strictly below the threshold's (float32 spacing is ~6e-8 relative).
_SAFE = 1.0 + 4e-6
# The rarest terms' postings, up to this many, seed the top-k threshold before the main pass.
SEED_POSTINGS = 4096
# A query with at most this many postings is scanned whole: vectorised numpy is as fast there
# (measured crossover: ~30k postings per query at 100k products, where both take ~0.6 ms).
SCAN_POSTINGS = 50_000


@dataclass(frozen=True)
class QueryWeights:
    """One query under the current statistics: its known terms (query order) and their weights."""

    tids: np.ndarray  # vocabulary ids of the base, int64
    weights: np.ndarray  # idf * (k1 + 1), float64, aligned with tids
    norm_len: float  # k1 * b / mean length
    norm_base: float  # k1 * (1 - b)


def impact(weight: Any, tf: Any, length: Any, norm_len: float, norm_base: float) -> Any:
    """One term's BM25 contribution (arrays or floats): the one expression every scorer uses.

    ``weight`` is idf * (k1 + 1), ``norm_len`` k1 * b / mean length, ``norm_base`` k1 * (1 - b).
    """
    return weight * tf / (tf + (length * norm_len + norm_base))


class CompactBase:
    """Documents tokenised once: postings (term -> rows) and the forward index (row -> terms)."""

    def __init__(self, docs: list[list[str]], vocab: dict[str, int]) -> None:
        indptr: list[int] = [0]
        indices: list[int] = []
        for doc in docs:
            indices.extend(vocab.setdefault(t, len(vocab)) for t in doc)
            indptr.append(len(indices))
        forward = sparse.csr_matrix(
            (np.ones(len(indices), dtype=np.float64), indices, indptr), shape=(len(docs), len(vocab))
        )
        forward.sum_duplicates()
        self.n_rows = len(docs)
        self.lengths = np.asarray([len(d) for d in docs], dtype=np.float64)
        self.forward = forward  # row -> (term, tf); also takes a removed document out of the statistics
        postings = forward.T.tocsr()
        self.postings = postings  # term -> (row, tf), rows ascending
        self.posting_len = self.lengths[postings.indices]  # each posting's document length, no gather per query
        n_terms = postings.shape[0]
        term_of = np.repeat(np.arange(n_terms), np.diff(postings.indptr))
        # Per-term bounds: the largest tf and the shortest document among the term's postings.
        self.max_tf = np.zeros(n_terms, dtype=np.float64)
        np.maximum.at(self.max_tf, term_of, postings.data)
        self.min_len = np.full(n_terms, np.inf, dtype=np.float64)
        np.minimum.at(self.min_len, term_of, self.posting_len)
        self.alive = np.ones(len(docs), dtype=bool)
        self.n_dead = 0
        self.scan_postings = SCAN_POSTINGS
        self.seed_postings = SEED_POSTINGS

    def kill(self, row: int) -> None:
        if self.alive[row]:
            self.alive[row] = False
            self.n_dead += 1

    def row_terms(self, row: int) -> np.ndarray:
        return self.forward.indices[self.forward.indptr[row] : self.forward.indptr[row + 1]]

    # -- scoring ----------------------------------------------------------------------------
    def _term(self, tid: int, q: QueryWeights, weight: float) -> tuple[np.ndarray, np.ndarray]:
        """A term's live rows and their contributions."""
        lo, hi = self.postings.indptr[tid], self.postings.indptr[tid + 1]
        rows = self.postings.indices[lo:hi]
        tf, length = self.postings.data[lo:hi], self.posting_len[lo:hi]
        if self.n_dead:
            keep = self.alive[rows]
            rows, tf, length = rows[keep], tf[keep], length[keep]
        return rows, impact(weight, tf, length, q.norm_len, q.norm_base)

    def scores(self, q: QueryWeights) -> np.ndarray:
        """Every row's score, float64 (removed rows and rows sharing no term: 0): the exhaustive scan."""
        if not q.tids.size:
            return np.zeros(self.n_rows, dtype=np.float64)
        parts = [self._term(int(t), q, float(w)) for t, w in zip(q.tids, q.weights)]
        # bincount adds in input order: each row's terms in query order, as everywhere else.
        return np.bincount(
            np.concatenate([r for r, _ in parts]), np.concatenate([c for _, c in parts]), minlength=self.n_rows
        )

    def row_scores(self, rows: np.ndarray, q: QueryWeights) -> np.ndarray:
        """The scores of ``rows`` (live rows), float64, from the forward index."""
        n_q = q.tids.size
        if not rows.size or not n_q:
            return np.zeros(rows.size, dtype=np.float64)
        starts = self.forward.indptr[rows]
        counts = self.forward.indptr[rows + 1] - starts
        total = int(counts.sum())
        # The forward entries of every row, flattened: row i's entries are starts[i] + 0..counts[i]-1.
        entry = np.arange(total) + np.repeat(starts - (np.cumsum(counts) - counts), counts)
        terms = self.forward.indices[entry]
        by_tid = np.argsort(q.tids, kind="stable")
        sorted_tids = q.tids[by_tid]
        k = np.minimum(np.searchsorted(sorted_tids, terms), n_q - 1)
        hit = np.flatnonzero(sorted_tids[k] == terms)
        position = by_tid[k[hit]]  # the term's place in the query
        owner = np.repeat(np.arange(rows.size), counts)[hit]
        tf = self.forward.data[entry[hit]]
        table = np.zeros((n_q, rows.size), dtype=np.float64)
        table[position, owner] = impact(q.weights[position], tf, self.lengths[rows[owner]], q.norm_len, q.norm_base)
        summed = np.zeros(rows.size, dtype=np.float64)
        for column in table:  # query order, like the exhaustive scan's bincount
            summed += column
        return summed

    def top_rows(self, q: QueryWeights, m: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows that hold the base's top ``m`` (every row that could tie into it), with float32 scores.

        Removing the other rows cannot change the top ``m`` by (float32 score desc, id asc): each
        of them scores strictly below ``m`` of the returned rows. A query whose postings are few
        is scanned whole (vectorised, as fast as pruning there); the others go to MaxScore.
        """
        if not q.tids.size or m < 1:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        postings = int((self.postings.indptr[q.tids + 1] - self.postings.indptr[q.tids]).sum())
        if postings <= self.scan_postings:
            summed = self.scores(q)
            hit = np.flatnonzero(summed > 0)
            return hit, summed[hit].astype(np.float32)
        bound = impact(q.weights, self.max_tf[q.tids], self.min_len[q.tids], q.norm_len, q.norm_base)
        order = np.argsort(bound, kind="stable")
        rows, _ = maxscore_rows(
            self.postings.indptr,
            self.postings.indices,
            self.postings.data,
            self.posting_len,
            self.forward.indptr,
            self.forward.indices,
            self.forward.data,
            self.lengths,
            self.alive,
            q.tids[order],
            q.weights[order],
            bound[order],
            q.norm_len,
            q.norm_base,
            m,
            self.seed_postings,
            _SAFE,
        )
        # The kernel sums in bound order; the one score of record sums in query order.
        return rows, self.row_scores(rows, q).astype(np.float32)


def warm_up() -> None:
    """Compile the MaxScore kernel now (seconds the first time, cached on disk after)."""
    base = CompactBase([["a", "b"], ["a"], ["b", "c"]], {})
    weights = np.ones(2, dtype=np.float64)
    base.scan_postings = -1
    base.top_rows(QueryWeights(np.arange(2, dtype=np.int64), weights, 0.1, 0.3), 1)
