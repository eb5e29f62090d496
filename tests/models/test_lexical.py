"""LEA pre-processing: word similarity, bins, token matrices (METHODS §2.2)."""

from __future__ import annotations

import numpy as np
import pytest
from rapidfuzz.distance import Levenshtein
from transformers import AutoTokenizer

from models.backbones import minilm_path
from models.lexical import (
    LeaCollator,
    SimilarityCache,
    discretise,
    jaccard_similarity,
    similarity_matrix,
    top_word_pairs,
)

PAIRS = [
    ("Micrwave oven 20L stainless steel", "Microwave Oven 20 L"),
    ("apple ipad air 64gb", "Samsung galaxy tab s9 wifi 128 gb grey"),
]


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(minilm_path())


@pytest.fixture()
def collator(tokenizer):
    return LeaCollator(tokenizer, max_length=64)


def _token_positions(tokenizer, enc, k: int, seq: int, word: str) -> list[int]:
    """Token positions in example k / text seq whose word (normalised) equals `word`."""
    out = []
    texts = PAIRS[k]
    for t, (s, w) in enumerate(zip(enc.sequence_ids(k), enc.word_ids(k), strict=True)):
        if s != seq or w is None:
            continue
        span = enc.word_to_chars(k, w, sequence_index=s)
        if texts[s][span.start : span.end].lower() == word:
            out.append(t)
    return out


def test_cross_only_on_real_cross_text_tokens_and_symmetric(collator):
    batch = collator(PAIRS)
    enc = collator.tokenize(PAIRS)
    b, seq = batch.input_ids.shape
    assert batch.lex_idx.shape == (b, seq, seq) and batch.lex_idx.dtype.is_floating_point is False
    assert batch.lex_cross.dtype.is_floating_point is False
    cross = batch.lex_cross.numpy()
    idx = batch.lex_idx.numpy()
    assert cross.shape[0] == 2 and batch.attention_mask[0].sum() < seq  # example 0 is padded
    for k in range(b):
        sids = np.array([-1 if s is None else s for s in enc.sequence_ids(k)])
        expected = (sids[:, None] >= 0) & (sids[None, :] >= 0) & (sids[:, None] != sids[None, :])
        np.testing.assert_array_equal(cross[k], expected)
        np.testing.assert_array_equal(cross[k], cross[k].T)
        np.testing.assert_array_equal(idx[k], idx[k].T)
        assert not idx[k][~cross[k]].any()  # no bin outside cross entries
        pad = batch.attention_mask[k].numpy() == 0
        assert not cross[k][pad].any() and not cross[k][:, pad].any()


def test_subwords_inherit_their_words_bin(tokenizer, collator):
    batch = collator(PAIRS)
    enc = collator.tokenize(PAIRS)
    typo = _token_positions(tokenizer, enc, 0, 0, "micrwave")
    right = _token_positions(tokenizer, enc, 0, 1, "microwave")
    assert len(typo) > 1, "micrwave should be split into several sub-words"
    expected = int(discretise(np.array(Levenshtein.normalized_similarity("micrwave", "microwave"))))
    block = batch.lex_idx[0].numpy()[np.ix_(typo, right)]
    assert (block == expected).all()
    assert expected >= 40  # a one-letter typo stays very similar


def test_identical_and_unrelated_words(tokenizer, collator):
    batch = collator(PAIRS)
    enc = collator.tokenize(PAIRS)
    oven_a = _token_positions(tokenizer, enc, 0, 0, "oven")
    oven_b = _token_positions(tokenizer, enc, 0, 1, "oven")  # "Oven": casing normalised away
    assert batch.lex_idx[0, oven_a[0], oven_b[0]] == 49
    apple = _token_positions(tokenizer, enc, 1, 0, "apple")
    samsung = _token_positions(tokenizer, enc, 1, 1, "samsung")
    assert batch.lex_idx[1, apple[0], samsung[0]] <= 10


def test_discretise_bins():
    np.testing.assert_array_equal(discretise(np.array([0.0, 1.0, 0.5]), 50), [0, 49, 24])
    assert discretise(np.array([1.0]), 25)[0] == 24
    with pytest.raises(ValueError):
        discretise(np.array([0.5]), 300)


def test_cache_reuses_word_pairs(tokenizer):
    col = LeaCollator(tokenizer, cache_size=1000)
    first = col(PAIRS)
    misses, hits = col.cache.misses, col.cache.hits
    assert misses > 0
    second = col(PAIRS)
    assert col.cache.misses == misses  # nothing recomputed
    assert col.cache.hits > hits
    assert (first.lex_idx == second.lex_idx).all()
    uncached = LeaCollator(tokenizer, cache_size=0)(PAIRS)
    assert (uncached.lex_idx == first.lex_idx).all()


def test_cache_is_bounded_and_symmetric():
    cache = SimilarityCache(maxsize=8)
    words = [f"w{i}" for i in range(10)]
    m = cache.matrix(words[:5], words[5:], "levenshtein")
    assert len(cache) < 8
    np.testing.assert_allclose(m, similarity_matrix(words[:5], words[5:]))
    small = SimilarityCache(maxsize=100)
    small.matrix(["abc"], ["abd"], "levenshtein")
    small.matrix(["abd"], ["abc"], "levenshtein")  # same unordered pair
    assert small.misses == 1 and small.hits == 1


def test_jaccard_option(tokenizer):
    assert jaccard_similarity("listen", "silent") == 1.0
    assert jaccard_similarity("abc", "xyz") == 0.0
    pairs = [("listen", "silent")]
    jac = LeaCollator(tokenizer, metric="jaccard")(pairs)
    lev = LeaCollator(tokenizer, metric="levenshtein")(pairs)
    assert jac.lex_idx.max() == 49
    assert lev.lex_idx.max() < 49
    with pytest.raises(ValueError):
        LeaCollator(tokenizer, metric="soundex")
    # default caching: only for the pure-Python metric (cdist beats dict lookups for Levenshtein)
    assert LeaCollator(tokenizer, metric="jaccard").cache is not None
    assert LeaCollator(tokenizer).cache is None


def test_labels_and_token_types(collator):
    batch = collator([(a, b, float(i)) for i, (a, b) in enumerate(PAIRS)])
    assert batch.labels.tolist() == [0.0, 1.0]
    assert batch.token_type_ids is not None
    assert set(batch.model_inputs()) == {
        "input_ids",
        "attention_mask",
        "token_type_ids",
        "lex_idx",
        "lex_cross",
    }


def test_timings_accumulate(collator):
    collator(PAIRS)
    collator(PAIRS)
    t = collator.timings
    assert t.batches == 2 and t.pairs == 4
    assert t.similarity > 0 and t.tokenize > 0 and t.total >= t.similarity


def test_top_word_pairs(tokenizer):
    top = top_word_pairs(tokenizer, *PAIRS[0], top=3)
    assert len(top) == 3
    assert top[0].similarity == 1.0 and top[0].bin == 49
    assert [p.similarity for p in top] == sorted((p.similarity for p in top), reverse=True)
    assert ("micrwave", "microwave") in {(p.word_a, p.word_b) for p in top_word_pairs(tokenizer, *PAIRS[0])}


def test_slow_tokenizer_refused():
    class Slow:
        is_fast = False

    with pytest.raises(ValueError):
        LeaCollator(Slow())  # type: ignore[arg-type]
