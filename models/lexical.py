"""CPU pre-processing for LEA: word-level lexical similarity between the two texts of a pair.

LEA (docs METHODS §2) biases the attention logit of every cross-text token pair by the
character-level similarity of the *words* the two tokens belong to, so that a typo'd word
(``micrwave``), whose sub-word split shares almost nothing with ``microwave``, can still attend
to its correct spelling. This module computes, per pair, the token x token matrices the model
consumes:

* ``lex_idx``   (B, L, L) uint8: the word similarity discretised to ``n_bins`` levels
  (``round(sim * (n_bins - 1))``), every sub-word token inheriting its word's value;
* ``lex_cross`` (B, L, L) bool: 1 iff both tokens are real (non-special, non-padding) tokens of
  *different* texts; the matrices are mirrored a <-> b.

Only the ``|W_a| x |W_b|`` word matrix is computed (with ``rapidfuzz.process.cdist``), and word
pairs are cached because product titles repeat the same words heavily. Every stage is a separate
function and the collator accumulates per-stage wall time, so the similarity cost can be
measured apart from tokenisation and from the model forward.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from rapidfuzz.distance import Levenshtein
from rapidfuzz.process import cdist
from transformers import BatchEncoding, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

DEFAULT_N_BINS = 50
DEFAULT_MAX_LENGTH = 64
DEFAULT_CACHE_SIZE = 200_000
METRICS = ("levenshtein", "jaccard")


# --------------------------------------------------------------------------------------------
# Word similarity
# --------------------------------------------------------------------------------------------


def jaccard_similarity(a: str, b: str, **_: Any) -> float:
    """Jaccard index of the two words' character *sets* (order- and count-blind).

    Accepts and ignores rapidfuzz's scorer keyword arguments so it can be passed as a scorer.
    """
    sa, sb = set(a), set(b)
    union = len(sa | sb)
    return len(sa & sb) / union if union else 1.0


def _levenshtein_matrix(words_a: Sequence[str], words_b: Sequence[str]) -> np.ndarray:
    # normalized_similarity = 1 - lev / max(len) with unit weights, exactly METHODS §2.2 step 3.
    return cdist(words_a, words_b, scorer=Levenshtein.normalized_similarity, dtype=np.float64, workers=1)


def _jaccard_matrix(words_a: Sequence[str], words_b: Sequence[str]) -> np.ndarray:
    sets_b = [set(w) for w in words_b]
    out = np.empty((len(words_a), len(words_b)), dtype=np.float64)
    for i, wa in enumerate(words_a):
        sa = set(wa)
        for j, sb in enumerate(sets_b):
            union = len(sa | sb)
            out[i, j] = len(sa & sb) / union if union else 1.0
    return out


_MATRIX_FUNCS: dict[str, Callable[[Sequence[str], Sequence[str]], np.ndarray]] = {
    "levenshtein": _levenshtein_matrix,
    "jaccard": _jaccard_matrix,
}


def _check_metric(metric: str) -> str:
    if metric not in _MATRIX_FUNCS:
        raise ValueError(f"unknown lexical metric {metric!r}; choose one of {METRICS}")
    return metric


class SimilarityCache:
    """Bounded, approximately-LRU map ``(word, word) -> similarity``, one per metric.

    Two generations of plain dicts: new entries and hits go to ``young``; when ``young`` holds
    half the budget it becomes ``old`` and the previous ``old`` is dropped. Entries used within
    the last half-budget of insertions therefore survive, like an LRU, but every operation is a
    plain dict operation (an ``OrderedDict.move_to_end`` per hit would cost more than the
    Levenshtein distance it saves). Keys are ordered pairs ``(min, max)``: both metrics are
    symmetric, which roughly doubles the hit rate.

    Measured on ~12-word titles (MiniLM tokenizer, 2 CPU threads): even fully warm, the per-pair
    Python lookups cost ~4x more than ``cdist`` recomputing every Levenshtein similarity in C++
    (0.42 vs 0.09 ms for 10 pairs), so the collator caches only the pure-Python Jaccard metric
    by default; pass ``cache_size`` to force it either way.
    """

    def __init__(self, maxsize: int = DEFAULT_CACHE_SIZE) -> None:
        if maxsize < 2:
            raise ValueError("SimilarityCache needs maxsize >= 2; pass cache_size=0 to disable caching")
        self.maxsize = int(maxsize)
        self._half = self.maxsize // 2
        self._young: dict[tuple[str, str], float] = {}
        self._old: dict[tuple[str, str], float] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._young) + len(self._old)

    def clear(self) -> None:
        self._young.clear()
        self._old.clear()
        self.hits = self.misses = 0

    def _put(self, key: tuple[str, str], value: float) -> None:
        self._young[key] = value
        if len(self._young) >= self._half:
            self._old = self._young
            self._young = {}

    def matrix(self, words_a: Sequence[str], words_b: Sequence[str], metric: str) -> np.ndarray:
        """Similarity matrix for two word lists, computing only the pairs not cached."""
        n_a, n_b = len(words_a), len(words_b)
        out = np.empty((n_a, n_b), dtype=np.float64)
        if n_a == 0 or n_b == 0:
            return out
        young, old = self._young, self._old
        miss_rows: set[int] = set()
        miss_cols: set[int] = set()
        values: list[float] = []
        for i, x in enumerate(words_a):
            for j, y in enumerate(words_b):
                key = (x, y) if x <= y else (y, x)
                v = young.get(key)
                if v is None:
                    v = old.get(key)
                    if v is None:
                        miss_rows.add(i)
                        miss_cols.add(j)
                        v = -1.0
                    else:
                        young[key] = v  # promote: recently used
                        if len(young) >= self._half:
                            self._old = old = young
                            self._young = young = {}
                values.append(v)
        out[:] = np.asarray(values, dtype=np.float64).reshape(n_a, n_b)
        n_missing = int((out < 0).sum())
        self.misses += n_missing
        self.hits += n_a * n_b - n_missing
        if n_missing:
            rows = sorted(miss_rows)
            cols = sorted(miss_cols)
            sub = _MATRIX_FUNCS[metric]([words_a[i] for i in rows], [words_b[j] for j in cols])
            out[np.ix_(rows, cols)] = sub
            for r, i in enumerate(rows):
                x = words_a[i]
                for c, j in enumerate(cols):
                    y = words_b[j]
                    self._put((x, y) if x <= y else (y, x), float(sub[r, c]))
        return out


def similarity_matrix(
    words_a: Sequence[str],
    words_b: Sequence[str],
    metric: str = "levenshtein",
    cache: SimilarityCache | None = None,
) -> np.ndarray:
    """``|words_a| x |words_b|`` word similarities in [0, 1] (float64)."""
    _check_metric(metric)
    if cache is not None:
        return cache.matrix(words_a, words_b, metric)
    if not words_a or not words_b:
        return np.empty((len(words_a), len(words_b)), dtype=np.float64)
    return _MATRIX_FUNCS[metric](words_a, words_b)


def discretise(sim: np.ndarray, n_bins: int = DEFAULT_N_BINS) -> np.ndarray:
    """Similarity in [0, 1] -> bin ``round(sim * (n_bins - 1))`` as uint8 (METHODS §2.2 step 4)."""
    if not 2 <= n_bins <= 255:
        raise ValueError("n_bins must be in [2, 255] (bins are stored as uint8)")
    return np.rint(np.clip(sim, 0.0, 1.0) * (n_bins - 1)).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Words of an encoded pair
# --------------------------------------------------------------------------------------------


@dataclass
class PairWords:
    """Words of one encoded pair and where their tokens sit.

    ``words_a`` / ``words_b`` are the *unique* normalised word strings of each text (a word that
    occurs twice shares a row); ``pos_a`` are the token positions of text a and ``word_of_a`` the
    index into ``words_a`` of each of those tokens (same for b).
    """

    words_a: list[str]
    words_b: list[str]
    pos_a: np.ndarray
    word_of_a: np.ndarray
    pos_b: np.ndarray
    word_of_b: np.ndarray


class WordPair(NamedTuple):
    """One cross-text word pair with its similarity and bin (for explanations)."""

    word_a: str
    word_b: str
    similarity: float
    bin: int


class _Normaliser:
    """The tokenizer's own normaliser (casing, accents) applied to a word, memoised."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, maxsize: int = 100_000) -> None:
        backend = getattr(tokenizer, "backend_tokenizer", None)
        self._norm = backend.normalizer if backend is not None else None
        self._memo: dict[str, str] = {}
        self._maxsize = maxsize

    def __call__(self, word: str) -> str:
        if self._norm is None:
            return word
        out = self._memo.get(word)
        if out is None:
            out = self._norm.normalize_str(word)
            if len(self._memo) >= self._maxsize:
                self._memo.clear()
            self._memo[word] = out
        return out


