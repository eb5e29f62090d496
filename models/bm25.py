"""Okapi BM25 over product texts: the lexical channel of hybrid blocking.

Dense embeddings blur what only the characters say: part numbers, rare model codes, a product
whose labelled partner is worded differently but shares one rare token. BM25 over alphanumeric
tokens keeps those, so the hybrid blocker (:mod:`models.hybrid_blocking`) re-scores the dense
candidate pool with it.

Tokens: lower-cased alphanumeric runs, plus each hyphen/slash/dot-joined compound glued
together ("WH-1000XM4" -> ``wh``, ``1000xm4``, ``wh1000xm4``), because catalogues spell model
codes both ways. Scores are the classic BM25 (k1, b) with the non-negative Lucene IDF; a query
word counts once however often the query repeats it.

Three scorers share :class:`TermStats` and give identical numbers: :class:`BM25` scores many
queries against a fixed corpus as one sparse product (evaluation), :class:`LiveBM25` is the
inverted index over a changing catalogue that serving searches, and :func:`pool_scores` scores
one query against a handful of candidate texts (serving re-scores fresh candidate texts with it).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import sparse

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


def pool_scores(
    query: str,
    docs: Sequence[str] | Sequence[list[str]],
    stats: TermStats,
    k1: float = DEFAULT_K1,
    b: float = DEFAULT_B,
) -> np.ndarray:
    """BM25 of one query against each of ``docs`` (texts, or their :func:`tokenize` lists)."""
    terms = list(dict.fromkeys(tokenize(query)))
    out = np.zeros(len(docs), dtype=np.float64)
    if not terms or not docs:
        return out.astype(np.float32)
    idf = stats.idf(terms)
    position = {t: i for i, t in enumerate(terms)}
    norm_base = k1 * (1.0 - b)
    norm_len = k1 * b / stats.avg_len
    for j, doc in enumerate(docs):
        tokens = tokenize(doc) if isinstance(doc, str) else doc
        counts = Counter(t for t in tokens if t in position)
        if not counts:
            continue
        norm = norm_base + norm_len * len(tokens)
        out[j] = sum(idf[position[t]] * tf * (k1 + 1.0) / (tf + norm) for t, tf in counts.items())
    return out.astype(np.float32)


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

    A compact base (sparse term-frequency matrices, built once) plus a delta of documents added
    or changed since; removing or replacing a base document only masks its row. Scores are
    computed at query time from raw term frequencies with the *current* document frequencies and
    mean length, so every result equals what a fresh build over the same documents would give
    (ties are broken by id). A caller rebuilds the whole index when the delta grows large.
    """

    def __init__(self, ids: Sequence[int], texts: Sequence[str], k1: float = DEFAULT_K1, b: float = DEFAULT_B) -> None:
        if len(ids) != len(texts):
            raise ValueError(f"{len(ids)} ids for {len(texts)} texts")
        if len(set(ids)) != len(ids):
            raise ValueError("ids must be unique")
        self.k1, self.b = float(k1), float(b)
        docs = [tokenize(t) for t in texts]
        self.stats = TermStats()
        self._vocab: dict[str, int] = {}
        indptr: list[int] = [0]
        indices: list[int] = []
        for doc in docs:
            self.stats.add(doc)
            indices.extend(self._vocab.setdefault(t, len(self._vocab)) for t in doc)
            indptr.append(len(indices))
        tf = sparse.csr_matrix(
            (np.ones(len(indices), dtype=np.float32), indices, indptr), shape=(len(docs), len(self._vocab))
        )
        tf.sum_duplicates()
        self._terms = list(self._vocab)
        self._rows = tf  # document -> terms, to take a removed document out of the statistics
        self._postings = tf.T.tocsr()  # term -> documents: the inverted index
        self._postings.data = self._postings.data.astype(np.float64)
        self._base_ids = np.asarray(ids, dtype=np.int64)
        self._row_of = {int(i): r for r, i in enumerate(self._base_ids)}
        self._base_len = np.asarray([len(d) for d in docs], dtype=np.float64)
        # Each posting's document length, laid out like the postings: no gather per query.
        self._posting_len = self._base_len[self._postings.indices]
        self._alive = np.ones(len(docs), dtype=bool)
        self._delta: dict[int, list[str]] = {}

    def __len__(self) -> int:
        return int(self._alive.sum()) + len(self._delta)

    @property
    def delta_size(self) -> int:
        return len(self._delta) + int((~self._alive).sum())

    def remove(self, doc_id: int) -> None:
        """Take a document out (no-op when absent)."""
        doc_id = int(doc_id)
        tokens = self._delta.pop(doc_id, None)
        if tokens is not None:
            self.stats.forget(set(tokens), len(tokens))
            return
        row = self._row_of.get(doc_id)
        if row is not None and self._alive[row]:
            self._alive[row] = False
            lo, hi = self._rows.indptr[row], self._rows.indptr[row + 1]
            self.stats.forget({self._terms[t] for t in self._rows.indices[lo:hi]}, int(self._base_len[row]))

    def upsert(self, doc_id: int, text: str) -> None:
        """Add a document or replace its text."""
        self.remove(doc_id)
        tokens = tokenize(text)
        self._delta[int(doc_id)] = tokens
        self.stats.add(tokens)

    def base_scores(self, query: str) -> np.ndarray:
        """BM25 of ``query`` for every base row under the current statistics (removed rows: 0)."""
        summed: np.ndarray = np.zeros(len(self._base_ids), dtype=np.float64)
        terms = list(dict.fromkeys(tokenize(query)))
        if not terms:
            return summed
        idf = self.stats.idf(terms)
        k1, b, avg = self.k1, self.b, self.stats.avg_len
        rows_parts, weight_parts = [], []
        for term, w in zip(terms, idf):
            tid = self._vocab.get(term)
            if tid is None:
                continue
            lo, hi = self._postings.indptr[tid], self._postings.indptr[tid + 1]
            tf = self._postings.data[lo:hi]
            norm = self._posting_len[lo:hi] * (k1 * b / avg) + k1 * (1.0 - b)
            rows_parts.append(self._postings.indices[lo:hi])
            weight_parts.append((w * (k1 + 1.0)) * tf / (tf + norm))
        if rows_parts:
            summed = np.bincount(
                np.concatenate(rows_parts), np.concatenate(weight_parts), minlength=len(self._base_ids)
            )
            summed[~self._alive] = 0.0
        return summed

    def top(self, query: str, m: int) -> tuple[list[int], list[float]]:
        """The ``m`` best documents sharing a word with ``query``: (ids, scores), best first.

        Every base posting of the query's words is scored (that keeps the result exact under the
        current statistics); only the hits that can be in the top ``m`` are then sorted.
        """
        if m < 1 or not len(self):
            return [], []
        summed = self.base_scores(query)
        hit = np.flatnonzero(summed > 0)
        return self._merge(query, m, self._base_ids[hit], summed[hit])

    def _merge(self, query: str, m: int, ids: np.ndarray, scores: np.ndarray) -> tuple[list[int], list[float]]:
        """Base hits plus the delta's, the ``m`` best by (score at float32, id)."""
        id_parts, score_parts = [ids], [scores]
        if self._delta:
            delta_ids = np.fromiter(self._delta, dtype=np.int64, count=len(self._delta))
            delta_scores = pool_scores(query, list(self._delta.values()), self.stats, self.k1, self.b).astype(
                np.float64
            )
            keep = delta_scores > 0
            id_parts.append(delta_ids[keep])
            score_parts.append(delta_scores[keep])
        all_ids, all_scores = np.concatenate(id_parts), np.concatenate(score_parts)
        # Scores at float32 precision, as pool_scores returns them, so base and delta documents tie alike.
        all_scores = all_scores.astype(np.float32)
        if all_scores.size > m:
            # Only what can be in the top m is sorted: every score >= the m-th best (ties included).
            kth = np.partition(all_scores, all_scores.size - m)[all_scores.size - m]
            keep = all_scores >= kth
            all_ids, all_scores = all_ids[keep], all_scores[keep]
        order = np.lexsort((all_ids, -all_scores))[:m]
        return all_ids[order].tolist(), all_scores[order].astype(float).tolist()
