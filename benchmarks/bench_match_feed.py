"""Bulk matching of whole feeds (`productmatch match-file`): peak memory as the feed grows, and
throughput with the real MiniLM encoder.

    .venv/bin/python benchmarks/bench_match_feed.py --sizes 10000,100000,1000000 --minilm-offers 10000

Every run is a fresh `productmatch match-file` process (CSV results, k=10, chunks of 1,000
offers) whose peak RSS (VmHWM) is sampled from /proc while it runs. The memory series uses a
tiny randomly initialised encoder (hidden size 32, 2 layers, saved as a model folder) so that a
million offers fit in minutes on two cores: the encoder's size is a constant in the footprint,
and the question is whether memory grows with the feed. Throughput with the packaged
all-MiniLM-L6-v2 is measured separately on a smaller feed. Offers are noisy rewrites of
catalogue titles (`benchmarks/catalogue_gen.py`), so top-1 = source product is reported too.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.catalogue_gen import catalogue, offer_for, write_jsonl  # noqa: E402
from benchmarks.common import OUT, machine, peak_rss_mb, rss_mb, write_result  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BASE = OUT / "match-feed"
TINY_CONFIG = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
CHUNK_ROWS = 1000
K = 10


def tiny_encoder_dir() -> Path:
    folder = BASE / "tiny-encoder"
    if not (folder / "config.json").exists():
        import torch

        from models.bi_encoder import BiEncoder

        torch.manual_seed(0)
        BiEncoder.from_config(TINY_CONFIG, max_length=32).save(folder)
    return folder


def env_for(data_dir: Path, encoder: str, threads: int) -> dict[str, str]:
    env = {
        **os.environ,
        "DATA_DIR": str(data_dir),
        "ENCODER": encoder,
        "TORCH_THREADS": str(threads),
        "MATCH_FEED_CHUNK_ROWS": str(CHUNK_ROWS),
        "LOG_LEVEL": "WARNING",
        "ENVIRONMENT": "development",
    }
    for key in ("DATABASE_URL", "REDIS_URL", "RAY_ADDRESS", "INDEX_DIR", "UPLOAD_DIR", "RESULTS_DIR"):
        env.pop(key, None)
    return env


def cli(args: list[str], env: dict[str, str], log: Path, timeout: float) -> dict[str, Any]:
    """Run `productmatch ARGS`, sampling its memory; returns wall time, peak RSS and its JSON."""
    with log.open("ab") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", *args], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=err
        )
        t0 = time.perf_counter()
        peak, samples = 0.0, []
        deadline = t0 + timeout
        while proc.poll() is None:
            if time.perf_counter() > deadline:
                proc.kill()
                raise TimeoutError(f"{args[0]} ran past {timeout} s")
            hwm, now = peak_rss_mb(proc.pid), rss_mb(proc.pid)
            if hwm:
                peak = max(peak, hwm)
            if now:
                samples.append((round(time.perf_counter() - t0, 1), round(now, 1)))
            time.sleep(0.25)
        elapsed = time.perf_counter() - t0
        out = proc.stdout.read().decode() if proc.stdout else ""
    if proc.returncode != 0:
        raise RuntimeError(f"productmatch {' '.join(args)} exited {proc.returncode}; see {log}")
    step = max(1, len(samples) // 20)
    return {
        "seconds": round(elapsed, 2),
        "peak_rss_mb": round(peak, 1),
        "rss_samples_mb": samples[::step],
        "summary": json.loads(out) if out.strip().startswith("{") else None,
    }


def prepare(name: str, encoder: str, n_catalogue: int, threads: int, timeout: float) -> tuple[Path, dict[str, str]]:
    """A data folder with the synthetic catalogue ingested (and embedded) with `encoder`."""
    data_dir = BASE / f"{name}-cat{n_catalogue}"
    env = env_for(data_dir, encoder, threads)
    marker = data_dir / "catalogue.done"
    if not marker.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        cat = write_jsonl(BASE / f"catalogue-{n_catalogue}.jsonl", catalogue(n_catalogue, seed=0))
        cli(["migrate"], env, data_dir / "cli.log", timeout)
        run = cli(["ingest", str(cat)], env, data_dir / "cli.log", timeout)
        print(f"[{name}] catalogue of {n_catalogue} ingested in {run['seconds']} s", flush=True)
        marker.write_text("ok")
    return data_dir, env


def feed_file(n: int, n_catalogue: int) -> Path:
    """n offers, offer i a noisy rewrite of catalogue product i mod n_catalogue (streamed out)."""
    path = BASE / f"offers-{n}-of-{n_catalogue}.jsonl"
    if path.exists():
        return path
    products = list(catalogue(n_catalogue, seed=0))
    rng = random.Random(1)

    def rows():  # type: ignore[no-untyped-def]
        for i in range(n):
            p = products[i % n_catalogue]
            yield {"offer_id": f"off-{i:07d}", **offer_for(p, rng)}

    tmp = write_jsonl(path.with_suffix(".tmp"), rows())
    tmp.rename(path)
    return path


def top1_rate(results: Path, n_catalogue: int) -> float:
    """Share of offers whose first candidate is the product the offer was made from."""
    import csv

    hits = total = 0
    with results.open(encoding="utf-8", newline="") as fh:
        for rec in csv.DictReader(fh):
            i = int(rec["offer_id"].removeprefix("off-"))
            ids = json.loads(rec["candidate_ids"])
            hits += bool(ids) and ids[0] == f"syn-{i % n_catalogue:07d}"
            total += 1
    return round(hits / total, 4) if total else float("nan")


def match_run(
    name: str, data_dir: Path, env: dict[str, str], n: int, n_catalogue: int, timeout: float, engine: str = "local"
) -> dict[str, Any]:
    feed = feed_file(n, n_catalogue)
    out = data_dir / f"results-{n}-{engine}.csv"
    run = cli(
        ["match-file", str(feed), "--out", str(out), "--k", str(K), "--engine", engine],
        env,
        data_dir / "cli.log",
        timeout,
    )
    summary = run.pop("summary") or {}
    rows = sum(1 for _ in out.open(encoding="utf-8")) - 1
    assert rows == n, f"{rows} result rows for {n} offers"
    result = {
        "encoder": name,
        "engine": engine,
        "offers": n,
        "catalogue": n_catalogue,
        "feed_mb": round(feed.stat().st_size / 1e6, 1),
        **run,
        "offers_per_s": round(n / run["seconds"], 1),
        "result_rows": rows,
        "decisions": summary.get("decisions"),
        "top1_is_source": top1_rate(out, n_catalogue),
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }
    out.unlink()
    print(
        f"[{name}/{engine}] {n} offers: {result['seconds']} s, {result['offers_per_s']} offers/s, "
        f"peak RSS {result['peak_rss_mb']} MB, top-1 {result['top1_is_source']}",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000", help="feed sizes for the memory series")
    parser.add_argument("--catalogue", type=int, default=10_000)
    parser.add_argument("--minilm-offers", type=int, default=10_000, help="0 to skip the MiniLM run")
    parser.add_argument(
        "--minilm-catalogue", type=int, default=2_000, help="catalogue for the MiniLM run (embedding it is slow)"
    )
    parser.add_argument("--ray-offers", type=int, default=0, help="also run the ray engine (tiny encoder)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the matching process")
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args()
    BASE.mkdir(parents=True, exist_ok=True)

    payload: dict[str, Any] = {
        "machine": machine(),
        "command": " ".join(["python", *sys.argv]),
        "settings": {
            "k": K,
            "chunk_rows": CHUNK_ROWS,
            "catalogue": args.catalogue,
            "minilm_catalogue": args.minilm_catalogue,
            "torch_threads": args.threads,
            "index": "flat",
            "scorer": "zero-shot cosine + rapidfuzz",
            "output": "csv",
            "tiny_encoder_config": TINY_CONFIG,
        },
        "memory_series": [],
        "minilm": None,
        "ray": None,
    }
    tiny_dir, tiny_env = prepare("tiny", str(tiny_encoder_dir()), args.catalogue, args.threads, args.timeout)
    for n in [int(s) for s in args.sizes.split(",") if s]:
        payload["memory_series"].append(match_run("tiny", tiny_dir, tiny_env, n, args.catalogue, args.timeout))
        write_result("match_feed", payload)
    series = payload["memory_series"]
    if len(series) >= 2:
        payload["peak_rss_growth"] = {
            "smallest_offers": series[0]["offers"],
            "largest_offers": series[-1]["offers"],
            "ratio": round(series[-1]["peak_rss_mb"] / series[0]["peak_rss_mb"], 3),
            "delta_mb": round(series[-1]["peak_rss_mb"] - series[0]["peak_rss_mb"], 1),
        }
    if args.ray_offers:
        payload["ray"] = match_run("tiny", tiny_dir, tiny_env, args.ray_offers, args.catalogue, args.timeout, "ray")
        payload["ray"]["note"] = "peak RSS is the driver's only; actors run in Ray worker processes"
        write_result("match_feed", payload)
    if args.minilm_offers:
        n_cat = args.minilm_catalogue
        mini_dir, mini_env = prepare("minilm", "minilm", n_cat, args.threads, args.timeout)
        payload["minilm"] = match_run("minilm", mini_dir, mini_env, args.minilm_offers, n_cat, args.timeout)
    path = write_result("match_feed", payload)
    print(path)


if __name__ == "__main__":
    main()