def extract_words(
    enc: BatchEncoding,
    k: int,
    text_a: str,
    text_b: str,
    normalise: Callable[[str], str] = lambda w: w,
) -> PairWords:
    """Words of example ``k`` of a batch encoding (METHODS §2.2 steps 1-2).

    A word is a maximal run of tokens with the same ``(sequence_id, word_id)``: the tokenizer's
    pre-tokenised words, punctuation split off. ``sequence_ids`` is used instead of
    ``token_type_ids`` because MPNet/RoBERTa have no meaningful token types. The word string
    is read from the original text through ``word_to_chars`` and normalised like the model sees
    it.
    """
    seq_ids = enc.sequence_ids(k)
    word_ids = enc.word_ids(k)
    texts = (text_a, text_b)
    words: tuple[list[str], list[str]] = ([], [])
    index: tuple[dict[str, int], dict[str, int]] = ({}, {})
    pos: tuple[list[int], list[int]] = ([], [])
    word_of: tuple[list[int], list[int]] = ([], [])
    prev: tuple[int, int] | None = None
    current = -1
    for t, (s, w) in enumerate(zip(seq_ids, word_ids, strict=True)):
        if s is None or w is None:
            prev = None
            continue
        if (s, w) != prev:
            span = enc.word_to_chars(k, w, sequence_index=s)
            word = normalise(texts[s][span.start : span.end])
            current = index[s].get(word, -1)
            if current < 0:
                current = len(words[s])
                index[s][word] = current
                words[s].append(word)
            prev = (s, w)
        pos[s].append(t)
        word_of[s].append(current)
    return PairWords(
        words_a=words[0],
        words_b=words[1],
        pos_a=np.asarray(pos[0], dtype=np.int64),
        word_of_a=np.asarray(word_of[0], dtype=np.int64),
        pos_b=np.asarray(pos[1], dtype=np.int64),
        word_of_b=np.asarray(word_of[1], dtype=np.int64),
    )


