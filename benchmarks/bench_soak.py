"""Soak: a bounded, fixed-rate loopback load on /v1/match for a long time; no errors, memory flat.

Starts `productmatch serve` (real MiniLM, SQLite, flat index) on a fresh data folder, ingests a
synthetic catalogue through the API, optionally probes the capacity of this machine right now
(closed loop, fixed concurrency), then sends offers at a fixed rate (open loop: a slow answer
does not slow the schedule; at most --max-in-flight requests are outstanding) for --duration
seconds or --max-requests requests, whichever comes first. The server's RSS is sampled every
--sample-every seconds. Reports errors, statuses, p50/p95/p99 latency overall and per window,
send lateness (queueing at the in-flight cap), and the RSS slope after warm-up.

    .venv/bin/python benchmarks/bench_soak.py --duration 600 --rate 5 --catalogue 2000

Loopback only (benchmarks/loadgen.py refuses anything else). Results: benchmarks/results/soak.json.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_match_load import serve  # noqa: E402
from benchmarks.catalogue_gen import catalogue, offer_for  # noqa: E402
from benchmarks.common import OUT, machine, percentile, rss_mb, write_result  # noqa: E402
from benchmarks.loadgen import run_fixed_rate, run_load  # noqa: E402


def _slope_mb_per_min(samples: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of RSS (MB) against time (min)."""
    if len(samples) < 3:
        return None
    ts = [t / 60 for t, _ in samples]
    ys = [y for _, y in samples]
    mt, my = sum(ts) / len(ts), sum(ys) / len(ys)
    var = sum((t - mt) ** 2 for t in ts)
    return sum((t - mt) * (y - my) for t, y in zip(ts, ys)) / var if var else None


def _latency(values: list[float]) -> dict:
    return {
        "p50_ms": round(percentile(values, 50), 1),
        "p95_ms": round(percentile(values, 95), 1),
        "p99_ms": round(percentile(values, 99), 1),
        "max_ms": round(max(values), 1) if values else None,
    }


