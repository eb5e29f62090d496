"""Okapi BM25 over product texts: the lexical channel of hybrid blocking.

Dense embeddings blur what only the characters say: part numbers, rare model codes, a product
whose labelled partner is worded differently but shares one rare token. BM25 over alphanumeric
tokens keeps those, so the hybrid blocker (:mod:`models.hybrid_blocking`) re-scores the dense
candidate pool with it.

Tokens: lower-cased alphanumeric runs, plus each hyphen/slash/dot-joined compound glued
together ("WH-1000XM4" -> ``wh``, ``1000xm4``, ``wh1000xm4``), because catalogues spell model
codes both ways. Scores are the classic BM25 (k1, b) with the non-negative Lucene IDF; a query
word counts once however often the query repeats it.

Three scorers share :class:`TermStats` and give bit-identical numbers (one expression,
:func:`models.bm25_base.impact`, summed over a document's terms in the query's word order):
:class:`BM25` scores many queries against a fixed corpus (evaluation), :class:`LiveBM25` is the
inverted index over a changing catalogue that serving searches (exact top-k, and the score of
any indexed document), and :func:`pool_scores` scores one query against a handful of texts.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from models.bm25_base import SCAN_POSTINGS, SEED_POSTINGS, CompactBase, QueryWeights, impact

_WORD = re.compile(r"[a-z0-9]+")
_COMPOUND = re.compile(r"[a-z0-9]+(?:[-/.][a-z0-9]+)+")
_JOINERS = re.compile(r"[-/.]")

DEFAULT_K1 = 1.2
DEFAULT_B = 0.75


def tokenize(text: str) -> list[str]:
    """Alphanumeric tokens of ``text`` plus the glued form of every joined compound."""
    low = text.lower()
    tokens = _WORD.findall(low)
    tokens.extend(_JOINERS.sub("", c) for c in _COMPOUND.findall(low))
    return tokens


@dataclass
class TermStats:
    """Corpus statistics BM25 needs: document frequencies, document count, mean length."""

    df: Counter[str] = field(default_factory=Counter)
    n_docs: int = 0
    total_len: int = 0

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> TermStats:
        stats = cls()
        stats.add_all(texts)
        return stats

    def add_all(self, texts: Iterable[str]) -> None:
        for text in texts:
            self.add(tokenize(text))

    def add(self, tokens: list[str]) -> None:
        """Count one document, given its tokens."""
        self.df.update(set(tokens))
        self.n_docs += 1
        self.total_len += len(tokens)

    def forget(self, terms: set[str], length: int) -> None:
        """Un-count one document, given its distinct terms and its token count."""
        self.df.subtract(terms)
        self.n_docs -= 1
        self.total_len -= length

    @property
    def avg_len(self) -> float:
        return self.total_len / self.n_docs if self.n_docs and self.total_len else 1.0

    def idf(self, terms: Sequence[str]) -> np.ndarray:
        df = np.fromiter((self.df.get(t, 0) for t in terms), dtype=np.float64, count=len(terms))
        # A term the statistics have never seen is as rare as a term can be (df = 0).
        return np.log1p((max(self.n_docs, 1) - df + 0.5) / (df + 0.5))


@dataclass(frozen=True)
class _Query:
    """A query's distinct words (query order) and their weights under the current statistics."""

    terms: list[str]
    weights: np.ndarray  # idf * (k1 + 1), float64
    norm_len: float
    norm_base: float

    @classmethod
    def of(cls, query: str, stats: TermStats, k1: float, b: float) -> _Query:
        terms = list(dict.fromkeys(tokenize(query)))
        # One idf call over all the query's words: every scorer sees the same float64 weights.
        weights = stats.idf(terms) * (k1 + 1.0) if terms else np.zeros(0, dtype=np.float64)
        return cls(terms, weights, k1 * b / stats.avg_len, k1 * (1.0 - b))

    def score(self, tokens: list[str]) -> float:
        """One tokenised document's score, its words in query order (as the base sums them)."""
        counts = Counter(tokens)
        length = float(len(tokens))
        summed = 0.0
        for term, weight in zip(self.terms, self.weights):
            tf = counts.get(term)
            if tf:
                summed += impact(float(weight), float(tf), length, self.norm_len, self.norm_base)
        return summed


