"""Ingestion throughput (validate + embed + DB + index) and the embedding stage against a plain
sentence-transformers encode loop on the same model and texts, measured in the same run.

    .venv/bin/python benchmarks/bench_ingest.py --sizes 10000,100000

Leaves the ingested catalogues in benchmarks/out/cat-<n>/ for bench_match_load.py.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.catalogue_gen import catalogue, write_jsonl  # noqa: E402
from benchmarks.common import OUT, machine, median, write_result  # noqa: E402
from models.serving_precision import SERVING_PRECISIONS  # noqa: E402


class EncodeClock:
    """Sums the wall time of ``encoder.encode`` while entered, so a run splits into the embedding
    and everything else (the part the encoder's precision does not change)."""

    def __init__(self, encoder) -> None:  # type: ignore[no-untyped-def]
        self.encoder = encoder
        self.seconds = 0.0

    def __enter__(self) -> EncodeClock:
        inner = self.encoder.encode

        def timed(*args, **kwargs):  # type: ignore[no-untyped-def]
            started = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        self.encoder.encode = timed
        return self

    def __exit__(self, *exc: object) -> None:
        del self.encoder.encode  # the instance attribute goes; the class's method shows again


def ingest(n: int, encoder, seed: int) -> dict:  # type: ignore[no-untyped-def]
    from app.core.config import Settings
    from app.db import jobs
    from app.db.base import make_engine, make_session_factory
    from app.db.migrate import upgrade
    from app.jobs.context import JobContext
    from app.jobs.runner import run_job
    from app.search.params import IndexParams
    from app.search.sync import IndexService

    data_dir = OUT / f"cat-{n}"
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    feed = write_jsonl(OUT / f"feed-{n}.jsonl", catalogue(n, seed))
    settings = Settings(_env_file=None, data_dir=data_dir, load_demo_catalogue=False, ingest_chunk_rows=1000)
    settings.ensure_dirs()
    upgrade(settings.database_url)
    factory = make_session_factory(make_engine(settings.database_url))
    index = IndexService(factory, encoder.model_id, encoder.dim, IndexParams(), settings.index_dir)
    index.open()
    ctx = JobContext(settings, factory, lambda: encoder)
    ctx.after_commit.append(index.catch_up)
    job, _ = jobs.create_job(factory, "ingest", {"path": str(feed), "format": "jsonl"})
    encoding = EncodeClock(encoder)
    t0 = time.perf_counter()
    with encoding:
        state = run_job(ctx, job.id, "bench")
    elapsed = time.perf_counter() - t0
    index.snapshot()
    assert state == "completed", state
    assert len(index.index) == n
    # Re-ingesting the same file: everything unchanged, nothing re-embedded.
    again, _ = jobs.create_job(factory, "ingest", {"path": str(feed), "format": "jsonl"})
    t1 = time.perf_counter()
    run_job(ctx, again.id, "bench")
    reingest = time.perf_counter() - t1
    return {
        "n": n,
        "seconds": round(elapsed, 2),
        "products_per_s": round(n / elapsed, 1),
        # Everything but the embedding: validation, hashing, database writes, index catch-up.
        "embedding_seconds": round(encoding.seconds, 2),
        "non_embedding_seconds": round(elapsed - encoding.seconds, 2),
        "reingest_unchanged_seconds": round(reingest, 2),
        "reingest_rows_per_s": round(n / reingest, 1),
        "index_vectors": len(index.index),
    }


def embed_only(texts: list[str], encoder, repeats: int) -> dict:  # type: ignore[no-untyped-def]
    from sentence_transformers import SentenceTransformer

    from models.backbones import minilm_path

    st = SentenceTransformer(str(minilm_path()), device="cpu")
    ours, theirs = [], []
    for _ in range(repeats):  # interleaved so both see the same machine state
        t = time.perf_counter()
        encoder.encode(texts)
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        st.encode(texts, batch_size=64, convert_to_numpy=True, normalize_embeddings=True)
        theirs.append(time.perf_counter() - t)
    a, b = median(ours), median(theirs)
    return {
        "texts": len(texts),
        "repeats": repeats,
        "productmatch_texts_per_s": round(len(texts) / a, 1),
        "sentence_transformers_texts_per_s": round(len(texts) / b, 1),
        "sentence_transformers_max_seq_length": st.max_seq_length,
        "ratio_productmatch_over_st": round(b / a, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--embed-texts", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="ingest", help="results file benchmarks/results/<name>.json")
    parser.add_argument(
        "--precision",
        default="fp32",
        choices=SERVING_PRECISIONS,
        help="the encoder's serving precision (PRECISION); the catalogue's vectors are tagged with it",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from app.core.config import Settings
    from app.pipeline.encoder import Encoder
    from models.product_text import embed_text

    batch_size = int(Settings.model_fields["encoder_batch_size"].default)  # the service's ENCODER_BATCH_SIZE
    encoder = Encoder.load("minilm", precision=args.precision, batch_size=batch_size)
    info = machine()
    runs = [ingest(int(n), encoder, args.seed) for n in args.sizes.split(",")]
    texts = [embed_text(p) for p in catalogue(args.embed_texts, args.seed + 1)]
    embed = embed_only(texts, encoder, args.repeats)
    path = write_result(
        args.name,
        {
            "machine": info,
            "command": " ".join(sys.argv),
            "settings": {
                "encoder": "all-MiniLM-L6-v2",
                "precision": encoder.precision,
                "max_length": 64,
                "batch_size": batch_size,
                "chunk_rows": 1000,
                "database": "sqlite",
                "index": "flat",
            },
            "ingest": runs,
            "embedding_only": embed,
        },
    )
    print(path.read_text())


if __name__ == "__main__":
    main()
