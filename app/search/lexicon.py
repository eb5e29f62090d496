"""The catalogue's BM25 index for hybrid blocking, kept in step with the database's change log.

One :class:`models.bm25.LiveBM25` over every product's embedded text (title, led by the brand)
gives the lexical candidates of a query, the BM25 score of any candidate and the term
statistics. It follows the same change log as the vector index: before a query is answered it
replays the changes up to the version the vector index has reached (the runtime follower
replays them in the background too, so a query rarely has any left), so lexical results - like
dense ones - are a function of the catalogue alone and survive a restart unchanged. Changed
products go to the index's delta; once the delta exceeds ``rebuild_ratio`` of the catalogue a
background thread rebuilds the index from the database, replays what arrived meanwhile and
swaps it in.

Locking: the database is never read under the index's lock. Queries share a read lock while
they search; replaying the log reads the changed rows first and takes the write lock only to
apply them in memory. One replay runs at a time (``_replay_lock``), so a query that needs the
log replayed further waits for that read, and a query at a version already reached never does.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from app.db import products as repo
from app.search.rwlock import RWLock
from models.bm25 import LiveBM25
from models.bm25_base import warm_up
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
        # (index, last change-log sequence number applied), replaced as one reference.
        self._state: tuple[LiveBM25, int] | None = None
        self._rw = RWLock()  # searches read the index; applying changes writes it
        self._replay_lock = threading.Lock()  # one replay (or swap) at a time
        self._building: threading.Thread | None = None
        self._building_lock = threading.Lock()

    @property
    def version(self) -> int:
        """The last change-log sequence number applied."""
        state = self._state
        return state[1] if state is not None else -1

    def open(self) -> None:
        """Build from the database now (at start-up, before the service says it is ready)."""
        if self._state is not None:
            return
        with self._replay_lock:  # nothing to search before the first build: callers wait for it
            if self._state is None:
                self._state = self._build()

    @contextmanager
    def at(self, version: int) -> Iterator[LiveBM25]:
        """The index with every change up to ``version`` applied, read-locked for the caller's use.

        The caller must not read the database inside: that would hold back every replay.
        """
        self.open()
        self._catch_up(version)
        with self._rw.read():
            state = self._state
            assert state is not None
            yield state[0]
        self._maybe_rebuild()

    def catch_up(self, version: int) -> None:
        """Replay changes up to ``version`` (the runtime follower calls this)."""
        if self._state is not None:
            self._catch_up(version)
        self._maybe_rebuild()

    def wait(self, timeout: float | None = None) -> None:
        """Wait for a background rebuild in progress (tests, orderly shutdown)."""
        building = self._building
        if building is not None:
            building.join(timeout)

    # -- internals ------------------------------------------------------------------------------
    def _catch_up(self, version: int) -> None:
        state = self._state
        if state is None or state[1] >= version:
            return  # the common case: no lock at all
        with self._replay_lock:
            while True:
                state = self._state
                assert state is not None
                index, applied = state
                if applied >= version:
                    return
                batch = self._read_changes(applied, version)  # the database, outside the index lock
                with self._rw.write():
                    _apply(index, batch)
                    self._state = (index, batch.version)

    def _read_changes(self, after: int, version: int) -> _Batch:
        """The next batch of logged changes after ``after`` up to ``version``, with current texts."""
        with self.factory() as session:
            changes = [c for c in repo.changes_since(session, after, _READ_BATCH) if c[0] <= version]
            if not changes:
                return _Batch({}, {}, version)
            last_op: dict[int, str] = {}
            for _seq, pid, op in changes:
                last_op[pid] = op
            texts = product_texts(session, [pid for pid, op in last_op.items() if op != "d"])
        return _Batch(last_op, texts, changes[-1][0])

    def _maybe_rebuild(self) -> None:
        state = self._state
        if state is None or state[0].delta_size <= max(self.rebuild_ratio * len(state[0]), _MIN_REBUILD_DELTA):
            return
        with self._building_lock:
            if self._building is not None and self._building.is_alive():
                return
            self._building = threading.Thread(target=self._rebuild, name="lexicon-rebuild", daemon=True)
            self._building.start()

    def _rebuild(self) -> None:
        try:
            fresh, version = self._build()
            while True:
                # Replay into the private fresh index without any lock, then swap once it has
                # caught up with the live one (a replay that slipped in meanwhile means one more round).
                target = self.version
                while version < target:
                    batch = self._read_changes(version, target)
                    _apply(fresh, batch)
                    version = batch.version
                with self._replay_lock:
                    if self.version <= version:
                        self._state = (fresh, version)
                        return
        except Exception:  # noqa: BLE001 - the current index keeps serving; the next change retries
            logger.exception("could not rebuild the catalogue lexicon")

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
        warm_up()  # the top-k kernel compiles here, at start-up, not in a request
        logger.info(
            "lexicon: %d products, %d terms at log version %d (%.2f s)",
            len(ids),
            len(index.stats.df),
            version,
            time.perf_counter() - started,
        )
        return index, version


@dataclass(frozen=True)
class _Batch:
    last_op: dict[int, str]  # product id -> its last logged operation in the batch
    texts: dict[int, str]  # the current text of each product that still exists
    version: int  # the sequence number the batch brings the index to


def _apply(index: LiveBM25, batch: _Batch) -> None:
    for pid in batch.last_op:
        if pid in batch.texts:
            index.upsert(pid, batch.texts[pid])
        else:
            index.remove(pid)
