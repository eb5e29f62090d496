from __future__ import annotations

import math
import random

import numpy as np
import pytest

from models.bm25 import BM25, LiveBM25, TermStats, pool_scores, tokenize

CORPUS = [
    "Sony WH-1000XM4 wireless headphones black",
    "Sony WH-1000XM3 wireless headphones",
    "Bose QuietComfort 45 headphones",
    "Logitech MX Master 3 mouse",
    "Logitech M185 wireless mouse grey",
]


def test_tokenize_keeps_compounds_glued_and_split() -> None:
    tokens = tokenize("Sony WH-1000XM4 (black) 2.4GHz a/b")
    assert tokens[:6] == ["sony", "wh", "1000xm4", "black", "2", "4ghz"]
    assert "wh1000xm4" in tokens and "24ghz" in tokens and "ab" in tokens


def test_matrix_and_pool_scorers_agree() -> None:
    bm = BM25(CORPUS)
    queries = ["sony wh1000xm4 headphones", "wireless mouse", "nothing shared here"]
    matrix = bm.scores(queries)
    for q, query in enumerate(queries):
        np.testing.assert_allclose(pool_scores(query, CORPUS, bm.stats), matrix[q], rtol=1e-5)
        # Pre-tokenised documents give the same numbers as texts.
        np.testing.assert_allclose(pool_scores(query, [tokenize(d) for d in CORPUS], bm.stats), matrix[q], rtol=1e-5)
    assert not matrix[2].any()


def test_scores_match_the_textbook_formula() -> None:
    stats = TermStats.from_texts(CORPUS)
    doc = tokenize(CORPUS[3])
    k1, b = 1.2, 0.75
    expected = 0.0
    for term in ("logitech", "mouse"):
        df = sum(term in tokenize(d) for d in CORPUS)
        idf = math.log(1 + (len(CORPUS) - df + 0.5) / (df + 0.5))
        tf = doc.count(term)
        expected += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(doc) / stats.avg_len))
    assert pool_scores("logitech mouse mouse", [CORPUS[3]], stats)[0] == pytest.approx(expected, rel=1e-5)


def test_rare_terms_outweigh_common_ones_and_unknown_terms_count_as_rarest() -> None:
    stats = TermStats.from_texts(CORPUS)
    idf = stats.idf(["headphones", "bose", "never-seen-before"])
    assert idf[0] < idf[1] < idf[2]


def test_bad_parameters_and_empty_inputs() -> None:
    with pytest.raises(ValueError):
        BM25(CORPUS, b=1.5)
    stats = TermStats.from_texts(CORPUS)
    assert pool_scores("", CORPUS, stats).tolist() == [0.0] * len(CORPUS)
    assert pool_scores("sony", [], stats).size == 0
    assert TermStats().avg_len == 1.0


def _same(live: LiveBM25, fresh: LiveBM25, queries: list[str]) -> None:
    assert live.stats.n_docs == fresh.stats.n_docs and live.stats.total_len == fresh.stats.total_len
    assert +live.stats.df == +fresh.stats.df  # unary + drops the zero counts removals leave
    for query in queries:
        ids, scores = live.top(query, 10)
        fresh_ids, fresh_scores = fresh.top(query, 10)
        assert ids == fresh_ids
        np.testing.assert_allclose(scores, fresh_scores, rtol=1e-6)


def test_live_index_equals_a_fresh_build_after_changes() -> None:
    live = LiveBM25(list(range(len(CORPUS))), CORPUS)
    queries = ["sony wireless headphones", "logitech mouse", "bose", "apple airpods"]
    _same(live, LiveBM25(list(range(len(CORPUS))), CORPUS), queries)
    live.upsert(1, "Sony WH-1000XM5 wireless headphones silver")  # replace a base document
    live.remove(3)
    live.upsert(10, "Apple AirPods Pro wireless")  # a new one
    live.upsert(10, "Apple AirPods Pro 2 wireless earbuds")  # and replace it again
    live.remove(99)  # absent: no-op
    docs = {0: CORPUS[0], 1: "Sony WH-1000XM5 wireless headphones silver", 2: CORPUS[2], 4: CORPUS[4]}
    docs[10] = "Apple AirPods Pro 2 wireless earbuds"
    _same(live, LiveBM25(list(docs), list(docs.values())), queries)
    assert len(live) == 5 and live.delta_size == 4  # rows 1 and 3 masked, 1 and 10 in the delta
    assert 3 not in live.top("logitech mx master", 10)[0]


def test_live_top_is_the_matrix_ranking() -> None:
    bm = BM25(CORPUS)
    live = LiveBM25(list(range(len(CORPUS))), CORPUS)
    for query in ["wireless headphones", "logitech", "nothing shared"]:
        row = bm.scores([query])[0]
        expected = [i for i in np.argsort(-row, kind="stable") if row[i] > 0][:2]
        ids, scores = live.top(query, 2)
        assert ids == expected
        np.testing.assert_allclose(scores, row[expected], rtol=1e-6)
    assert len(live.top("logitech", 10)[0]) == 2  # only documents sharing a word


def test_live_index_matches_pool_scores_and_breaks_ties_by_id() -> None:
    live = LiveBM25([5, 3, 9], ["red shoe", "red shoe", "blue hat"])
    ids, scores = live.top("red shoe", 5)
    assert ids == [3, 5] and scores[0] == scores[1]
    np.testing.assert_allclose(scores, pool_scores("red shoe", ["red shoe", "red shoe"], live.stats), rtol=1e-6)
    assert live.top("", 5) == ([], []) and live.top("red", 0) == ([], [])
    with pytest.raises(ValueError, match="unique"):
        LiveBM25([1, 1], ["a", "b"])


