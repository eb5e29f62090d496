"""/v1/match latency and throughput under bounded loopback load, and the API's peak memory.

Serves a catalogue left by bench_ingest.py (benchmarks/out/cat-<n>) with the real MiniLM and
`productmatch serve`, then sends offers (noisy rewrites of catalogue titles) at a fixed
concurrency for a fixed duration / request count.

    .venv/bin/python benchmarks/bench_match_load.py --sizes 10000,100000 --duration 60 --concurrency 4
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.catalogue_gen import catalogue, offer_for  # noqa: E402
from benchmarks.common import OUT, machine, peak_rss_mb, percentile, rss_mb, write_result  # noqa: E402
from benchmarks.loadgen import run_load  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def serve(data_dir: Path, port: int, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    env = {**os.environ, "DATA_DIR": str(data_dir), "LOAD_DEMO_CATALOGUE": "false", "LOG_LEVEL": "WARNING"}
    env.update(extra_env or {})
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(OUT / f"serve-{port}.log").open("w"),
    )
    return wait_ready(proc, port, OUT / f"serve-{port}.log")


def wait_ready(proc: subprocess.Popen, port: int, log: Path, timeout_s: float = 600) -> subprocess.Popen:
    """Poll ``/readyz`` on the loopback port until 200; exit with the log's path if the server dies."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"server exited: see {log}")
        time.sleep(0.5)
    proc.kill()
    raise SystemExit("server did not become ready")


def bench_size(n: int, args: argparse.Namespace) -> dict:
    data_dir = OUT / f"cat-{n}"
    if not (data_dir / "productmatch.db").exists():
        raise SystemExit(f"{data_dir} missing: run bench_ingest.py --sizes {n} first")
    products = list(catalogue(n, args.seed))
    rng = random.Random(args.seed + 99)
    picks = [rng.randrange(n) for _ in range(args.max_requests)]
    offers = [offer_for(products[i], rng) for i in picks]

    proc = serve(data_dir, args.port)
    samples: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.5):
            value = rss_mb(proc.pid)
            if value:
                samples.append(value)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        rss_ready = rss_mb(proc.pid)
        out: dict = {"n": n, "rss_mb_when_ready": rss_ready}
        for k in args.k:
            # Warm-up outside the measurement.
            run_load(
                f"http://127.0.0.1:{args.port}",
                "/v1/match",
                lambda i, k=k: {"offer": offers[i % len(offers)], "top_k": k},
                2,
                20,
                10,
            )
            res = run_load(
                f"http://127.0.0.1:{args.port}",
                "/v1/match",
                lambda i, k=k: {"offer": offers[i], "top_k": k},
                args.concurrency,
                args.max_requests,
                args.duration,
                keep_bodies=True,
            )
            correct = sum(
                1
                for i, body in res.bodies
                if body
                and body["candidates"]
                and body["candidates"][0]["external_id"] == products[picks[i]]["external_id"]
            )
            out[f"k={k}"] = {
                "requests": len(res.latencies_ms),
                "duration_s": round(res.elapsed_s, 2),
                "requests_per_s": round(len(res.latencies_ms) / res.elapsed_s, 2),
                "p50_ms": round(percentile(res.latencies_ms, 50), 1),
                "p95_ms": round(percentile(res.latencies_ms, 95), 1),
                "p99_ms": round(percentile(res.latencies_ms, 99), 1),
                "errors": res.errors,
                "statuses": res.statuses,
                "top1_is_source_product": round(correct / max(1, len(res.bodies)), 4),
            }
        out["peak_rss_mb"] = peak_rss_mb(proc.pid)
        out["rss_mb_samples_max"] = max(samples) if samples else None
        out["rss_mb_at_end"] = rss_mb(proc.pid)
        return out
    finally:
        stop.set()
        proc.terminate()
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--k", type=lambda s: [int(x) for x in s.split(",")], default=[10])
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--max-requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    info = machine()
    runs = [bench_size(int(n), args) for n in args.sizes.split(",")]
    path = write_result(
        "match_load",
        {
            "machine": info,
            "command": " ".join(sys.argv),
            "settings": {
                "encoder": "all-MiniLM-L6-v2 zero-shot",
                "scorer": "cosine + token_set_ratio",
                "index": "flat",
                "database": "sqlite",
                "concurrency": args.concurrency,
                "duration_s": args.duration,
                "max_requests": args.max_requests,
                "uvicorn_workers": 1,
            },
            "runs": runs,
        },
    )
    print(path.read_text())


if __name__ == "__main__":
    main()
