"""Per-stage time budget of /v1/match (issue 18): where one request's time goes, stage by stage.

One `productmatch serve` process on a catalogue of N products answers sequential k=10 requests
(offers: noisy rewrites of catalogue products, `catalogue_gen.py`), once with the zero-shot scorer
and, with ``--matcher DIR``, once with that trained matcher; each with hybrid blocking (the
default) and, with ``--blocking hybrid,dense``, with dense blocking too. Two views of the same
requests:

* the response's own clock: `timings_ms` (parse, encode, dense_search, lexical, load, rerank,
  decide, queue, respond) and the `Server-Timing` header (serialize, the route's total), with
  the client's latency around them. ``other`` is the route's total minus its stages (thread-pool
  hand-offs); ``transport`` is the client's latency minus the route's total (middleware, HTTP,
  loopback). Printed: p50 / p99 / mean per stage and each stage's share of the mean latency.
* a sampling profiler: py-spy records the server process during the timed requests (every
  thread, idle samples left out). Each sample is charged to the stage whose call it is inside
  (the callee of `MatchPipeline.match`, or the route's own steps); per stage, its share of the
  samples and the functions that hold most of them (own time, the stack's leaf).

Catalogue: `benchmarks/out/cat-<source-size>` from `bench_ingest.py` (real MiniLM vectors). When
``--size`` is larger, it is padded as `bench_match_1m.py` does (title + variant tag, the source's
vector plus noise: hard distractors; BM25 sees each source's words ``size/source-size`` times).
The server runs at the precision the catalogue's vectors were made in (`bench_ingest.py`: fp32)
unless ``--precision`` says otherwise, which makes it re-embed the catalogue at start-up.

    .venv/bin/python benchmarks/bench_ingest.py --sizes 100000 --repeats 1 --name ingest_100k_stage_budget
    .venv/bin/python benchmarks/bench_stage_budget.py --size 100000 --blocking hybrid,dense [--matcher DIR]
    .venv/bin/python benchmarks/bench_stage_budget.py --size 1000000 --source-size 100000 --blocking hybrid,dense
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from statistics import fmean
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.pipeline.encoder import VECTOR_TAGS  # noqa: E402
from benchmarks.bench_match_1m import pad_catalogue  # noqa: E402
from benchmarks.bench_match_load import serve  # noqa: E402
from benchmarks.catalogue_gen import catalogue, offer_for  # noqa: E402
from benchmarks.common import OUT, add_env_option, machine, parse_env, percentile, write_result  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
STAGES = ["parse", "encode", "dense_search", "lexical", "load", "rerank", "decide", "queue", "respond", "serialize"]
# The profile's stages: the callee of MatchPipeline.match (app/pipeline/match.py) names the stage.
PIPELINE_CALLEES = {
    "embed_text": "encode",
    "encode": "encode",
    "search": "dense_search",
    "narrow": "lexical",
    "_load": "load",
    "score": "rerank",
    "product_mapping": "rerank",
    "decide": "decide",
}
# The route's own steps (app/api/match.py) and FastAPI's around them.
ROUTE_FRAMES = {
    "_queue_timed": "queue",
    "_response": "respond",
    "_with_route_timings": "respond",
    "serialize_response": "serialize",
    "request_body_to_args": "parse",
    "_extract_form_body": "parse",
    "json": "parse",
}


def catalogue_precision(data_dir: Path) -> str:
    """The serving precision whose vectors the catalogue holds (another one re-embeds at start-up)."""
    with sqlite3.connect(data_dir / "productmatch.db") as con:
        model_id = con.execute(
            "SELECT model_id FROM product_embeddings GROUP BY model_id ORDER BY COUNT(*) DESC LIMIT 1"
        ).fetchone()[0]
    for kind, tag in VECTOR_TAGS.items():
        if tag and model_id.endswith(tag):
            return "bf16" if kind == "bf16-fused" else kind
    return "fp32"


# A leaf frame naming one of these is a thread blocked, not at work (py-spy cannot always tell);
# Runner.run as a leaf is the event loop polling its sockets in C.
WAITS = ("wait", "select", "sleep", "acquire", "poll", "Runner.run")


def offers_for(source_size: int, n: int, seed: int) -> list[dict]:
    products = list(catalogue(source_size, seed))
    rng = random.Random(seed + 7)
    return [offer_for(products[rng.randrange(source_size)], rng) for _ in range(n)]


def server_timing(header: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in header.split(","):
        name, _, dur = part.strip().partition(";dur=")
        if dur:
            out[name] = float(dur)
    return out


def timed_requests(port: int, offers: list[dict], k: int) -> list[dict[str, float]]:
    """Sequential POST /v1/match on one kept-alive connection: each request's stages and latency."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    rows = []
    for offer in offers:
        body = json.dumps({"offer": offer, "top_k": k})
        started = time.perf_counter()
        conn.request("POST", "/v1/match", body, {"Content-Type": "application/json"})
        res = conn.getresponse()
        payload = res.read()
        latency = (time.perf_counter() - started) * 1000
        if res.status != 200:
            raise RuntimeError(f"/v1/match answered {res.status}: {payload[:300]!r}")
        stages = dict(json.loads(payload)["timings_ms"])
        route = server_timing(res.getheader("Server-Timing") or "")
        stages["serialize"] = route.get("serialize", 0.0)
        stages["other"] = route["total"] - sum(stages[s] for s in STAGES)
        stages["transport"] = latency - route["total"]
        stages["client_latency"] = latency
        rows.append(stages)
    conn.close()
    return rows


