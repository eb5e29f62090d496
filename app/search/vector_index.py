"""Thread-safe vector index keyed by product id, derived from the database and kept in sync by a change log.

Concurrency model (RELIABILITY.md, R4):

* searches take the read lock of a write-preferring readers-writer lock and read the state
  reference once, so ids, scores and `version` always come from one consistent state;
* upserts and removes take the write lock and change the state in place (FAISS forbids
  `add`/`remove_ids` during a search: faiss#1504, #2204);
* `rebuild` (and automatic compaction/training) builds a new state without any lock, replays the
  writes that arrived meanwhile from a journal, and publishes it with one reference assignment.

Versions: `version` is the sequence number of the last change-log entry applied. A write whose
version is older than the index's is skipped as stale (at-least-once redelivery must not undo a
newer change); a write without a version is always applied and keeps the version unchanged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from app.search import persistence
from app.search.batch import Batch, as_ids, as_vectors, make_batch
from app.search.journal import Change, ChangeJournal
from app.search.params import IndexParams
from app.search.rwlock import RWLock
from app.search.state import IndexState, SearchResult

logger = logging.getLogger(__name__)

__all__ = ["SearchResult", "VectorIndex"]


class VectorIndex:
    """Inner-product vector index over products with brand/category filters.

    Args:
        dim: vector dimension.
        params: build/search parameters (kind "flat", "hnsw" or "ivfpq").
        journal_rows: rows of recent writes kept for replay onto a rebuild from a slightly older
            snapshot; writes made while a rebuild runs are always kept.

    Kinds:
        flat: `IndexIDMap2(IndexFlatIP)`, exact; an update is `remove_ids` + `add_with_ids`.
        hnsw: `IndexHNSWFlat`; it cannot delete (faiss#3339), so replaced/removed vectors become
            tombstones hidden by an IDSelector, and the index compacts itself (rebuilds from its
            own exact vectors) once tombstones exceed `compact_ratio` of the slots.
        ivfpq: `IndexIVFPQ` trained at rebuild time, wrapped in `IndexRefineFlat` when
            `ivf_refine`. Until `ivf_min_train` live vectors exist it serves exact search from a
            flat side index and trains itself automatically when that count is reached.
            Tombstones compact like hnsw when refine keeps exact vectors; without refine a
            warning asks for a rebuild from the database.

    Compaction and training run synchronously in the writer's thread that crossed the threshold;
    searches and other writers continue on the old state meanwhile, and their writes are replayed.
    """

    def __init__(self, dim: int, params: IndexParams | None = None, *, journal_rows: int = 20_000) -> None:
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        self.dim = int(dim)
        self.params = params if params is not None else IndexParams()
        self._lock = RWLock()
        self._rebuild_mutex = threading.Lock()
        self._journal = ChangeJournal(journal_rows)
        self._state = IndexState.empty(dim, self.params)

    # -- reads -----------------------------------------------------------------------------

    @property
    def version(self) -> int:
        return self._state.version

    def __len__(self) -> int:
        return self._state.id_map.n_live

    def ids(self) -> np.ndarray:
        """Sorted int64 product ids of the live vectors."""
        with self._lock.read():
            return self._state.id_map.live_pids_sorted()

    def search(
        self, queries: np.ndarray, k: int, brand: str | None = None, category: str | None = None
    ) -> SearchResult:
        """Top-k products per query by inner product, optionally filtered by brand and/or category.

        Filter values match case-insensitively after stripping; both filters intersect; a value
        no product has gives empty lists; a blank value means no filter. Lists are shorter than
        k when fewer live products match, and never contain padding or removed ids.
        """
        q = as_vectors(queries, self.dim, "queries")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        with self._lock.read():
            return self._state.search(q, int(k), brand, category)

    def stats(self) -> dict[str, Any]:
        """kind, dim, ntotal, live, tombstones, version, bytes (approximate memory), params, backend info."""
        with self._lock.read():
            return self._state.stats()

    # -- incremental writes ------------------------------------------------------------------

    def upsert(
        self,
        ids: np.ndarray,
        vectors: np.ndarray,
        brands: Sequence[str | None],
        categories: Sequence[str | None],
        version: int | None = None,
    ) -> None:
        """Insert or replace products by id; idempotent (re-sending the same rows changes nothing)."""
        batch = make_batch(ids, vectors, brands, categories, self.dim)
        self._write("upsert", batch, version)

    def remove(self, ids: np.ndarray, version: int | None = None) -> None:
        """Remove products by id; unknown ids are ignored. An empty call still advances `version`."""
        pids = np.unique(as_ids(ids))
        empty = np.zeros((0, self.dim), dtype=np.float32)
        self._write("remove", Batch(pids, empty, (), ()), version)

    def _write(self, action: str, batch: Batch, version: int | None) -> None:
        version = None if version is None else _check_version(version)
        with self._lock.write():
            change = Change(self._journal.next_op(), version, action, batch)
            applied = self._state.apply(change)
            if applied:
                self._journal.record(change)
        if applied:
            self._maintain()

    # -- rebuild -------------------------------------------------------------------------------

    def rebuild(
        self,
        ids: np.ndarray,
        vectors: np.ndarray,
        brands: Sequence[str | None],
        categories: Sequence[str | None],
        version: int,
    ) -> None:
        """Replace the whole index with a snapshot of the database taken at change-log `version`.

        The new index is built without holding the lock (searches and writes go on), then writes
        that the snapshot cannot contain are replayed onto it, and it is published in one
        assignment. Replayed are: writes versioned after `version` (even if applied before the
        rebuild started), and unversioned writes applied after it started; unversioned writes
        from before are assumed to be in the snapshot. Raises ValueError when the snapshot is
        older than the writes still held for replay (take a fresh snapshot).
        """
        version = _check_version(version)
        # No defensive copy: the batch is only read while building and is never journaled.
        batch = make_batch(ids, vectors, brands, categories, self.dim, copy=False)
        with self._rebuild_mutex:
            with self._lock.write():
                if not self._journal.replayable_since(version):
                    raise ValueError(
                        f"rebuild snapshot version {version} is older than changes that can still be "
                        f"replayed (up to {self._journal.max_evicted_version}); take a newer snapshot"
                    )
                start_op = self._journal.pin()
            self._build_and_swap(batch, version, start_op, "rebuild")

    def _build_and_swap(self, batch: Batch, version: int, start_op: int, reason: str) -> None:
        """Build off-lock, replay the journal under the write lock, publish by one assignment."""
        swapped = False
        try:
            started = time.perf_counter()
            new_state = IndexState.build(self.dim, self.params, batch, version)
            built = time.perf_counter() - started
            with self._lock.write():
                replay = self._journal.to_replay(version, start_op)
                for change in replay:
                    new_state.apply(change)
                self._state = new_state
                if reason == "rebuild":
                    self._journal.forget_before(version)
                self._journal.unpin()
                swapped = True
            logger.info(
                "%s: %d vectors at version %d built in %.2fs, %d changes replayed; now version %d",
                reason,
                len(batch),
                version,
                built,
                len(replay),
                new_state.version,
            )
        finally:
            if not swapped:
                with self._lock.write():
                    self._journal.unpin()

    def _maintain(self) -> None:
        """Compact tombstones or train ivfpq when a threshold is crossed; skipped if a rebuild runs."""
        if self._state.maintenance_reason() is None:
            return
        if not self._rebuild_mutex.acquire(blocking=False):
            return
        try:
            with self._lock.read():
                state = self._state
                reason = state.maintenance_reason()
                if reason is None:
                    return
                batch = state.snapshot()
                version = state.version
                start_op = self._journal.pin()
            self._build_and_swap(batch, version, start_op, reason)
        finally:
            self._rebuild_mutex.release()

    # -- persistence ---------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Write one self-checking file atomically (temp file in the same folder, fsync, os.replace)."""
        with self._lock.read():
            header, sections = persistence.dump_state(self._state, self.dim)
        persistence.write_index_file(path, header, sections)
        logger.info("saved index version %d (%d vectors) to %s", header["version"], header["live"], path)

    @classmethod
    def load(cls, path: str | Path, *, journal_rows: int = 20_000) -> VectorIndex:
        """Read a file written by `save`; raises IndexCorrupt or IndexFormatError (both ValueError)."""
        params, dim, state = persistence.load_state(path)
        index = cls(dim, params, journal_rows=journal_rows)
        index._state = state
        index._journal.forget_before(state.version)
        return index


def _check_version(version: Any) -> int:
    """A plain non-negative int (numpy ints would leak into JSON headers)."""
    if isinstance(version, bool) or not isinstance(version, (int, np.integer)) or version < 0:
        raise ValueError(f"version must be a non-negative integer, got {version!r}")
    return int(version)