def _skewed_catalogue(rng: random.Random, n: int) -> list[str]:
    """Titles like a real catalogue: a few frequent brands / types, many rare model codes."""
    brands = ["sony", "samsung", "lg", "apple", "canon"]
    kinds = ["tv", "camera", "phone", "headphones", "laptop", "speaker"]
    return [
        f"{rng.choice(brands)} {rng.choice(kinds)} {rng.choice('abcdefgh')}{rng.randint(1, 400)}"
        + (" black" if rng.random() < 0.5 else "")
        + (f" {rng.choice(kinds)}" if rng.random() < 0.2 else "")
        for _ in range(n)
    ]


def _reference(live: LiveBM25, current: dict[int, str], query: str, m: int) -> tuple[list[int], list[float]]:
    """Score every current document with pool_scores and sort by (float32 score desc, id asc)."""
    ids_all = np.fromiter(current, dtype=np.int64)
    every = pool_scores(query, list(current.values()), live.stats)
    order = np.lexsort((ids_all, -every))
    order = order[every[order] > 0][:m]
    return ids_all[order].tolist(), every[order].astype(float).tolist()


# (-1, s): every query goes to MaxScore, its threshold seeded by s postings; 10**9: scanned whole.
@pytest.mark.parametrize(("scan_postings", "seed_postings"), [(-1, 0), (-1, 500), (10**9, 0)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_top_equals_sorting_every_document_while_the_catalogue_changes(
    seed: int, scan_postings: int, seed_postings: int
) -> None:
    """top() prunes (or sorts only what can reach the top m): it must equal scoring everything.

    Same ids, ties included, and bit-identical scores, before and after the statistics change.
    """
    rng = random.Random(seed)
    texts = _skewed_catalogue(rng, 3000)
    current = dict(enumerate(texts))
    live = LiveBM25(list(current), texts, scan_postings=scan_postings, seed_postings=seed_postings)
    queries = [*rng.sample(texts, 8), "sony tv", "black", "unknownword", "a12 sony black camera", "lg lg tv black b7"]
    for round_ in range(3):
        for q in queries:
            for m in (1, 5, 50):
                assert live.top(q, m) == _reference(live, current, q, m), (round_, q, m)
        for doc in rng.sample(sorted(current), 300):  # change the statistics between rounds
            live.remove(doc)
            del current[doc]
        for k in range(200):
            doc = 10_000 + 1000 * round_ + k
            current[doc] = rng.choice(texts)
            live.upsert(doc, current[doc])


def test_maxscore_prunes_and_keeps_ties_by_id() -> None:
    rng = random.Random(3)
    texts = _skewed_catalogue(rng, 4000)
    # 300 identical documents under shuffled ids: the top 5 are the 5 smallest of those ids.
    twins = rng.sample(range(100_000, 200_000), 300)
    ids = list(range(len(texts))) + twins
    live = LiveBM25(ids, texts + ["canon camera z999 black"] * len(twins), scan_postings=-1, seed_postings=0)
    got, scores = live.top("canon camera z999 black", 5)
    assert got == sorted(twins)[:5] and len(set(scores)) == 1
    # The kernel leaves far fewer rows to rescore than the query's words have documents.
    q = live._query("sony tv a12 black")[1]
    rows, _ = live._base.top_rows(q, 10)
    hits = np.count_nonzero(live.base_scores("sony tv a12 black"))
    assert len(rows) < hits / 4, (len(rows), hits)


def test_scores_for_is_what_top_and_pool_scores_give() -> None:
    live = LiveBM25(list(range(len(CORPUS))), CORPUS, scan_postings=-1)
    live.upsert(7, "Sony WH-1000XM5 wireless headphones silver")
    live.remove(2)
    query = "sony wireless headphones silver"
    ids, top_scores = live.top(query, 10)
    got = live.scores_for(query, [*ids, 2, 99])
    assert got[: len(ids)].tolist() == top_scores  # bit-identical, base and delta alike
    assert np.isnan(got[-2:]).all()  # removed, never indexed
    texts = {0: CORPUS[0], 1: CORPUS[1], 7: "Sony WH-1000XM5 wireless headphones silver"}
    assert live.scores_for(query, list(texts)).tolist() == pool_scores(query, list(texts.values()), live.stats).tolist()


@pytest.mark.parametrize("seed_postings", [0, 200])
@pytest.mark.parametrize("seed", [0, 1])
def test_maxscore_is_exact_where_scores_crowd_the_threshold(seed: int, seed_postings: int) -> None:
    """A small vocabulary, repeated words and varied lengths: many documents score close to the
    m-th best, so any bound that prunes too much changes the ids."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(30)]
    weights = [1.0 / (i + 1) for i in range(30)]
    texts = [" ".join(rng.choices(words, weights, k=rng.randint(1, 12))) for _ in range(3000)]
    current = dict(enumerate(texts))
    live = LiveBM25(list(current), texts, scan_postings=-1, seed_postings=seed_postings)
    for doc in rng.sample(sorted(current), 200):
        live.remove(doc)
        del current[doc]
    for k in range(100):
        current[5000 + k] = rng.choice(texts)
        live.upsert(5000 + k, current[5000 + k])
    for _ in range(40):
        query = " ".join(rng.sample(words, rng.randint(2, 8)))
        for m in (1, 10, 100):
            assert live.top(query, m) == _reference(live, current, query, m), (query, m)
