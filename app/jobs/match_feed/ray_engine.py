"""The bulk-matching job as a Ray Data pipeline (RAY_ADDRESS set, or engine "ray").

    read (a task per chunk, seeking to the chunk's byte offset)
      -> embed (actor pool; one GPU per actor when the cluster has GPUs, else CPU)
      -> search + score (actor pool; each actor holds the FAISS index, shipped once through
         the object store, and reads candidate rows from the database)
      -> the driver writes each chunk's part file and commits its checkpoint

The driver commits exactly as the local engine does (`ChunkCommitter`), so a job started on
one engine can resume on the other and both give the same results. Ray Data keeps the
pipeline's memory bounded by backpressure; `preserve_order` makes chunks reach the driver in
feed order, because a checkpoint is a prefix of the feed.

On a real cluster every node needs this package installed, the feed file on a path all nodes
can read (shared storage), and the database reachable (PostgreSQL); the model weights and the
index travel through the object store.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from app.core.config import Settings
from app.jobs.context import JobContext
from app.jobs.match_feed.reader import ChunkStart, FeedScan, OfferResult, iter_feed, to_offer
from app.jobs.match_feed.runner import ChunkCommitter, FeedJob, FeedPipeline, match_offers
from app.jobs.match_feed.writer import ResultRow
from app.pipeline.match import MatchPipeline
from app.registry.scorers import serving_scorer
from app.search.vector_index import VectorIndex
from models.product_text import embed_text

logger = logging.getLogger(__name__)

Batch = dict[str, np.ndarray]


def ensure_ray() -> None:
    """Join the cluster named by RAY_ADDRESS, or start a local one; reuse a running session."""
    import ray

    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS") or None, include_dashboard=False, ignore_reinit_error=True)


def _objects(values: list[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def read_chunk(batch: Batch, path: str, fmt: str) -> Batch:
    """Rows of the chunks named in `batch`, parsed and validated (bad rows carry their errors)."""
    chunks, rows, ids, offers, errors = [], [], [], [], []
    starts = zip(batch["chunk"], batch["offset"], batch["number"], batch["line"], batch["rows"])
    for chunk, offset, number, line, count in starts:
        raw_rows = iter_feed(Path(path), fmt, ChunkStart(int(offset), int(number), int(line)))
        for _, raw in islice(raw_rows, int(count)):
            result = to_offer(raw, fmt)
            chunks.append(int(chunk))
            rows.append(result.number)
            ids.append(result.offer_id or "")
            offers.append(json.dumps(result.offer) if result.offer is not None else "")
            errors.append(json.dumps(result.errors))
    return {
        "chunk": np.asarray(chunks, dtype=np.int64),
        "row": np.asarray(rows, dtype=np.int64),
        "offer_id": _objects(ids),
        "offer": _objects(offers),
        "errors": _objects(errors),
    }


def _thread_budget(num_cpus: float) -> None:
    import torch

    torch.set_num_threads(max(1, int(round(num_cpus))))


class Embedder:
    """Embeds the chunk's valid offers in one call, as the local engine does, so the
    length-sorted batches (and hence the vectors) are the same."""

    def __init__(self, model_ref: list[Any], model_id: str, batch_size: int, use_gpu: bool, num_cpus: float) -> None:
        import ray
        import torch

        _thread_budget(num_cpus)
        self.model = ray.get(model_ref[0])
        self.model_id = model_id
        self.batch_size = batch_size
        self.device = "cuda" if use_gpu and torch.cuda.is_available() else "cpu"
        self.model.to(self.device)
        self.model.eval()

    def _encode(self, texts: list[str]) -> np.ndarray:
        # BiEncoder.encode runs on the model's device (CPU or GPU) in the precision the driver
        # set on it, the one `model_id` is tagged with.
        return self.model.encode(texts, batch_size=self.batch_size)

    def __call__(self, batch: Batch) -> Batch:
        valid = [i for i, offer in enumerate(batch["offer"]) if offer]
        vectors = np.zeros((len(batch["offer"]), self.model.dim), dtype=np.float32)
        if valid:
            texts = [embed_text(json.loads(batch["offer"][i])) for i in valid]
            vectors[np.asarray(valid)] = self._encode(texts)
        return {**batch, "vector": vectors}


class _Precomputed:
    """Stands in for the encoder inside `MatchPipeline`: the vectors come from the embed stage."""

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id
        self.vectors = np.zeros((0, 0), dtype=np.float32)

    def encode(self, texts: list[str]) -> np.ndarray:
        if len(texts) != len(self.vectors):
            raise RuntimeError(f"{len(texts)} texts for {len(self.vectors)} precomputed vectors")
        return self.vectors


class _FrozenIndex:
    """The part of `IndexService` that `MatchPipeline` reads: `.index`."""

    def __init__(self, index: VectorIndex) -> None:
        self.index = index


class Searcher:
    """FAISS top-k + candidate rows + scorer + decision: `MatchPipeline.match` on given vectors."""

    def __init__(
        self,
        index_ref: list[Any],
        settings: Settings,
        model_id: str,
        k: int,
        brand: str | None,
        category: str | None,
        num_cpus: float,
    ) -> None:
        import ray

        from app.db.base import make_engine, make_session_factory

        _thread_budget(num_cpus)
        index = load_index_bytes(ray.get(index_ref[0]))
        factory = make_session_factory(make_engine(settings.database_url))
        scorer, decider = serving_scorer(settings, factory, model_id)
        self.encoder = _Precomputed(model_id)
        # Duck-typed stand-ins for what MatchPipeline reads: the encoder's precomputed vectors, the index.
        self.pipeline = FeedPipeline(
            self.encoder,  # type: ignore[arg-type]  # a stand-in, see above
            _FrozenIndex(index),  # type: ignore[arg-type]  # a stand-in, see above
            factory,
            scorer,
            decider,
            rerank_depth=settings.rerank_depth,
        )
        self.k, self.brand, self.category = k, brand, category

    def __call__(self, batch: Batch) -> Batch:
        valid = [i for i, offer in enumerate(batch["offer"]) if offer]
        offers = [
            OfferResult(int(batch["row"][i]), str(batch["offer_id"][i]), json.loads(batch["offer"][i])) for i in valid
        ]
        self.encoder.vectors = batch["vector"][np.asarray(valid, dtype=np.int64)]
        rows = match_offers(self.pipeline, offers, self.k, self.brand, self.category)
        results = [""] * len(batch["offer"])
        for i, row in zip(valid, rows):
            results[i] = json.dumps(row[2:])
        return {
            "chunk": batch["chunk"],
            "row": batch["row"],
            "offer_id": batch["offer_id"],
            "errors": batch["errors"],
            "result": _objects(results),
        }


def index_bytes(index: VectorIndex) -> bytes:
    """The index in its checked snapshot format, to ship through the object store."""
    with tempfile.TemporaryDirectory(prefix="pm-index-") as folder:
        path = Path(folder) / "index.pmindex"
        index.save(path)
        return path.read_bytes()


def load_index_bytes(data: bytes) -> VectorIndex:
    with tempfile.TemporaryDirectory(prefix="pm-index-") as folder:
        path = Path(folder) / "index.pmindex"
        path.write_bytes(data)
        return VectorIndex.load(path)


def _resources(settings: Settings) -> tuple[float, float]:
    """(CPUs, GPUs) per actor. On a small cluster the CPUs are shared out so that both actor
    pools and a read task fit at once; with room, each actor gets a whole CPU."""
    import ray

    cluster = ray.cluster_resources()
    cpus = min(1.0, float(cluster.get("CPU", 1.0)) / (2 * settings.ray_actors + 1))
    if settings.ray_gpus_per_actor is not None:
        gpus = settings.ray_gpus_per_actor
    else:
        gpus = 1.0 if cluster.get("GPU", 0.0) >= 1 else 0.0
    return cpus, gpus


def _chunk_results(rows: list[tuple[int, str, str, str]]) -> tuple[list[ResultRow], list[OfferResult]]:
    results: list[ResultRow] = []
    offers: list[OfferResult] = []
    for number, offer_id, errors, result in rows:
        if result:
            decision, match_id, top, ids, scores = json.loads(result)
            results.append((number, offer_id, decision, match_id, top, ids, scores))
            offers.append(OfferResult(number, offer_id, {}))
        else:
            offers.append(OfferResult(number, None, None, [tuple(e) for e in json.loads(errors)]))
    return results, offers


def run_ray(ctx: JobContext, feed: FeedJob, scan: FeedScan, committer: ChunkCommitter, pipeline: MatchPipeline) -> None:
    import ray
    import ray.data

    ensure_ray()
    settings = ctx.settings
    first = committer.first_chunk
    todo = [
        {"chunk": i, "offset": start.offset, "number": start.number, "line": start.line, "rows": scan.rows_in(i)}
        for i, start in enumerate(scan.chunks)
        if i >= first
    ]
    cpus, gpus = _resources(settings)
    encoder = pipeline.encoder
    # Wrapped in lists: Ray resolves only top-level ObjectRef arguments, and these must be
    # fetched inside the actor (once), not copied into every task's arguments.
    model_ref = [ray.put(encoder.model)]
    index_ref = [ray.put(index_bytes(pipeline.index.index))]
    logger.info(
        "ray: %d chunks, %d actors per stage, %.2f CPU and %.1f GPU each", len(todo), settings.ray_actors, cpus, gpus
    )

    data_ctx = ray.data.DataContext.get_current()
    saved = (data_ctx.execution_options.preserve_order, data_ctx.enable_progress_bars)
    data_ctx.execution_options.preserve_order = True
    data_ctx.enable_progress_bars = False
    try:
        ds: ray.data.Dataset = ray.data.from_items(todo, override_num_blocks=len(todo))
        ds = ds.map_batches(
            read_chunk,  # type: ignore[arg-type]  # its keyword arguments come in fn_kwargs, which Ray's types cannot express
            batch_size=1,
            batch_format="numpy",
            fn_kwargs={"path": str(feed.path), "fmt": feed.format},
            num_cpus=cpus,
        )
        ds = ds.map_batches(
            Embedder,
            batch_size=None,
            batch_format="numpy",
            fn_constructor_kwargs={
                "model_ref": model_ref,
                "model_id": encoder.model_id,
                "batch_size": getattr(encoder, "batch_size", 64),
                "use_gpu": gpus > 0,
                "num_cpus": cpus,
            },
            concurrency=(1, settings.ray_actors),
            num_cpus=cpus,
            num_gpus=gpus,
        )
        ds = ds.map_batches(
            Searcher,
            batch_size=None,
            batch_format="numpy",
            fn_constructor_kwargs={
                "index_ref": index_ref,
                "settings": settings,
                "model_id": encoder.model_id,
                "k": feed.k,
                "brand": feed.brand,
                "category": feed.category,
                "num_cpus": cpus,
            },
            concurrency=(1, settings.ray_actors),
            num_cpus=cpus,
        )
        current: int | None = None
        buffered: list[tuple[int, str, str, str]] = []
        t0 = time.perf_counter()
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for chunk, number, offer_id, errors, result in zip(
                batch["chunk"], batch["row"], batch["offer_id"], batch["errors"], batch["result"]
            ):
                chunk = int(chunk)
                if current is None:
                    current = chunk
                if chunk != current:
                    raise RuntimeError(f"ray delivered chunk {chunk} before chunk {current} was complete")
                buffered.append((int(number), str(offer_id), str(errors), str(result)))
                if len(buffered) == scan.rows_in(chunk):
                    results, offers = _chunk_results(buffered)
                    committer.commit(chunk, results, offers, time.perf_counter() - t0)
                    current, buffered, t0 = chunk + 1, [], time.perf_counter()
        if committer.checkpoint != scan.total:
            raise RuntimeError(f"ray pipeline ended at row {committer.checkpoint} of {scan.total}")
    finally:
        data_ctx.execution_options.preserve_order, data_ctx.enable_progress_bars = saved
