"""Embed every product that lacks a current vector from an encoder (new model, or a gap)."""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session, sessionmaker
from tqdm import tqdm

from app.db import products as repo
from app.db.base import serialise_writers
from app.pipeline.encoder import Encoder
from models.product_text import embed_text

logger = logging.getLogger(__name__)


def reembed_batch(factory: sessionmaker[Session], encoder: Encoder, batch: int = 512) -> int:
    """Embed up to `batch` products missing a vector for the encoder; returns how many."""
    with factory() as session:
        rows = repo.ids_needing_embedding(session, encoder.model_id, batch)
    if not rows:
        return 0
    vectors = encoder.encode([embed_text({"title": t, "brand": b}) for _, t, b, _ in rows])
    with factory() as session, session.begin():
        serialise_writers(session)
        items = [(pid, thash, vec) for (pid, _, _, thash), vec in zip(rows, vectors)]
        repo.store_vectors(session, encoder.model_id, items, set())
        repo.log_changes(session, [pid for pid, _, _ in items], "u")
    return len(rows)


def reembed_all(factory: sessionmaker[Session], encoder: Encoder, batch: int = 512) -> int:
    done = 0
    with tqdm(desc=f"embed for {encoder.model_id}", unit="product") as bar:
        while n := reembed_batch(factory, encoder, batch):
            done += n
            bar.update(n)
    return done


class GapFiller:
    """:func:`reembed_batch` for the follower's periodic check, without rescanning a catalogue
    that cannot have changed.

    Finding the gaps is an anti-join over every product (a second of database work at a million
    products). A gap only opens through a write (every product write logs a change) or a switch
    of encoder, so after a scan that found nothing, the next scan waits until the change log has
    moved or the encoder differs. The log position is read before the scan: a write committed
    during it moves the position and is looked at next time.
    """

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.factory = factory
        self._clean: tuple[str, int] | None = None

    def fill(self, encoder: Encoder, batch: int = 512) -> int:
        """Embed up to ``batch`` products missing a vector, or return 0 without a scan."""
        with self.factory() as session:
            position = (encoder.model_id, repo.max_change_seq(session))
        if position == self._clean:
            return 0
        done = reembed_batch(self.factory, encoder, batch)
        if done == 0:
            self._clean = position
        return done