def pool_scores(
    query: str,
    docs: Sequence[str] | Sequence[list[str]],
    stats: TermStats,
    k1: float = DEFAULT_K1,
    b: float = DEFAULT_B,
) -> np.ndarray:
    """BM25 of one query against each of ``docs`` (texts, or their :func:`tokenize` lists), float32."""
    q = _Query.of(query, stats, k1, b)
    if not q.terms:
        return np.zeros(len(docs), dtype=np.float32)
    return np.asarray(
        [q.score(tokenize(doc) if isinstance(doc, str) else doc) for doc in docs], dtype=np.float64
    ).astype(np.float32)


class BM25:
    """BM25 fitted on a fixed corpus (row i = ``corpus[i]``); ``scores`` gives the full matrix.

    The evaluation's view of :class:`LiveBM25`: the same index and arithmetic as serving.
    """

    def __init__(self, corpus: Sequence[str], k1: float = DEFAULT_K1, b: float = DEFAULT_B) -> None:
        if k1 < 0 or not 0.0 <= b <= 1.0:
            raise ValueError(f"need k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")
        self._index = LiveBM25(range(len(corpus)), corpus, k1, b)
        self.stats = self._index.stats

    def scores(self, queries: Sequence[str]) -> np.ndarray:
        """Dense (n_queries, n_corpus) BM25 scores, float32."""
        return np.stack([self._index.base_scores(q) for q in queries]).astype(np.float32)


