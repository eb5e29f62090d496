"""ANN benchmark: build time, bytes per product, latency and recall@k of each index kind.

Builds every kind through `VectorIndex.rebuild` on a seeded synthetic catalogue of unit vectors
(a Gaussian mixture, generated in chunks so that 1M x 384 fits comfortably), then measures
single-query latency on one thread and recall@k against exact search (`faiss.knn`, inner
product). Results go to JSON and a Markdown table on stdout.

    python benchmarks/bench_ann.py --n 20000 --queries 200        # quick check
    python benchmarks/bench_ann.py                                # 1M x 384, the real run
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # allow `python benchmarks/bench_ann.py` from a checkout
    sys.path.insert(0, str(ROOT))

from app.search import IndexParams, VectorIndex  # noqa: E402

CHUNK = 100_000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=1_000_000, help="catalogue size")
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--kinds", default="flat,hnsw,ivfpq", help="comma-separated index kinds")
    p.add_argument("--categories", type=int, default=None, help="top-level clusters (default n/5000, >= 16)")
    p.add_argument("--family-size", type=int, default=20, help="mean items per product family")
    p.add_argument("--family-spread", type=float, default=0.6, help="family offset from its category centre")
    p.add_argument("--item-spread", type=float, default=0.35, help="item offset from its family centre")
    p.add_argument("--query-noise", type=float, default=0.3, help="norm of the noise added to query vectors")
    p.add_argument("--brands", type=int, default=2000, help="distinct brands (Zipf-distributed)")
    p.add_argument("--threads", type=int, default=None, help="OpenMP threads for building (default: all)")
    p.add_argument("--tmp-dir", default=None, help="where the index file is written to measure its size")
    p.add_argument("--ivf-nprobe", type=int, default=None, help="override IndexParams.ivf_nprobe")
    p.add_argument("--ivf-refine-k-factor", type=int, default=None, help="override IndexParams.ivf_refine_k_factor")
    p.add_argument("--out", default="benchmarks/results/ann.json")
    return p.parse_args(argv)


def make_catalogue(args: argparse.Namespace) -> np.ndarray:
    """Unit vectors from a two-level Gaussian mixture, chunk by chunk (each chunk its own seeded stream).

    Categories -> product families (~`family_size` items: the same product listed by different
    sellers, or close variants) -> items. A plain mixture makes every cluster mate equally
    similar, so "recall@20" would measure ties; here the neighbours of a product are its family
    (cosine ~0.9), then its category (~0.65), then the rest (~0).
    """
    n, dim, seed = args.n, args.dim, args.seed
    categories = args.categories or max(16, n // 5000)
    families = max(1, n // args.family_size)
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((categories, dim), dtype=np.float32)
    family_centres = centres[rng.integers(0, categories, families)]
    family_centres += args.family_spread * rng.standard_normal((families, dim), dtype=np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        chunk_rng = np.random.default_rng([seed, start])
        x = family_centres[chunk_rng.integers(0, families, stop - start)]
        x += args.item_spread * chunk_rng.standard_normal((stop - start, dim), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[start:stop] = x
    return out


def make_queries(xb: np.ndarray, nq: int, noise: float, seed: int) -> np.ndarray:
    """New listings of catalogue products: catalogue vectors plus noise of norm ~`noise`."""
    rng = np.random.default_rng([seed, 1])
    rows = rng.choice(len(xb), size=nq, replace=False)
    dim = xb.shape[1]
    q = xb[rows] + noise * rng.standard_normal((nq, dim), dtype=np.float32) / np.sqrt(dim)
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def make_attributes(n: int, n_brands: int, seed: int) -> tuple[list[str], list[str]]:
    """Zipf-like brand popularity and 100 categories, as shared string objects (cheap at 1M)."""
    rng = np.random.default_rng([seed, 2])
    weights = 1.0 / np.arange(1, n_brands + 1)
    brand_codes = rng.choice(n_brands, size=n, p=weights / weights.sum())
    names = [f"brand-{i}" for i in range(n_brands)]
    cats = [f"category-{i}" for i in range(100)]
    return [names[c] for c in brand_codes], [cats[c] for c in rng.integers(0, 100, n)]


def recall_at_k(found: list[list[int]], truth: np.ndarray) -> float:
    """Share of the exact top-k found (faiss contrib's intersection measure); -1 truth is padding."""
    hits = sum(len(set(row) & set(t.tolist())) for row, t in zip(found, truth, strict=True))
    return hits / max(1, int((truth >= 0).sum()))


def timed_queries(index: VectorIndex, queries: np.ndarray, k: int, brand: str | None = None) -> tuple:
    """One query per call on the calling thread; returns ids and latencies in ms."""
    index.search(queries[:5], k, brand=brand)  # warm caches and the filter selector
    found, lat = [], []
    for q in queries:
        t0 = time.perf_counter()
        result = index.search(q[None, :], k, brand=brand)
        lat.append((time.perf_counter() - t0) * 1e3)
        found.append(result.ids[0])
    return found, np.array(lat)


def file_size(index: VectorIndex, tmp_dir: str | None) -> tuple[int, float]:
    with tempfile.TemporaryDirectory(dir=tmp_dir) as td:
        path = Path(td) / "bench.pmindex"
        t0 = time.perf_counter()
        index.save(path)
        return path.stat().st_size, time.perf_counter() - t0


def bench_kind(kind: str, args: argparse.Namespace, data: dict[str, Any]) -> dict[str, Any]:
    n, k = args.n, args.k
    faiss.omp_set_num_threads(args.threads or data["max_threads"])
    overrides: dict[str, Any] = {"ivf_nprobe": args.ivf_nprobe} if args.ivf_nprobe else {}
    if args.ivf_refine_k_factor:
        overrides["ivf_refine_k_factor"] = args.ivf_refine_k_factor
    index = VectorIndex(args.dim, IndexParams(kind=kind, **overrides))
    t0 = time.perf_counter()
    index.rebuild(data["ids"], data["xb"], data["brands"], data["categories"], version=1)
    build_s = time.perf_counter() - t0
    stats = index.stats()
    size, save_s = file_size(index, args.tmp_dir)
    faiss.omp_set_num_threads(1)
    found, lat = timed_queries(index, data["xq"], k)
    filtered = {}
    for label, flt in data["filters"].items():
        f_found, f_lat = timed_queries(index, data["xq"], k, brand=flt["brand"])
        filtered[label] = {
            "brand": flt["brand"],
            "share": round(flt["share"], 5),
            "p50_ms": round(float(np.percentile(f_lat, 50)), 4),
            "p99_ms": round(float(np.percentile(f_lat, 99)), 4),
            f"recall@{k}": round(recall_at_k(f_found, flt["truth"]), 4),
        }
    row = {
        "kind": kind,
        "backend": stats["backend"],
        "n": n,
        "dim": args.dim,
        "build_s": round(build_s, 3),
        "save_s": round(save_s, 3),
        "file_bytes_per_product": round(size / n, 1),
        "memory_bytes_per_product": round(stats["bytes"] / n, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 4),
        "p99_ms": round(float(np.percentile(lat, 99)), 4),
        f"recall@{k}": round(recall_at_k(found, data["truth"]), 4),
        "filtered": filtered,
        "params": stats["params"],
        "resolved": {key: stats[key] for key in ("nlist", "pq_m", "refine") if key in stats},
    }
    del index
    gc.collect()
    return row


def prepare(args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    xb = make_catalogue(args)
    xq = make_queries(xb, args.queries, args.query_noise, args.seed)
    ids = np.arange(args.n, dtype=np.int64) * 3 + 1  # product ids are not row numbers
    brands, categories = make_attributes(args.n, args.brands, args.seed)
    max_threads = faiss.omp_get_max_threads()
    _, rows = faiss.knn(xq, xb, args.k, metric=faiss.METRIC_INNER_PRODUCT)
    # Zipf shares with 2000 brands: brand-0 ~12% (ANN path with a widened search at 1M),
    # brand-49 ~0.25% (exact scan of the matching products).
    filters = {}
    for label, brand in (("broad", "brand-0"), ("selective", "brand-49")):
        mask = np.fromiter((b == brand for b in brands), dtype=bool, count=args.n)
        _, f_rows = faiss.knn(xq, xb[mask], args.k, metric=faiss.METRIC_INNER_PRODUCT)
        truth = np.where(f_rows >= 0, ids[mask][f_rows], -1)  # fewer than k matches: -1 padding
        filters[label] = {"brand": brand, "share": float(mask.mean()), "truth": truth}
    print(
        f"# data: n={args.n} dim={args.dim} in {time.perf_counter() - t0:.1f}s",
        file=sys.stderr,
    )
    return {
        "xb": xb,
        "xq": xq,
        "ids": ids,
        "brands": brands,
        "categories": categories,
        "truth": ids[rows],
        "filters": filters,
        "max_threads": max_threads,
    }


def markdown(rows: list[dict[str, Any]], k: int) -> str:
    head = (
        f"| kind | n | dim | build s | file B/product | mem B/product | p50 ms | p99 ms | recall@{k} "
        f"| broad filter p50 ms / recall@{k} | selective filter p50 ms / recall@{k} |"
    )
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        cells = [
            r["kind"],
            str(r["n"]),
            str(r["dim"]),
            f"{r['build_s']:.2f}",
            f"{r['file_bytes_per_product']:.0f}",
            f"{r['memory_bytes_per_product']:.0f}",
            f"{r['p50_ms']:.3f}",
            f"{r['p99_ms']:.3f}",
            f"{r[f'recall@{k}']:.4f}",
        ]
        for label in ("broad", "selective"):
            f = r["filtered"][label]
            cells.append(f"{f['p50_ms']:.3f} / {f[f'recall@{k}']:.4f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    data = prepare(args)
    rows = []
    for kind in kinds:
        rows.append(bench_kind(kind, args, data))
        print(f"# {kind} done", file=sys.stderr)
    faiss.omp_set_num_threads(data["max_threads"])
    report = {
        "config": vars(args),
        "environment": {
            "faiss": faiss.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "omp_max_threads": data["max_threads"],
        },
        "results": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(rows, args.k))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
