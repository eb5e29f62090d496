"""benchmarks/bench_stage_budget.py: py-spy samples charged to the right stage, the budget's
arithmetic, and the Server-Timing header read back."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from benchmarks.bench_stage_budget import budget, catalogue_precision, profile_summary, server_timing, stage_of

WORKER = "Thread._bootstrap (threading.py);WorkerThread.run (anyio/_backends/_asyncio.py)"
PIPELINE = f"{WORKER};MatchPipeline.match (/srv/app/pipeline/match.py)"


def test_samples_are_charged_to_the_stage_they_are_inside(tmp_path: Path) -> None:
    lines = [
        f"{PIPELINE};Encoder.encode (app/pipeline/encoder.py);Linear.forward (torch/nn/modules/linear.py) 6",
        f"{PIPELINE};VectorIndex.search (app/search/vector_index.py);IndexIDMap.search (faiss/swigfaiss.py) 3",
        f"{PIPELINE};LexicalRescorer.narrow (app/pipeline/hybrid.py);LiveBM25.top (models/bm25.py) 2",
        f"{PIPELINE};ZeroShotScorer.score (app/pipeline/scoring.py);clean_text (models/product_text.py) 1",
        f"{PIPELINE};MatchPipeline.match.<locals>.<listcomp> (app/pipeline/match.py) 1",
        "run (uvicorn/main.py);match (app/api/match.py);_queue_timed (app/api/match.py);commit (x.py) 1",
        "run (uvicorn/main.py);serialize_response (fastapi/routing.py);dump_json (pydantic/type_adapter.py) 1",
        f"{WORKER};Condition.wait (threading.py) 4",
        "garbage line without a count",
    ]
    profile = tmp_path / "spy.txt"
    profile.write_text("\n".join(lines))
    summary = profile_summary(profile)
    stages = summary["stages"]
    assert summary["samples"] == 19
    assert {s: round(v["share"] * 19) for s, v in stages.items()} == {
        "encode": 6,
        "waiting (threads blocked)": 4,
        "dense_search": 3,
        "lexical": 2,
        "rerank": 1,
        "decide": 1,
        "queue": 1,
        "serialize": 1,
    }
    assert stages["encode"]["top_functions"][0] == ["Linear.forward (torch/nn/modules/linear.py)", 1.0]
    assert stage_of(["<module> (app/cli.py)", "Server.run (uvicorn/server.py)"]) == "server (other)"


def test_budget_shares_and_server_timing() -> None:
    assert server_timing("total;dur=12.5, serialize;dur=0.25") == {"total": 12.5, "serialize": 0.25}
    rows = [
        {"encode": 4.0, "client_latency": 10.0, **dict.fromkeys(["parse", "other", "transport"], 1.0)},
        {"encode": 8.0, "client_latency": 30.0, **dict.fromkeys(["parse", "other", "transport"], 3.0)},
    ]
    for row in rows:
        for stage in ("dense_search", "lexical", "load", "rerank", "decide", "queue", "respond", "serialize"):
            row[stage] = 0.0
    out = budget(rows)
    assert out["encode"]["mean_ms"] == 6.0 and out["encode"]["share_of_mean_latency"] == 0.3
    assert out["client_latency"]["share_of_mean_latency"] == 1.0
    assert out["encode"]["p50_ms"] <= out["encode"]["p99_ms"] <= 8.0


@pytest.mark.parametrize(
    ("model_id", "precision"),
    [
        ("minilm-l6-v2-zero-shot", "fp32"),
        ("minilm-l6-v2-zero-shot+bf16", "bf16"),
        ("minilm-l6-v2-zero-shot+bf16f", "bf16"),  # the fused CPU forward's vectors: served as PRECISION=bf16
        ("minilm-l6-v2-zero-shot+int8", "int8"),
    ],
)
def test_the_server_runs_at_the_precision_of_the_catalogues_vectors(
    tmp_path: Path, model_id: str, precision: str
) -> None:
    with sqlite3.connect(tmp_path / "productmatch.db") as con:
        con.execute("CREATE TABLE product_embeddings (product_id INTEGER, model_id TEXT)")
        con.executemany("INSERT INTO product_embeddings VALUES (?, ?)", [(1, model_id), (2, model_id), (3, "other")])
    assert catalogue_precision(tmp_path) == precision
