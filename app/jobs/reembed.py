"""Embed every product that lacks a vector from the current encoder (after a model change)."""

from __future__ import annotations

import logging

import numpy as np
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker
from tqdm import tqdm

from app.db import products as repo
from app.db.base import serialise_writers
from app.db.models import Product
from app.pipeline.encoder import Encoder
from app.pipeline.text import embed_text

logger = logging.getLogger(__name__)


def reembed_all(factory: sessionmaker[Session], encoder: Encoder, batch: int = 512) -> int:
    done = 0
    with tqdm(desc=f"re-embed for {encoder.model_id}", unit="product") as bar:
        while True:
            with factory() as session:
                rows = repo.ids_needing_embedding(session, encoder.model_id, batch)
            if not rows:
                return done
            vectors = encoder.encode([embed_text({"title": t, "brand": b}) for _, t, b in rows])
            with factory() as session, session.begin():
                serialise_writers(session)
                for (pid, _, _), vec in zip(rows, vectors):
                    session.execute(
                        update(Product)
                        .where(Product.id == pid)
                        .values(
                            embedding=np.asarray(vec, dtype=np.float32).tobytes(),
                            embedding_model=encoder.model_id,
                        )
                    )
                repo.log_changes(session, [pid for pid, _, _ in rows], "u")
            done += len(rows)
            bar.update(len(rows))