class LiveBM25:
    """BM25 over a changing set of documents keyed by id, always scored with current statistics.

    A compact base (:class:`models.bm25_base.CompactBase`, built once) plus a delta of documents
    added or changed since; removing or replacing a base document only masks its row. Scores are
    computed at query time from raw term frequencies with the *current* document frequencies and
    mean length, so every result equals what a fresh build over the same documents would give
    (ties are broken by id). A caller rebuilds the whole index when the delta grows large.

    Reads (:meth:`top`, :meth:`scores_for`, :meth:`base_scores`) may run concurrently with each
    other; a caller serialises them against :meth:`upsert` and :meth:`remove`.
    """

    def __init__(
        self,
        ids: Sequence[int],
        texts: Sequence[str],
        k1: float = DEFAULT_K1,
        b: float = DEFAULT_B,
        scan_postings: int = SCAN_POSTINGS,
        seed_postings: int = SEED_POSTINGS,
    ) -> None:
        """``scan_postings``: queries with at most this many base postings are scanned whole
        rather than pruned; ``seed_postings``: how many postings of the rarest words seed the
        pruning threshold. Neither changes a result (tests force every path with them)."""
        if len(ids) != len(texts):
            raise ValueError(f"{len(ids)} ids for {len(texts)} texts")
        if len(set(ids)) != len(ids):
            raise ValueError("ids must be unique")
        self.k1, self.b = float(k1), float(b)
        docs = [tokenize(t) for t in texts]
        self.stats = TermStats()
        for doc in docs:
            self.stats.add(doc)
        self._vocab: dict[str, int] = {}
        self._base = CompactBase(docs, self._vocab)
        self._base.scan_postings = scan_postings
        self._base.seed_postings = seed_postings
        self._terms = list(self._vocab)
        self._base_ids = np.asarray(ids, dtype=np.int64)
        self._row_of = {int(i): r for r, i in enumerate(self._base_ids)}
        self._delta: dict[int, list[str]] = {}

    def __len__(self) -> int:
        return self._base.n_rows - self._base.n_dead + len(self._delta)

    @property
    def delta_size(self) -> int:
        return len(self._delta) + self._base.n_dead

    def remove(self, doc_id: int) -> None:
        """Take a document out (no-op when absent)."""
        doc_id = int(doc_id)
        tokens = self._delta.pop(doc_id, None)
        if tokens is not None:
            self.stats.forget(set(tokens), len(tokens))
            return
        row = self._row_of.get(doc_id)
        if row is not None and self._base.alive[row]:
            self._base.kill(row)
            terms = {self._terms[t] for t in self._base.row_terms(row)}
            self.stats.forget(terms, int(self._base.lengths[row]))

    def upsert(self, doc_id: int, text: str) -> None:
        """Add a document or replace its text."""
        self.remove(doc_id)
        tokens = tokenize(text)
        self._delta[int(doc_id)] = tokens
        self.stats.add(tokens)

    def _query(self, query: str) -> tuple[_Query, QueryWeights]:
        q = _Query.of(query, self.stats, self.k1, self.b)
        known = [i for i, t in enumerate(q.terms) if t in self._vocab]
        base = QueryWeights(
            np.asarray([self._vocab[q.terms[i]] for i in known], dtype=np.int64),
            q.weights[known],
            q.norm_len,
            q.norm_base,
        )
        return q, base

    def base_scores(self, query: str) -> np.ndarray:
        """BM25 of ``query`` for every base row under the current statistics (removed rows: 0), float64."""
        return self._base.scores(self._query(query)[1])

    def top(self, query: str, m: int) -> tuple[list[int], list[float]]:
        """The ``m`` best documents sharing a word with ``query``: (ids, scores), best first.

        Exact under the current statistics: the same ids, ties included, as scoring every
        document and sorting by (float32 score desc, id asc), but the base is searched with
        pruning (:meth:`models.bm25_base.CompactBase.top_rows`); the small delta is scored whole.
        """
        if m < 1 or not len(self):
            return [], []
        q, base = self._query(query)
        rows, scores = self._base.top_rows(base, m)
        id_parts, score_parts = [self._base_ids[rows]], [scores]
        if self._delta and q.terms:
            delta_ids = np.fromiter(self._delta, dtype=np.int64, count=len(self._delta))
            delta_scores = np.asarray([q.score(t) for t in self._delta.values()], dtype=np.float64)
            keep = delta_scores > 0
            id_parts.append(delta_ids[keep])
            score_parts.append(delta_scores[keep].astype(np.float32))
        return _best(np.concatenate(id_parts), np.concatenate(score_parts), m)

    def scores_for(self, query: str, ids: Sequence[int]) -> np.ndarray:
        """The float32 score of each of ``ids`` (NaN where the index has no such document).

        The same number :meth:`top` gives a document, without reading its text anywhere.
        """
        out = np.full(len(ids), np.nan, dtype=np.float64)
        q, base = self._query(query)
        at, rows = [], []
        for i, doc_id in enumerate(ids):
            tokens = self._delta.get(int(doc_id))
            if tokens is not None:
                out[i] = q.score(tokens)
                continue
            row = self._row_of.get(int(doc_id))
            if row is not None and self._base.alive[row]:
                at.append(i)
                rows.append(row)
        if rows:
            out[np.asarray(at)] = self._base.row_scores(np.asarray(rows, dtype=np.int64), base)
        return out.astype(np.float32)


def _best(ids: np.ndarray, scores: np.ndarray, m: int) -> tuple[list[int], list[float]]:
    """The ``m`` best by (float32 score desc, id asc)."""
    if scores.size > m:
        # Only what can be in the top m is sorted: every score >= the m-th best (ties included).
        kth = np.partition(scores, scores.size - m)[scores.size - m]
        keep = scores >= kth
        ids, scores = ids[keep], scores[keep]
    order = np.lexsort((ids, -scores))[:m]
    return ids[order].tolist(), scores[order].astype(float).tolist()
