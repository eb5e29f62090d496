"""The catalogue's BM25 index for hybrid blocking, kept in step with the database's change log.

One :class:`models.bm25.LiveBM25` over every product's embedded text (title, led by the brand)
gives the lexical candidates of a query and the term statistics that score every candidate.
It follows the same change log as the vector index: before a query is answered it replays the
changes up to the version the vector index has reached (the runtime follower replays them in
the background too, so a query rarely has any left), so lexical results - like dense ones -
are a function of the catalogue alone and survive a restart unchanged. Changed products go to
the index's delta; once the delta exceeds ``rebuild_ratio`` of the catalogue a background
thread rebuilds the index from the database and swaps it in, replaying what arrived meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session, sessionmaker

from app.db import products as repo
from models.bm25 import LiveBM25
from models.product_text import embed_text

logger = logging.getLogger(__name__)

_READ_BATCH = 5000
_MIN_REBUILD_DELTA = 1000
_IN_CHUNK = 1000


def product_texts(session: Session, ids: list[int]) -> dict[int, str]:
    """The embedded text (title, led by the brand) of each existing product among ``ids``."""
    out: dict[int, str] = {}
    for start in range(0, len(ids), _IN_CHUNK):
        rows = repo.titles_and_brands(session, ids[start : start + _IN_CHUNK])
        out.update({int(pid): embed_text({"title": t, "brand": b}) for pid, t, b in rows})
    return out


class CatalogueLexicon:
    def __init__(self, factory: sessionmaker[Session], rebuild_ratio: float = 0.2) -> None:
        if rebuild_ratio <= 0:
            raise ValueError(f"rebuild_ratio must be > 0, got {rebuild_ratio}")
        self.factory = factory
        self.rebuild_ratio = rebuild_ratio
        self._index: LiveBM25 | None = None
        self._version = -1
        self._lock = threading.Lock()
        self._building: threading.Thread | None = None

    @property
    def version(self) -> int:
        """The last change-log sequence number applied."""
        return self._version

    def open(self) -> None:
        """Build from the database now (at start-up, before the service says it is ready)."""
        with self._lock:
            if self._index is None:
                self._index, self._version = self._build()

    @contextmanager
    def at(self, version: int) -> Iterator[LiveBM25]:
        """The index with every change up to ``version`` applied, held for the caller's use."""
        with self._lock:
            if self._index is None:
                self._index, self._version = self._build()
            self._catch_up(version)
            yield self._index
        self._maybe_rebuild()

    def catch_up(self, version: int) -> None:
        """Replay changes up to ``version`` (the runtime follower calls this)."""
        with self._lock:
            if self._index is not None:
                self._catch_up(version)
        self._maybe_rebuild()

    def wait(self, timeout: float | None = None) -> None:
        """Wait for a background rebuild in progress (tests, orderly shutdown)."""
        building = self._building
        if building is not None:
            building.join(timeout)

    # -- internals (callers hold the lock) ------------------------------------------------------
    def _catch_up(self, version: int) -> None:
        assert self._index is not None
        while self._version < version:
            with self.factory() as session:
                changes = [c for c in repo.changes_since(session, self._version, _READ_BATCH) if c[0] <= version]
                if not changes:
                    self._version = version
                    return
                last_op: dict[int, str] = {}
                for _seq, pid, op in changes:
                    last_op[pid] = op
                texts = product_texts(session, [pid for pid, op in last_op.items() if op != "d"])
            for pid in last_op:
                if pid in texts:
                    self._index.upsert(pid, texts[pid])
                else:
                    self._index.remove(pid)
            self._version = changes[-1][0]

    def _maybe_rebuild(self) -> None:
        index = self._index
        if index is None or index.delta_size <= max(self.rebuild_ratio * len(index), _MIN_REBUILD_DELTA):
            return
        with self._lock:
            if self._building is not None and self._building.is_alive():
                return
            self._building = threading.Thread(target=self._rebuild, name="lexicon-rebuild", daemon=True)
            self._building.start()

    def _rebuild(self) -> None:
        try:
            fresh, version = self._build()
        except Exception:  # noqa: BLE001 - the current index keeps serving; the next change retries
            logger.exception("could not rebuild the catalogue lexicon")
            return
        with self._lock:
            target = self._version
            self._index, self._version = fresh, version
            self._catch_up(target)  # what arrived while the new index was being built

    def _build(self) -> tuple[LiveBM25, int]:
        started = time.perf_counter()
        ids: list[int] = []
        texts: list[str] = []
        with self.factory() as session:
            # The log position first: changes racing with the scan are replayed idempotently.
            version = repo.max_change_seq(session)
            last = 0
            while True:
                rows = repo.titles_and_brands_after(session, last, _READ_BATCH)
                if not rows:
                    break
                ids.extend(r[0] for r in rows)
                texts.extend(embed_text({"title": t, "brand": b}) for _, t, b in rows)
                last = ids[-1]
        index = LiveBM25(ids, texts)
        logger.info(
            "lexicon: %d products, %d terms at log version %d (%.2f s)",
            len(ids),
            len(index.stats.df),
            version,
            time.perf_counter() - started,
        )
        return index, version