def _ingest(base: str, data_dir: Path, n: int, seed: int) -> dict:
    folder = data_dir / "import"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "catalogue.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in catalogue(n, seed)))
    t0 = time.perf_counter()
    res = httpx.post(f"{base}/v1/ingest", data={"path": path.name}, timeout=60)
    res.raise_for_status()
    job_id = res.json()["job_id"]
    while True:
        body = httpx.get(f"{base}/v1/jobs/{job_id}", timeout=30).json()
        if body["state"] in ("completed", "completed_with_errors", "failed"):
            break
        time.sleep(1)
    if body["state"] != "completed":
        raise SystemExit(f"catalogue ingestion ended {body['state']}: {body.get('message')}")
    return {"products": n, "seconds": round(time.perf_counter() - t0, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of fixed-rate load")
    parser.add_argument("--rate", type=float, default=5.0, help="requests per second")
    parser.add_argument("--max-requests", type=int, default=None, help="default: rate x duration")
    parser.add_argument("--max-in-flight", type=int, default=16)
    parser.add_argument("--catalogue", type=int, default=2000, help="synthetic products to ingest")
    parser.add_argument("--probe-seconds", type=float, default=20.0, help="capacity probe (0: skip)")
    parser.add_argument("--probe-concurrency", type=int, default=4)
    parser.add_argument("--sample-every", type=float, default=5.0, help="RSS sampling period, s")
    parser.add_argument("--warmup-seconds", type=float, default=60.0, help="excluded from the RSS slope")
    parser.add_argument("--window-seconds", type=float, default=60.0, help="per-window latency report")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--name", default="soak", help="results file benchmarks/results/<name>.json")
    args = parser.parse_args()
    max_requests = args.max_requests or int(args.rate * args.duration)

    info = machine()
    data_dir = OUT / "soak"
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    base = f"http://127.0.0.1:{args.port}"
    proc = serve(data_dir, args.port)
    try:
        ingest = _ingest(base, data_dir, args.catalogue, args.seed)
        products = list(catalogue(args.catalogue, args.seed))
        rng = random.Random(args.seed + 7)
        offers = [offer_for(products[rng.randrange(len(products))], rng) for _ in range(2000)]

        def body(i: int) -> dict:
            return {"offer": offers[i % len(offers)], "top_k": args.top_k}

        run_load(base, "/v1/match", body, 2, 40, 30)  # warm-up, not measured
        probe = None
        if args.probe_seconds > 0:
            res = run_load(base, "/v1/match", body, args.probe_concurrency, 100_000, args.probe_seconds)
            probe = {
                "concurrency": args.probe_concurrency,
                "seconds": round(res.elapsed_s, 1),
                "requests_per_s": round(len(res.latencies_ms) / res.elapsed_s, 2),
                "errors": res.errors,
                **_latency(res.latencies_ms),
            }
            print(f"capacity probe: {probe}", flush=True)

        samples: list[tuple[float, float]] = []
        stop = threading.Event()
        t_start = time.monotonic()

        def sample() -> None:
            while True:
                value = rss_mb(proc.pid)
                if value:
                    samples.append((time.monotonic() - t_start, value))
                if stop.wait(args.sample_every):
                    return

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        result = run_fixed_rate(base, "/v1/match", body, args.rate, args.duration, max_requests, args.max_in_flight)
        stop.set()
        sampler.join()
        alive = proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(30)

    records = result.records
    latencies = [lat for _, lat, status, _ in records if status]
    statuses: dict[str, int] = {}
    for _, _, status, _ in records:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    windows = []
    w = args.window_seconds
    for k in range(int(result.elapsed_s // w) + 1):
        chunk = [r for r in records if k * w <= r[0] < (k + 1) * w]
        if chunk:
            windows.append(
                {
                    "from_s": int(k * w),
                    "requests": len(chunk),
                    "errors": sum(1 for r in chunk if r[2] == 0 or r[2] >= 500),
                    **_latency([r[1] for r in chunk if r[2]]),
                }
            )
    steady = [(t, y) for t, y in samples if t >= args.warmup_seconds]
    slope = _slope_mb_per_min(steady)
    rss = {
        "samples": len(samples),
        "every_s": args.sample_every,
        "at_start_mb": round(samples[0][1], 1) if samples else None,
        "after_warmup_mb": round(steady[0][1], 1) if steady else None,
        "at_end_mb": round(samples[-1][1], 1) if samples else None,
        "max_mb": round(max(y for _, y in samples), 1) if samples else None,
        "slope_mb_per_min_after_warmup": round(slope, 3) if slope is not None else None,
        "series": [(round(t, 1), round(y, 1)) for t, y in samples],
    }
    lateness = [late for _, _, _, late in records]
    summary = {
        "requests": len(records),
        "planned": min(max_requests, int(args.rate * args.duration)),
        "duration_s": round(result.elapsed_s, 1),
        "achieved_rate_per_s": round(len(records) / result.elapsed_s, 2) if result.elapsed_s else None,
        "errors": result.errors,
        "statuses": statuses,
        **_latency(latencies),
        "sent_late_over_100ms": sum(1 for late in lateness if late > 100),
        "server_alive_at_end": alive,
    }
    path = write_result(
        args.name,
        {
            "machine": info,
            "command": " ".join(sys.argv),
            "settings": {
                "encoder": "all-MiniLM-L6-v2 zero-shot",
                "index": "flat",
                "database": "sqlite",
                "catalogue": args.catalogue,
                "rate_per_s": args.rate,
                "duration_s": args.duration,
                "max_requests": max_requests,
                "max_in_flight": args.max_in_flight,
                "top_k": args.top_k,
                "seed": args.seed,
                "uvicorn_workers": 1,
            },
            "ingest": ingest,
            "capacity_probe": probe,
            "load": summary,
            "windows": windows,
            "rss": rss,
        },
    )
    print(json.dumps({"load": summary, "rss": {k: v for k, v in rss.items() if k != "series"}}, indent=2))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
