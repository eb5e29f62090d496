"""Cost of hybrid blocking's lexicon at catalogue scale: build time, memory, BM25 query latency.

The service builds one BM25 inverted index (models.bm25.LiveBM25) over every product's embedded
text at start-up and keeps it in step with the change log (app/search/lexicon.py). This measures that
build on generated catalogues (benchmarks/catalogue_gen.py) without the database read, its
resident memory, and the per-query cost of the lexical channel: the BM25 top-50 search over the
whole catalogue, and the BM25 re-scoring of a 250-candidate pool.

The top-50 search is timed four ways on the same index, interleaved per query, and all four
must return the same ids: as served (`LiveBM25.top`: a whole scan for queries with few
postings, MaxScore for the others), MaxScore forced, the whole scan forced (the served search
before issue 18 item 2: every posting scored, partial selection at the 50th score), and the
full sort of every hit (before 2026-12-05).

    .venv/bin/python benchmarks/bench_lexicon.py --sizes 100000,1000000 --queries 200
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from benchmarks.catalogue_gen import catalogue, offer_for  # noqa: E402
from benchmarks.common import machine, percentile, rss_mb, write_result  # noqa: E402
from models.bm25 import LiveBM25, pool_scores, tokenize  # noqa: E402
from models.bm25_base import warm_up  # noqa: E402
from models.product_text import embed_text  # noqa: E402

logger = logging.getLogger("bench_lexicon")


def top_full_sort(bm25: LiveBM25, query: str, m: int) -> list[int]:
    """The top ``m`` ids by sorting every hit (the selection before 2026-12-05), no delta."""
    summed = bm25.base_scores(query)
    hit = np.flatnonzero(summed > 0)
    scores = summed[hit].astype(np.float32)
    ids = bm25._base_ids[hit]
    return ids[np.lexsort((ids, -scores))[:m]].tolist()


def measure(size: int, n_queries: int, seed: int) -> dict[str, Any]:
    products = list(catalogue(size))
    texts = [embed_text(p) for p in products]
    gc.collect()
    before = rss_mb(os.getpid()) or 0.0
    started = time.perf_counter()
    bm25 = LiveBM25(list(range(size)), texts)
    build_s = time.perf_counter() - started
    gc.collect()
    after = rss_mb(os.getpid()) or 0.0
    rng = random.Random(seed)
    offers = [offer_for(products[rng.randrange(size)], rng) for _ in range(n_queries)]
    queries = [embed_text(o) for o in offers]
    # Paths are forced through the base's switch (the index is too big at 1M to build twice).
    served_switch = bm25._base.scan_postings
    warm_up()  # the MaxScore kernel compiles once per machine (cached on disk), never in a timing

    def timed(scan_postings: int, q: str) -> tuple[list[int], float]:
        bm25._base.scan_postings = scan_postings
        t = time.perf_counter()
        ids = bm25.top(q, 50)[0]
        elapsed = (time.perf_counter() - t) * 1000
        bm25._base.scan_postings = served_switch
        return ids, elapsed

    times: dict[str, list[float]] = {"served": [], "maxscore": [], "scan": [], "full_sort": []}
    postings: list[int] = []
    for q in queries:
        got, ms = timed(served_switch, q)
        times["served"].append(ms)
        pruned, ms = timed(-1, q)
        times["maxscore"].append(ms)
        scanned, ms = timed(2**62, q)
        times["scan"].append(ms)
        t = time.perf_counter()
        ref = top_full_sort(bm25, q, 50)
        times["full_sort"].append((time.perf_counter() - t) * 1000)
        if not got == pruned == scanned == ref:
            raise AssertionError(f"the top-50 searches differ for {q!r}")
        tids = bm25._query(q)[1].tids
        postings.append(int((bm25._base.postings.indptr[tids + 1] - bm25._base.postings.indptr[tids]).sum()))
    pool_ms: list[float] = []
    indexed_ms: list[float] = []
    for q in queries:
        pool_ids = [rng.randrange(size) for _ in range(250)]
        pool = [tokenize(texts[i]) for i in pool_ids]
        t = time.perf_counter()
        from_tokens = pool_scores(q, pool, bm25.stats)
        pool_ms.append((time.perf_counter() - t) * 1000)
        # What hybrid blocking does now: the candidates' scores from the index, no text read.
        t = time.perf_counter()
        from_index = bm25.scores_for(q, pool_ids)
        indexed_ms.append((time.perf_counter() - t) * 1000)
        if from_index.tolist() != from_tokens.tolist():
            raise AssertionError(f"scores_for and pool_scores differ for {q!r}")
    return {
        "products": size,
        "terms": len(bm25.stats.df),
        "build_s": round(build_s, 2),
        "rss_added_mb": round(after - before, 1),
        "bytes_per_product": round((after - before) * 2**20 / size, 1),
        "postings_per_query_p50": int(np.median(postings)),
        **{
            f"bm25_top50_{name}_ms": {"p50": round(percentile(v, 50), 3), "p99": round(percentile(v, 99), 3)}
            for name, v in times.items()
        },
        "pool250_rescore_ms": {"p50": round(percentile(pool_ms, 50), 3), "p99": round(percentile(pool_ms, 99), 3)},
        "pool250_scores_for_ms": {
            "p50": round(percentile(indexed_ms, 50), 3),
            "p99": round(percentile(indexed_ms, 99), 3),
        },
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="100000,1000000")
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--name", default="lexicon", help="results file name (benchmarks/results/NAME.json)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    result: dict[str, Any] = {"settings": vars(args), "machine": machine(), "runs": []}
    for size in (int(s) for s in args.sizes.split(",")):
        run = measure(size, args.queries, args.seed)
        logger.info("%s", run)
        result["runs"].append(run)
    result["loadavg_at_end"] = os.getloadavg()
    logger.info("wrote %s", write_result(args.name, result))


if __name__ == "__main__":
    main()
