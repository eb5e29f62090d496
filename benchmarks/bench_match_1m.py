"""End-to-end /v1/match latency on a 1M-product catalogue (issue 7).

Embedding a million generated titles takes about an hour on 2 cores, so the catalogue is padded:
the 100k catalogue left by bench_ingest.py (real MiniLM vectors) is copied and extended with
variants of its products (title + a variant tag, a vector = the source product's vector plus
Gaussian noise, re-normalised), written straight into the database with their index-log rows.
The variants sit right next to their source products in the vector space, i.e. they are hard
distractors for the index, not an easy background. Offers are noisy rewrites of the real 100k
products. The server then starts on the padded catalogue (building the index from the database,
timed) and answers sequential requests and an open-loop rate sweep.

    .venv/bin/python benchmarks/bench_match_1m.py --size 1000000 --kinds ivfpq,flat
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_match_capacity import step  # noqa: E402
from benchmarks.bench_match_load import serve  # noqa: E402
from benchmarks.catalogue_gen import catalogue, offer_for  # noqa: E402
from benchmarks.common import OUT, add_env_option, machine, parse_env, peak_rss_mb, percentile, rss_mb, write_result  # noqa: E402
from benchmarks.loadgen import run_load  # noqa: E402

PRODUCT_COLUMNS = (
    "title, brand, brand_norm, category, category_norm, price, currency, description, image_urls, "
    "attributes, source, content_hash, text_hash, created_at, updated_at"
)


def pad_catalogue(src: Path, dst: Path, size: int, noise: float, seed: int) -> dict[str, Any]:
    """Copy ``src`` (a bench_ingest catalogue folder) to ``dst`` and pad it to ``size`` products."""
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    started = time.perf_counter()
    with sqlite3.connect(src / "productmatch.db") as a, sqlite3.connect(dst / "productmatch.db") as b:
        a.backup(b)
    con = sqlite3.connect(dst / "productmatch.db")
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    model_id = con.execute(
        "SELECT model_id FROM product_embeddings GROUP BY model_id ORDER BY COUNT(*) DESC LIMIT 1"
    ).fetchone()[0]
    base_ids = np.array([r[0] for r in con.execute("SELECT id FROM products ORDER BY id")], dtype=np.int64)
    n_base = len(base_ids)
    rng = np.random.default_rng(seed)
    replica = 0
    bar = tqdm(total=size - n_base, desc="padding", unit="product")
    while n_base * (replica + 1) < size:
        replica += 1
        take = min(n_base, size - n_base * replica)
        chosen = base_ids[:take]
        for lo in range(0, take, 20_000):
            chunk = chosen[lo : lo + 20_000]
            marks = ",".join("?" * len(chunk))
            first_new = con.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM products").fetchone()[0]
            con.execute(
                f"INSERT INTO products (external_id, {PRODUCT_COLUMNS}) "
                f"SELECT external_id || '-v{replica}', title || ' V{replica}', "
                f"{PRODUCT_COLUMNS.split(', ', 1)[1]} FROM products WHERE id IN ({marks}) ORDER BY id",
                [int(i) for i in chunk],
            )
            rows = con.execute(
                f"SELECT product_id, text_hash, vector FROM product_embeddings WHERE model_id = ? "
                f"AND product_id IN ({marks}) ORDER BY product_id",
                [model_id, *(int(i) for i in chunk)],
            ).fetchall()
            vectors = np.stack([np.frombuffer(r[2], dtype=np.float32) for r in rows])
            vectors = vectors + rng.normal(0.0, noise / np.sqrt(vectors.shape[1]), vectors.shape).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            new_ids = range(first_new, first_new + len(rows))
            con.executemany(
                "INSERT INTO product_embeddings (product_id, model_id, text_hash, vector) VALUES (?, ?, ?, ?)",
                [(pid, model_id, r[1], v.tobytes()) for pid, r, v in zip(new_ids, rows, vectors)],
            )
            con.executemany(
                "INSERT INTO index_changes (product_id, op, created_at) VALUES (?, 'u', CURRENT_TIMESTAMP)",
                [(pid,) for pid in new_ids],
            )
            con.commit()
            bar.update(len(rows))
    bar.close()
    total = con.execute("SELECT COUNT(*) FROM products").fetchone()[0]
    con.close()
    return {
        "products": total,
        "real": n_base,
        "padded": total - n_base,
        "seconds": round(time.perf_counter() - started, 1),
    }


def sequential(base: str, offers: list[dict], k: int, n: int) -> dict[str, Any]:
    res = run_load(base, "/v1/match", lambda i: {"offer": offers[i], "top_k": k}, 1, n, 600.0)
    return {
        "k": k,
        "requests": len(res.latencies_ms),
        "errors": res.errors,
        "p50_ms": round(percentile(res.latencies_ms, 50), 1),
        "p99_ms": round(percentile(res.latencies_ms, 99), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source-size", type=int, default=100_000, help="bench_ingest catalogue to pad")
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--kinds", default="ivfpq,flat", help="index kinds to serve, one server each")
    parser.add_argument("--noise", type=float, default=0.3, help="norm of the noise added to variant vectors")
    parser.add_argument("--requests", type=int, default=200, help="sequential requests per k")
    parser.add_argument("--rates", type=lambda s: [float(x) for x in s.split(",")], default=[5, 10, 15, 20])
    parser.add_argument("--step-seconds", type=float, default=20.0)
    parser.add_argument("--port", type=int, default=8771)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="match_1m", help="results file benchmarks/results/<name>.json")
    parser.add_argument(
        "--blocking",
        default="hybrid",
        help="comma list of hybrid (BM25 + dense, the default) and dense (BLOCKING_LEXICAL_WEIGHT=0), one server each",
    )
    add_env_option(parser, "server setting, repeatable (e.g. SCORER=zero-shot, PRECISION=bf16)")
    args = parser.parse_args()
    server_env = parse_env(args.env)
    blockings = {"hybrid": {}, "dense": {"BLOCKING_LEXICAL_WEIGHT": "0"}}
    unknown = set(args.blocking.split(",")) - set(blockings)
    if unknown:
        raise SystemExit(f"--blocking takes hybrid and/or dense, not {sorted(unknown)}")
    src = OUT / f"cat-{args.source_size}"
    if not (src / "productmatch.db").exists():
        raise SystemExit(f"{src} missing: run bench_ingest.py --sizes {args.source_size} first")
    info = machine()
    dst = OUT / f"cat-{args.size}-padded"
    padding = pad_catalogue(src, dst, args.size, args.noise, args.seed)
    products = list(catalogue(args.source_size, args.seed))
    rng = random.Random(args.seed + 7)
    offers = [offer_for(products[rng.randrange(args.source_size)], rng) for _ in range(5000)]
    runs = []
    for kind, blocking in [(k, b) for k in args.kinds.split(",") for b in args.blocking.split(",")]:
        shutil.rmtree(dst / "index", ignore_errors=True)
        t0 = time.perf_counter()
        proc = serve(dst, args.port, {**server_env, **blockings[blocking], "INDEX_KIND": kind})
        ready_s = time.perf_counter() - t0
        base = f"http://127.0.0.1:{args.port}"
        try:
            run: dict[str, Any] = {
                "kind": kind,
                "blocking": blocking,
                "start_to_ready_s": round(ready_s, 1),
                "rss_mb_ready": rss_mb(proc.pid),
            }
            run["sequential"] = [sequential(base, offers, k, args.requests) for k in (10, 50)]
            body = lambda i: {"offer": offers[i % len(offers)], "top_k": 10}  # noqa: E731
            run["open_loop_k10"] = [step(base, body, r, args.step_seconds, 200.0) for r in args.rates]
            passing = [s["offered_rps"] for s in run["open_loop_k10"] if s["passes"]]
            run["capacity_rps_at_p99_200ms_k10"] = max(passing) if passing else 0.0
            run["peak_rss_mb"] = peak_rss_mb(proc.pid)
            print(run, flush=True)
            runs.append(run)
        finally:
            proc.terminate()
            proc.wait(60)
    path = write_result(
        args.name,
        {
            "machine": info,
            "load_average_after": os.getloadavg(),
            "command": " ".join(sys.argv),
            "padding": padding,
            "settings": {
                "encoder": "all-MiniLM-L6-v2 zero-shot",
                "server_env": server_env,
                "database": "sqlite",
                "variant_vector_noise": args.noise,
                "start_to_ready": "process start -> /readyz 200, including the index build from the database",
            },
            "runs": runs,
        },
    )
    print(path.read_text())


if __name__ == "__main__":
    main()
