"""The plain pipeline a user would write, as an HTTP service: the baseline of bench_match_capacity.py.

sentence-transformers `encode` of the offer title, exact inner-product top-k in a FAISS flat
index, titles from memory; no database read, no scorer, no decision. It serves the vectors and
titles of a catalogue folder left by bench_ingest.py (the same MiniLM weights and the same
product vectors as the service), so the two differ only in what the service does on top.

    .venv/bin/python benchmarks/plain_st_server.py --data-dir benchmarks/out/cat-100000 --port 8790
"""

from __future__ import annotations

import argparse
import logging
import sqlite3
import sys
from collections import Counter
from pathlib import Path

import faiss
import numpy as np
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel, Field

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.backbones import minilm_path  # noqa: E402

logger = logging.getLogger("plain_st_server")


class Offer(BaseModel):
    title: str = Field(min_length=1, max_length=2000)


class MatchRequest(BaseModel):
    offer: Offer
    top_k: int = Field(default=10, ge=1, le=100)


def load_catalogue(db: Path) -> tuple[list[str], list[str], np.ndarray]:
    """External ids, titles and unit vectors of the model most products are embedded with."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        counts = Counter(dict(con.execute("SELECT model_id, COUNT(*) FROM product_embeddings GROUP BY model_id")))
        model_id = counts.most_common(1)[0][0]
        rows = con.execute(
            "SELECT p.external_id, p.title, e.vector FROM products p "
            "JOIN product_embeddings e ON e.product_id = p.id WHERE e.model_id = ? ORDER BY p.id",
            (model_id,),
        ).fetchall()
    finally:
        con.close()
    ids = [r[0] for r in rows]
    titles = [r[1] for r in rows]
    vectors = np.vstack([np.frombuffer(r[2], dtype=np.float32) for r in rows])
    logger.info("loaded %d vectors of %s (dim %d)", len(ids), model_id, vectors.shape[1])
    return ids, titles, vectors


def build_app(data_dir: Path, threads: int) -> FastAPI:
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    ids, titles, vectors = load_catalogue(data_dir / "productmatch.db")
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    model = SentenceTransformer(str(minilm_path()), device="cpu")
    app = FastAPI()

    @app.get("/readyz")
    def ready() -> dict[str, str]:
        return {"status": "ready"}

    @app.post("/v1/match")
    def match(req: MatchRequest) -> dict:
        query = model.encode([req.offer.title], normalize_embeddings=True, convert_to_numpy=True)
        scores, rows = index.search(query.astype(np.float32), req.top_k)
        return {
            "candidates": [
                {"external_id": ids[i], "title": titles[i], "score": float(s)}
                for s, i in zip(scores[0], rows[0])
                if i >= 0
            ]
        }

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, default=8790)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    uvicorn.run(build_app(args.data_dir, args.threads), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