def fill_lexical(idx_out: np.ndarray, cross_out: np.ndarray, words: PairWords, bins: np.ndarray) -> None:
    """Write one example's token matrices in place (METHODS §2.2 step 5), mirrored a <-> b.

    ``bins`` is the ``|words_a| x |words_b|`` uint8 bin matrix; every token takes its word's row
    and column, so sub-words inherit the word's value. Same-text pairs, special tokens and
    padding stay 0 / False.
    """
    if words.pos_a.size == 0 or words.pos_b.size == 0:
        return
    block = bins[np.ix_(words.word_of_a, words.word_of_b)]
    ab = np.ix_(words.pos_a, words.pos_b)
    ba = np.ix_(words.pos_b, words.pos_a)
    idx_out[ab] = block
    idx_out[ba] = block.T
    cross_out[ab] = True
    cross_out[ba] = True


# --------------------------------------------------------------------------------------------
# Collator
# --------------------------------------------------------------------------------------------


@dataclass
class EncodedPair:
    """One tokenised pair before padding, with its word-similarity bins (LEA collators only).

    ``bins`` is the ``|words_a| x |words_b|`` uint8 matrix of :func:`discretise`; the L x L
    token matrices are built from it only when a batch is padded, so a cached pair costs a few
    hundred bytes instead of ``2 L^2``.
    """

    input_ids: np.ndarray
    texts: tuple[str, str] = ("", "")
    token_type_ids: np.ndarray | None = None
    words: PairWords | None = None
    bins: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