def budget(rows: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    mean_latency = fmean(r["client_latency"] for r in rows)
    out = {}
    for stage in [*STAGES, "other", "transport", "client_latency"]:
        values = [r[stage] for r in rows]
        out[stage] = {
            "p50_ms": round(percentile(values, 50), 3),
            "p99_ms": round(percentile(values, 99), 3),
            "mean_ms": round(fmean(values), 3),
            "share_of_mean_latency": round(fmean(values) / mean_latency, 4),
        }
    return out


def start_profiler(pid: int, path: Path, rate: int) -> subprocess.Popen | None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        print("py-spy not installed (pip install -e '.[dev]'): no profile", flush=True)
        return None
    # --nonblocking: by default py-spy stops the server for every sample (250 a second here),
    # which made a default-matcher request's rerank read 60 ms against 43 without it (session 16).
    cmd = [spy, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw", "--nolineno", "--nonblocking"]
    proc = subprocess.Popen([*cmd, "--output", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)  # attached before the first timed request
    if proc.poll() is not None:
        print(f"py-spy could not attach: {proc.stderr.read().decode()[-500:] if proc.stderr else ''}", flush=True)
        return None
    return proc


def stop_profiler(proc: subprocess.Popen | None) -> None:
    if proc is None:
        return
    proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()


def _frame(frame: str) -> tuple[str, str]:
    """py-spy's `function (path)` as (function, path)."""
    name, _, rest = frame.partition(" (")
    return name, rest.rstrip(")")


def stage_of(frames: list[str]) -> str:
    """The stage a sample is inside; frames are py-spy's `Class.function (path)`, outermost first."""
    parsed = [(name.rpartition(".")[2], path) for name, path in map(_frame, frames)]
    for i, (name, path) in enumerate(parsed):
        if name == "match" and path.endswith("app/pipeline/match.py") and i + 1 < len(parsed):
            return PIPELINE_CALLEES.get(parsed[i + 1][0], "decide")
    for name, path in parsed:
        if (path.endswith("app/api/match.py") or "fastapi" in path) and name in ROUTE_FRAMES:
            return ROUTE_FRAMES[name]
    if frames and any(word in _frame(frames[-1])[0] for word in WAITS):
        return "waiting (threads blocked)"
    return "server (other)"


def profile_summary(path: Path, top: int = 6) -> dict[str, Any]:
    """Samples per stage and, within each, the functions that hold most of them (own time)."""
    per_stage: Counter[str] = Counter()
    leaves: dict[str, Counter[str]] = {}
    if not path.exists():
        return {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        stage = stage_of(frames)
        per_stage[stage] += int(count)
        name, file = _frame(frames[-1])
        leaves.setdefault(stage, Counter())[f"{name} ({_short(file)})"] += int(count)
    total = sum(per_stage.values()) or 1
    return {
        "samples": total,
        "stages": {
            stage: {
                "share": round(n / total, 4),
                "top_functions": [[f, round(c / n, 3)] for f, c in leaves[stage].most_common(top)],
            }
            for stage, n in per_stage.most_common()
        },
    }


def _short(path: str) -> str:
    for marker in ("site-packages/", "/work/main/", "lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def run(data_dir: Path, offers: list[dict], args: argparse.Namespace, label: str, env: dict[str, str]) -> dict:
    shutil.rmtree(data_dir / "index", ignore_errors=True)  # each run builds its index (kind may differ)
    t0 = time.perf_counter()
    proc = serve(data_dir, args.port, env)
    ready_s = time.perf_counter() - t0
    try:
        timed_requests(args.port, offers[: args.warmup], args.k)  # caches, lazy imports, first allocations
        profile_path = OUT / f"{args.name}__{label}.pyspy.txt"
        profile_path.unlink(missing_ok=True)
        spy = start_profiler(proc.pid, profile_path, args.profile_rate) if args.profiler == "py-spy" else None
        rows = timed_requests(args.port, offers[args.warmup : args.warmup + args.requests], args.k)
        stop_profiler(spy)
    finally:
        proc.terminate()
        proc.wait(60)
    result = {
        "run": label,
        "env": env,
        "start_to_ready_s": round(ready_s, 1),
        "requests": len(rows),
        "budget": budget(rows),
        "profile": profile_summary(profile_path) if spy is not None else {},
        "profile_file": str(profile_path.relative_to(REPO)) if spy is not None else None,
    }
    print_budget(label, result, args.k)
    return result


def print_budget(label: str, result: dict, k: int) -> None:
    b = result["budget"]
    print(f"\n{label}: {result['requests']} sequential requests, k={k}")
    print("| stage | p50 ms | p99 ms | mean ms | share of mean latency |\n|---|---|---|---|---|")
    for stage, row in b.items():
        print(
            f"| {stage} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['mean_ms']:.2f} | "
            f"{100 * row['share_of_mean_latency']:.1f} % |"
        )
    for stage, row in result["profile"].get("stages", {}).items():
        tops = ", ".join(f"{f} {100 * s:.0f} %" for f, s in row["top_functions"][:4])
        print(f"  profile {stage}: {100 * row['share']:.1f} % of samples; {tops}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=100_000, help="products served")
    p.add_argument("--source-size", type=int, default=None, help="bench_ingest catalogue (default: --size)")
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--matcher", type=Path, default=None, help="a trained matcher folder, served as a second run")
    p.add_argument(
        "--blocking",
        default="hybrid",
        help="hybrid (the default service: BM25 + dense) and/or dense (BLOCKING_LEXICAL_WEIGHT=0), comma-separated",
    )
    p.add_argument("--index-kind", default=None, help="default: flat up to 100k products, ivfpq above")
    p.add_argument(
        "--precision",
        default=None,
        help="PRECISION of the server (default: the one the catalogue was embedded in; another re-embeds it)",
    )
    p.add_argument("--profiler", choices=["py-spy", "none"], default="py-spy")
    p.add_argument("--profile-rate", type=int, default=250, help="py-spy samples per second")
    p.add_argument("--noise", type=float, default=0.3, help="padding: norm of the noise on variant vectors")
    p.add_argument("--port", type=int, default=8781)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default=None, help="results file benchmarks/results/NAME.json (stage_budget_<size>)")
    add_env_option(p, "server setting for every run, repeatable (e.g. MATCHER_QUANTIZE=int8)")
    args = p.parse_args()
    source = args.source_size or args.size
    args.name = args.name or f"stage_budget_{args.size}"
    src = OUT / f"cat-{source}"
    if not (src / "productmatch.db").exists():
        raise SystemExit(f"{src} missing: run bench_ingest.py --sizes {source} first")
    info = machine()
    padding = None
    data_dir = src
    if args.size > source:
        data_dir = OUT / f"cat-{args.size}-padded-from-{source}"
        padding = pad_catalogue(src, data_dir, args.size, args.noise, args.seed)
    kind = args.index_kind or ("flat" if args.size <= 100_000 else "ivfpq")
    offers = offers_for(source, args.warmup + args.requests, args.seed)
    precision = args.precision or catalogue_precision(data_dir)
    extra = parse_env(args.env)
    # The per-model *_QUANTIZE knobs refuse an explicit PRECISION next to them (app/core/config.py).
    knobs = {"ENCODER_QUANTIZE", "MATCHER_QUANTIZE"} & extra.keys()
    base_env = {"INDEX_KIND": kind, "LOG_LEVEL": "WARNING", **({} if knobs else {"PRECISION": precision}), **extra}
    scorers = {"zero-shot": {"SCORER": "zero-shot"}}
    if args.matcher is not None:
        scorers["matcher"] = {"SCORER": "default", "DEFAULT_MATCHER": str(args.matcher.resolve())}
    blockings = {"hybrid": {}, "dense": {"BLOCKING_LEXICAL_WEIGHT": "0"}}
    runs = [
        run(data_dir, offers, args, f"{scorer}__{blocking}", {**base_env, **scorers[scorer], **blockings[blocking]})
        for scorer in scorers
        for blocking in args.blocking.split(",")
    ]
    path = write_result(
        args.name,
        {
            "machine": info,
            "loadavg_at_end": os.getloadavg(),
            "command": " ".join(sys.argv),
            "settings": {
                "products": args.size,
                "source_catalogue": source,
                "padding": padding,
                "index_kind": kind,
                "precision": precision,
                "k": args.k,
                "requests": args.requests,
                "warmup_requests": args.warmup,
                "matcher": str(args.matcher) if args.matcher else None,
                "database": "sqlite",
                "server": "productmatch serve, 1 uvicorn worker, hybrid blocking as configured by default",
                "client": "sequential, one kept-alive HTTP connection, same machine",
                "profiler": f"py-spy record --rate {args.profile_rate} (idle samples excluded)"
                if args.profiler == "py-spy"
                else None,
            },
            "runs": runs,
        },
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
