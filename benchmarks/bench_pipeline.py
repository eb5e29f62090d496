"""Match latency: our pipeline vs the plain sentence-transformers pipeline on the same weights.

    .venv/bin/python benchmarks/bench_pipeline.py --n 2000 --queries 100 --ks 10,50

The plain pipeline is what a user would write: `SentenceTransformer.encode` the offer, exact
inner-product top-k over the catalogue's vectors, `CrossEncoder.predict` on the k (offer
title, product title) pairs. Ours is `MatchPipeline.match` as the API runs it (embed, FAISS,
rows from the database, batched rerank with calibration, decision), with the vanilla and the
LEA matcher. Both rerankers are the same fine-tuned MiniLM cross-encoder folder (the vanilla
one loads in sentence-transformers' CrossEncoder as is); the product vectors are the same.
A fourth variant serves the LEA matcher with dynamic int8 Linear layers (MATCHER_QUANTIZE=int8);
ours block with hybrid BM25 + dense blocking (the default), and a fifth variant serves LEA with
dense blocking only (BLOCKING_LEXICAL_WEIGHT=0) to price the lexical stage.
Queries are interleaved across the variants so every variant sees the same machine state.
The matchers are trained for a few steps only: latency does not depend on their quality.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.bench_ingest import ingest  # noqa: E402
from benchmarks.catalogue_gen import catalogue, offer_for  # noqa: E402
from benchmarks.common import OUT, machine, percentile, write_result  # noqa: E402

logger = logging.getLogger("bench_pipeline")
warnings.filterwarnings("ignore", category=UserWarning)


def matcher_folder(arch: str, out: Path) -> Path:
    from training.data.readers import data_root, load_dataset
    from training.train_matcher import train_matcher

    folder = out / f"matcher-{arch}"
    if not (folder / "manifest.json").exists():
        dataset = load_dataset(data_root() / "abt-buy", "deepmatcher")
        train_matcher(
            dataset, folder, arch=arch, fields="title", epochs=1, max_train_pairs=64, batch_size=16, progress=False
        )
    return folder


def services_for(data_dir: Path, matcher: Path, encoder):  # type: ignore[no-untyped-def]
    from app.core.config import Settings
    from app.db import model_versions
    from app.registry import folders
    from app.services import Services

    settings = Settings(_env_file=None, data_dir=data_dir, load_demo_catalogue=False)
    services = Services.create(settings)
    for row in model_versions.list_versions(services.factory, "matcher"):
        if row.status == model_versions.ACTIVE:
            model_versions.deactivate(services.factory, "matcher")
    version = folders.register(services.factory, matcher, settings.model_dir).version
    model_versions.activate(services.factory, version)
    services.load(encoder)
    return services


def lea_pipeline(services, folder: Path, quantize: str = "none", hybrid: bool = True):  # type: ignore[no-untyped-def]
    """The same runtime (encoder, index, decider) with the LEA matcher as the reranker.

    ``hybrid=False`` drops the BM25 re-scoring of the dense pool (BLOCKING_LEXICAL_WEIGHT=0).
    """
    from app.pipeline.match import MatchPipeline
    from app.pipeline.rerank import CrossEncoderScorer

    base = services.pipeline
    scorer = CrossEncoderScorer("lea", str(folder), quantize=quantize)
    rescorer = base.rescorer if hybrid else None
    return MatchPipeline(
        base.encoder, base.index, base.factory, scorer, base.decider, rescorer, rerank_depth=base.rerank_depth
    )


def plain_pipeline(matcher: Path, vectors: np.ndarray, titles: list[str], max_length: int):  # type: ignore[no-untyped-def]
    from sentence_transformers import CrossEncoder, SentenceTransformer

    from models.backbones import minilm_path

    bi = SentenceTransformer(str(minilm_path()), device="cpu")
    bi.max_seq_length = max_length
    cross = CrossEncoder(str(matcher), device="cpu", max_length=max_length)

    def run(offer_title: str, k: int) -> list[float]:
        q = bi.encode([offer_title], normalize_embeddings=True, show_progress_bar=False)[0]
        top = np.argpartition(-(vectors @ q), k)[:k]
        return list(cross.predict([(offer_title, titles[i]) for i in top], show_progress_bar=False))

    return run


def catalogue_vectors(services) -> tuple[np.ndarray, list[str]]:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from app.db.tables import Product, ProductEmbedding

    model_id = services.encoder.model_id
    with services.factory() as session:
        rows = session.execute(
            select(ProductEmbedding.vector, Product.title)
            .join(Product, Product.id == ProductEmbedding.product_id)
            .where(ProductEmbedding.model_id == model_id)
        ).all()
    vectors = np.stack([np.frombuffer(v, dtype=np.float32) for v, _ in rows])
    return vectors, [t for _, t in rows]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=2000, help="catalogue size")
    p.add_argument("--queries", type=int, default=100)
    p.add_argument("--ks", default="10,50")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    from app.pipeline.encoder import Encoder
    from app.pipeline.match import MatchQuery

    load_before = os.getloadavg()
    encoder = Encoder.load("minilm", max_length=64)
    data_dir = OUT / f"cat-{args.n}"
    if not (data_dir / "productmatch.db").exists():
        ingest(args.n, encoder, seed=0)
    out = OUT / "pipeline-models"
    matchers = {arch: matcher_folder(arch, out) for arch in ("vanilla", "lea")}
    services = services_for(data_dir, matchers["vanilla"], encoder)
    ours = {
        "vanilla": services.pipeline,
        "lea": lea_pipeline(services, matchers["lea"]),
        "lea-int8": lea_pipeline(services, matchers["lea"], quantize="int8"),
        "lea-dense": lea_pipeline(services, matchers["lea"], hybrid=False),
    }
    vectors, titles = catalogue_vectors(services)
    plain = plain_pipeline(matchers["vanilla"], vectors, titles, 64)

    rng = random.Random(args.seed)
    products = list(catalogue(args.n))
    offers = [offer_for(products[rng.randrange(len(products))], rng) for _ in range(args.queries)]
    ks = [int(k) for k in args.ks.split(",")]
    result: dict[str, Any] = {"settings": vars(args), "ks": {}}
    for k in ks:
        runners = {
            "sentence-transformers (bi-encoder + CrossEncoder)": lambda o, k=k: plain(o["title"], k),
            "productmatch vanilla": lambda o, k=k: ours["vanilla"].match([MatchQuery(offer=o, k=k)]),
            "productmatch LEA": lambda o, k=k: ours["lea"].match([MatchQuery(offer=o, k=k)]),
            "productmatch LEA int8": lambda o, k=k: ours["lea-int8"].match([MatchQuery(offer=o, k=k)]),
            "productmatch LEA, dense blocking only": lambda o, k=k: ours["lea-dense"].match([MatchQuery(offer=o, k=k)]),
        }
        stage_ms: list[float] = []
        for run in runners.values():  # warm-up
            run(offers[0])
        ms: dict[str, list[float]] = {name: [] for name in runners}
        for offer in offers:
            for name, run in runners.items():
                t = time.perf_counter()
                out = run(offer)
                ms[name].append((time.perf_counter() - t) * 1000)
                if name == "productmatch LEA":
                    stage_ms.append(out[0].timings_ms["lexical"])
        base = percentile(ms["sentence-transformers (bi-encoder + CrossEncoder)"], 50)
        result["ks"][str(k)] = {
            name: {
                "p50_ms": round(percentile(v, 50), 1),
                "p99_ms": round(percentile(v, 99), 1),
                "p50_ratio_to_sentence_transformers": round(percentile(v, 50) / base, 3),
            }
            for name, v in ms.items()
        }
        result["ks"][str(k)]["hybrid blocking stage (BM25 top 50 + re-scoring of the candidates) p50_ms"] = round(
            percentile(stage_ms, 50), 2
        )
        logger.info("k=%d %s", k, result["ks"][str(k)])
    result["load_average_before"] = [round(x, 2) for x in load_before]
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    result["machine"] = machine()
    logger.info("wrote %s", write_result("pipeline", result))


if __name__ == "__main__":
    main()
