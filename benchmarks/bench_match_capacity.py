"""Capacity of /v1/match: the highest request rate whose p99 latency stays within an SLO.

For each k, an open-loop sweep of fixed request rates (loopback HTTP, `loadgen.run_fixed_rate`)
against `productmatch serve` on a catalogue left by bench_ingest.py, and the same sweep against
the plain sentence-transformers + FAISS service (`plain_st_server.py`, same weights, same product
vectors). A rate passes when there are no errors, the p99 latency counted from each request's
*scheduled* send time (so client-side queueing is not hidden) is at most the SLO, and the
achieved rate is at least 95 % of the offered one. Capacity = the highest passing rate.

    .venv/bin/python benchmarks/bench_match_capacity.py --size 100000 --ks 10,50 --rates 4,6,8,10,12,14,16,20
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_match_load import serve, wait_ready  # noqa: E402
from benchmarks.catalogue_gen import catalogue, offer_for  # noqa: E402
from benchmarks.common import OUT, add_env_option, machine, parse_env, percentile, write_result  # noqa: E402
from benchmarks.loadgen import run_fixed_rate  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def serve_plain(data_dir: Path, port: int) -> subprocess.Popen:
    log = OUT / f"plain-{port}.log"
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "benchmarks" / "plain_st_server.py"), "--data-dir", str(data_dir)]
        + ["--port", str(port)],
        cwd=REPO,
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
    )
    return wait_ready(proc, port, log)


def step(base: str, body, rate: float, seconds: float, slo_ms: float) -> dict[str, Any]:
    res = run_fixed_rate(base, "/v1/match", body, rate, seconds, int(rate * seconds), max_in_flight=64)
    served = [lat for _, lat, status, _ in res.records if status == 200]
    from_schedule = [lat + late for _, lat, status, late in res.records if status == 200]
    achieved = len(res.records) / res.elapsed_s if res.elapsed_s else 0.0
    p99_sched = percentile(from_schedule, 99) if from_schedule else float("inf")
    row = {
        "offered_rps": rate,
        "achieved_rps": round(achieved, 2),
        "requests": len(res.records),
        "errors": res.errors,
        "p50_ms": round(percentile(served, 50), 1) if served else None,
        "p99_ms": round(percentile(served, 99), 1) if served else None,
        "p99_from_schedule_ms": round(p99_sched, 1),
    }
    row["passes"] = bool(res.errors == 0 and p99_sched <= slo_ms and achieved >= 0.95 * rate)
    return row


def sweep(base: str, offers: list[dict], k: int, args: argparse.Namespace) -> dict[str, Any]:
    def body(i: int) -> dict:
        return {"offer": offers[i % len(offers)], "top_k": k}

    run_fixed_rate(base, "/v1/match", body, 4.0, args.warmup_seconds, int(4 * args.warmup_seconds))  # warm-up
    rows, failures = [], 0
    for rate in args.rates:
        row = step(base, body, rate, args.step_seconds, args.slo_ms)
        rows.append(row)
        print(f"  k={k} {rate:5.1f} rps: {row}", flush=True)
        failures = 0 if row["passes"] else failures + 1
        if failures >= 2:  # two failing rates in a row: past the knee
            break
        time.sleep(2)  # let queues drain between steps
    passing = [r["offered_rps"] for r in rows if r["passes"]]
    return {"k": k, "steps": rows, "capacity_rps_at_slo": max(passing) if passing else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=100_000, help="catalogue of benchmarks/out/cat-<size>")
    parser.add_argument("--ks", type=lambda s: [int(x) for x in s.split(",")], default=[10, 50])
    parser.add_argument("--rates", type=lambda s: [float(x) for x in s.split(",")], default=[4, 6, 8, 10, 12, 14, 16])
    parser.add_argument("--step-seconds", type=float, default=30.0)
    parser.add_argument("--warmup-seconds", type=float, default=10.0)
    parser.add_argument("--slo-ms", type=float, default=200.0)
    parser.add_argument("--systems", default="productmatch,plain", help="productmatch and/or plain")
    parser.add_argument("--port", type=int, default=8767)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="match_capacity")
    add_env_option(parser, "server setting for productmatch, repeatable (e.g. SCORER=default, PRECISION=bf16)")
    args = parser.parse_args()
    server_env = parse_env(args.env)
    data_dir = OUT / f"cat-{args.size}"
    if not (data_dir / "productmatch.db").exists():
        raise SystemExit(f"{data_dir} missing: run bench_ingest.py --sizes {args.size} first")
    products = list(catalogue(args.size, args.seed))
    rng = random.Random(args.seed + 99)
    offers = [offer_for(products[rng.randrange(args.size)], rng) for _ in range(5000)]
    info = machine()
    results: dict[str, Any] = {}
    for system in args.systems.split(","):
        print(f"{system}:", flush=True)
        port = args.port if system == "productmatch" else args.port + 1
        proc = serve(data_dir, port, server_env) if system == "productmatch" else serve_plain(data_dir, port)
        base = f"http://127.0.0.1:{port}"
        try:
            results[system] = [sweep(base, offers, k, args) for k in args.ks]
        finally:
            proc.terminate()
            proc.wait(30)
    ratios = {}
    if "productmatch" in results and "plain" in results:
        for ours, plain in zip(results["productmatch"], results["plain"]):
            if plain["capacity_rps_at_slo"]:
                ratios[f"k={ours['k']}"] = round(ours["capacity_rps_at_slo"] / plain["capacity_rps_at_slo"], 3)
    path = write_result(
        args.name,
        {
            "machine": info,
            "load_average_after": os.getloadavg(),
            "command": " ".join(sys.argv),
            "settings": {
                "catalogue": args.size,
                "slo_ms": args.slo_ms,
                "step_seconds": args.step_seconds,
                "rates": args.rates,
                "encoder": "all-MiniLM-L6-v2 zero-shot (both systems)",
                "productmatch": "productmatch serve: SQLite, flat FAISS index, 1 uvicorn worker",
                "productmatch_env": server_env,
                "plain": "benchmarks/plain_st_server.py: SentenceTransformer.encode + faiss.IndexFlatIP, 1 worker",
                "client": "open loop, same machine, latency counted from the scheduled send time",
            },
            "results": results,
            "capacity_ratio_productmatch_over_plain": ratios,
        },
    )
    print(path.read_text())


if __name__ == "__main__":
    main()