@dataclass
class LexicalBatch:
    """A collated batch: model inputs plus LEA's lexical matrices and optional labels."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    lex_idx: torch.Tensor
    lex_cross: torch.Tensor
    token_type_ids: torch.Tensor | None = None
    labels: torch.Tensor | None = None

    def model_inputs(self) -> dict[str, torch.Tensor]:
        """Keyword arguments for ``LeaCrossEncoder.forward`` (labels excluded)."""
        out = {
            "input_ids": self.input_ids,
            "attention_mask": self.attention_mask,
            "lex_idx": self.lex_idx,
            "lex_cross": self.lex_cross,
        }
        if self.token_type_ids is not None:
            out["token_type_ids"] = self.token_type_ids
        return out

    def to(self, device: torch.device | str, non_blocking: bool = False) -> LexicalBatch:
        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device, non_blocking=non_blocking)

        def move_optional(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else move(t)

        return LexicalBatch(
            input_ids=move(self.input_ids),
            attention_mask=move(self.attention_mask),
            lex_idx=move(self.lex_idx),
            lex_cross=move(self.lex_cross),
            token_type_ids=move_optional(self.token_type_ids),
            labels=move_optional(self.labels),
        )

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


@dataclass
class CollatorTimings:
    """Cumulative wall time per pre-processing stage, in seconds."""

    tokenize: float = 0.0
    words: float = 0.0
    similarity: float = 0.0
    matrices: float = 0.0
    batches: int = 0
    pairs: int = 0

    @property
    def total(self) -> float:
        return self.tokenize + self.words + self.similarity + self.matrices


Pair = tuple[str, str]


class LeaCollator:
    """Turns ``(text_a, text_b)`` pairs into a :class:`LexicalBatch` for ``LeaCrossEncoder``.

    Usable directly as a ``DataLoader`` ``collate_fn`` on items ``(a, b)`` or ``(a, b, label)``.
    ``cache_size``: word-pair cache entries; None picks 0 for Levenshtein (``cdist`` is cheaper
    than the lookups) and 200k for Jaccard.
    With ``lexical=False`` it only tokenises (the vanilla cross-encoder's collator, so both
    variants see byte-identical token ids). Not thread-safe (the caches and timings are shared);
    give each worker its own instance.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        max_length: int = DEFAULT_MAX_LENGTH,
        metric: str = "levenshtein",
        n_bins: int = DEFAULT_N_BINS,
        cache_size: int | None = None,
        padding: bool | str = "longest",
        lexical: bool = True,
    ) -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError("LEA needs a fast tokenizer (word_ids / sequence_ids / word_to_chars)")
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.metric = _check_metric(metric)
        self.n_bins = int(n_bins)
        discretise(np.zeros(1), self.n_bins)  # validates n_bins early
        if cache_size is None:  # see SimilarityCache: only worth it for the Python scorer
            cache_size = 0 if self.metric == "levenshtein" else DEFAULT_CACHE_SIZE
        self.cache = SimilarityCache(cache_size) if cache_size else None
        self.padding = padding
        self.lexical = lexical
        self.normalise = _Normaliser(tokenizer)
        self.timings = CollatorTimings()

    def reset_timings(self) -> None:
        self.timings = CollatorTimings()

    # -- stages, separately callable (and timed by __call__) ------------------------------------

    def tokenize(self, pairs: Sequence[Pair]) -> BatchEncoding:
        return self.tokenizer(
            [p[0] for p in pairs],
            [p[1] for p in pairs],
            truncation=True,
            max_length=self.max_length,
            padding=self.padding,
            return_tensors="pt",
        )

    def words(self, enc: BatchEncoding, pairs: Sequence[Pair]) -> list[PairWords]:
        return [extract_words(enc, k, a, b, self.normalise) for k, (a, b, *_) in enumerate(pairs)]

    def similarities(self, words: Iterable[PairWords]) -> list[np.ndarray]:
        """Word similarity matrices (float, unique words) of each example."""
        return [similarity_matrix(w.words_a, w.words_b, self.metric, self.cache) for w in words]

    def matrices(
        self, seq_len: int, words: Sequence[PairWords], sims: Sequence[np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(IDX uint8, CROSS bool)`` arrays of shape (B, L, L)."""
        idx = np.zeros((len(words), seq_len, seq_len), dtype=np.uint8)
        cross = np.zeros((len(words), seq_len, seq_len), dtype=bool)
        for k, (w, s) in enumerate(zip(words, sims, strict=True)):
            fill_lexical(idx[k], cross[k], w, discretise(s, self.n_bins))
        return idx, cross

    # -- the collate function --------------------------------------------------------------------

    def encode(self, pairs: Sequence[Any]) -> list[EncodedPair]:
        """Tokenise pairs *without padding* and compute their word-similarity bins.

        The result depends on each pair alone, so it can be computed once per dataset and
        padded into any batch by :meth:`pad` (training re-batches the same pairs every epoch).
        """
        pairs = list(pairs)
        if not pairs:
            return []
        clock = time.perf_counter
        t0 = clock()
        enc = self.tokenizer([p[0] for p in pairs], [p[1] for p in pairs], truncation=True, max_length=self.max_length)
        t1 = clock()
        types = enc.get("token_type_ids")
        words: list[PairWords | None] = [None] * len(pairs)
        bins: list[np.ndarray | None] = [None] * len(pairs)
        if self.lexical:
            found = self.words(enc, pairs)
            t2 = clock()
            for k, sim in enumerate(self.similarities(found)):
                words[k], bins[k] = found[k], discretise(sim, self.n_bins)
            t3 = clock()
        else:
            t2 = t3 = t1
        tm = self.timings
        tm.tokenize += t1 - t0
        tm.words += t2 - t1
        tm.similarity += t3 - t2
        return [
            EncodedPair(
                input_ids=np.asarray(enc["input_ids"][k], dtype=np.int64),
                texts=(pairs[k][0], pairs[k][1]),
                token_type_ids=None if types is None else np.asarray(types[k], dtype=np.int64),
                words=words[k],
                bins=bins[k],
            )
            for k in range(len(pairs))
        ]

    def pad(
        self, items: Sequence[EncodedPair], labels: Sequence[float] | None = None, multiple_of: int = 1
    ) -> LexicalBatch:
        """Right-pad encoded pairs to the longest one in the batch and build the L x L matrices.

        ``multiple_of`` rounds that length up (never past ``max_length`` unless an item is longer):
        inference pads to a multiple of 8 so the matmul shapes repeat and oneDNN's compiled kernels
        are reused instead of built for each new length.
        """
        if not items:
            raise ValueError("cannot pad an empty batch")
        if multiple_of < 1:
            raise ValueError(f"multiple_of must be >= 1, got {multiple_of}")
        t0 = time.perf_counter()
        n, longest = len(items), max(len(it) for it in items)
        seq_len = max(longest, min(-(-longest // multiple_of) * multiple_of, self.max_length))
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        input_ids = np.full((n, seq_len), pad_id, dtype=np.int64)
        attention = np.zeros((n, seq_len), dtype=np.int64)
        with_types = items[0].token_type_ids is not None
        types = np.full((n, seq_len), self.tokenizer.pad_token_type_id, dtype=np.int64) if with_types else None
        idx = np.zeros((n, seq_len, seq_len), dtype=np.uint8)
        cross = np.zeros((n, seq_len, seq_len), dtype=bool)
        for k, it in enumerate(items):
            length = len(it)
            input_ids[k, :length] = it.input_ids
            attention[k, :length] = 1
            if types is not None and it.token_type_ids is not None:
                types[k, :length] = it.token_type_ids
            if it.words is not None and it.bins is not None:
                fill_lexical(idx[k], cross[k], it.words, it.bins)
        tm = self.timings
        tm.matrices += time.perf_counter() - t0
        tm.batches += 1
        tm.pairs += n
        return LexicalBatch(
            input_ids=torch.from_numpy(input_ids),
            attention_mask=torch.from_numpy(attention),
            token_type_ids=None if types is None else torch.from_numpy(types),
            lex_idx=torch.from_numpy(idx),
            lex_cross=torch.from_numpy(cross),
            labels=None if labels is None else torch.as_tensor(labels, dtype=torch.float32),
        )

    def __call__(self, pairs: Sequence[Any], labels: Sequence[float] | None = None) -> LexicalBatch:
        pairs = list(pairs)
        if labels is None and pairs and len(pairs[0]) == 3:
            labels = [p[2] for p in pairs]
        return self.pad(self.encode(pairs), labels)

    # -- explanations ----------------------------------------------------------------------------

    def word_pairs(self, text_a: str, text_b: str) -> list[WordPair]:
        """All cross-text word pairs of the (truncated) pair, most similar first."""
        enc = self.tokenizer(text_a, text_b, truncation=True, max_length=self.max_length)
        words = extract_words(enc, 0, text_a, text_b, self.normalise)
        sim = similarity_matrix(words.words_a, words.words_b, self.metric, self.cache)
        bins = discretise(sim, self.n_bins)
        out = [
            WordPair(wa, wb, float(sim[i, j]), int(bins[i, j]))
            for i, wa in enumerate(words.words_a)
            for j, wb in enumerate(words.words_b)
        ]
        out.sort(key=lambda p: (-p.similarity, p.word_a, p.word_b))
        return out


def top_word_pairs(
    tokenizer_or_collator: PreTrainedTokenizerBase | LeaCollator,
    text_a: str,
    text_b: str,
    top: int = 5,
    metric: str = "levenshtein",
    max_length: int = DEFAULT_MAX_LENGTH,
    n_bins: int = DEFAULT_N_BINS,
) -> list[WordPair]:
    """The ``top`` most similar cross-text word pairs of one example (for explanations).

    Pass a :class:`LeaCollator` to reuse its cache and settings; with a tokenizer a throw-away
    collator is built from ``metric``, ``max_length`` and ``n_bins``.
    """
    if isinstance(tokenizer_or_collator, LeaCollator):
        collator = tokenizer_or_collator
    else:
        collator = LeaCollator(tokenizer_or_collator, max_length=max_length, metric=metric, n_bins=n_bins)
    return collator.word_pairs(text_a, text_b)[: max(0, top)]
