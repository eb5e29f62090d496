"""Keep a process's FAISS index in step with the database.

The database is the source of truth. Every product write appends to `index_changes` in the
same transaction, so an index at version `v` (the last applied sequence number) catches up
by replaying the log after `v`. Any number of API and worker processes can therefore share
one database: none of them can leave the index and the rows disagreeing, and a snapshot on
disk is only a shortcut that makes start-up fast.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from app.core.config import Settings
from app.db import products as repo
from app.search.params import IndexParams
from app.search.persistence import IndexCorrupt
from app.search.vector_index import VectorIndex

logger = logging.getLogger(__name__)

REPLAY_BATCH = 5000


@dataclass
class ConsistencyReport:
    missing: list[int] = field(default_factory=list)  # rows with a vector, absent from the index
    orphans: list[int] = field(default_factory=list)  # index entries without a row
    repaired: bool = False

    @property
    def consistent(self) -> bool:
        return not self.missing and not self.orphans


def _slug(model_id: str) -> str:
    """A file-name-safe, unique stand-in for ``model_id`` in the snapshot's name.

    A lossy slug (characters replaced, or cut at 120) gets a hash of the full id: otherwise two
    models could share a snapshot, e.g. a long encoder path with and without its ``+bf16``
    precision tag, and the index would serve one precision's vectors for the other.
    """
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", model_id)
    if slug == model_id and len(slug) <= 120:
        return slug
    return f"{slug[:111]}-{hashlib.sha256(model_id.encode('utf-8')).hexdigest()[:8]}"


class IndexService:
    def __init__(
        self,
        factory: sessionmaker[Session],
        model_id: str,
        dim: int,
        params: IndexParams,
        index_dir: Path,
        snapshot_every: int = 5000,
    ) -> None:
        self.factory = factory
        self.model_id = model_id
        self.dim = dim
        self.params = params
        self.snapshot_path = Path(index_dir) / f"{_slug(model_id)}.{params.kind}.pmindex"
        self.snapshot_every = snapshot_every
        self.index = VectorIndex(dim, params)
        self._sync_lock = threading.Lock()
        self._snapshot_version = -1
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(
        cls, factory: sessionmaker[Session], settings: Settings, model_id: str, dim: int, kind: str | None = None
    ) -> IndexService:
        """The index of `model_id` as configured: INDEX_KIND (unless `kind`), INDEX_DIR, INDEX_SNAPSHOT_EVERY."""
        return cls(
            factory,
            model_id,
            dim,
            IndexParams(kind=kind or settings.index_kind),
            settings.index_dir,  # type: ignore[arg-type]  # never None: Settings fills it in its validator
            snapshot_every=settings.index_snapshot_every,
        )

    # -- start-up -------------------------------------------------------------------------
    def open(self) -> ConsistencyReport:
        """Load the snapshot (or rebuild), replay the log, then check and repair."""
        loaded = self.load_snapshot()
        if not loaded:
            self.rebuild()
        self.catch_up()
        report = self.verify(repair=True)
        if not report.consistent:
            logger.warning(
                "index repaired at start-up: %d missing, %d orphan entries",
                len(report.missing),
                len(report.orphans),
            )
        return report

    def load_snapshot(self) -> bool:
        if not self.snapshot_path.exists():
            return False
        try:
            index = VectorIndex.load(self.snapshot_path)
        except (IndexCorrupt, ValueError, OSError) as exc:
            logger.warning("ignoring unusable index snapshot %s: %s", self.snapshot_path, exc)
            return False
        if index.dim != self.dim or index.params.kind != self.params.kind:
            logger.warning("snapshot %s does not fit the configured index; rebuilding", self.snapshot_path)
            return False
        self.index = index
        self._snapshot_version = index.version
        logger.info("loaded index snapshot version %d with %d vectors", index.version, len(index))
        return True

    # -- keeping up -----------------------------------------------------------------------
    def catch_up(self) -> int:
        """Apply every logged change after the index version; returns how many were applied."""
        applied = 0
        with self._sync_lock:
            while True:
                with self.factory() as session:
                    changes = repo.changes_since(session, self.index.version, REPLAY_BATCH)
                    if not changes:
                        break
                    last_op: dict[int, str] = {}
                    for _seq, pid, op in changes:
                        last_op[pid] = op
                    upserts = [pid for pid, op in last_op.items() if op == "u"]
                    found = repo.vectors_for(session, upserts, self.model_id)
                version = changes[-1][0]
                gone = [pid for pid, op in last_op.items() if op == "d" or pid not in found]
                if found:
                    ids = np.fromiter(found.keys(), dtype=np.int64, count=len(found))
                    vectors = np.stack([found[int(i)][0] for i in ids])
                    self.index.upsert(
                        ids,
                        vectors,
                        [found[int(i)][1] for i in ids],
                        [found[int(i)][2] for i in ids],
                        version=version,
                    )
                if gone:
                    self.index.remove(np.asarray(gone, dtype=np.int64), version=version)
                if not found and not gone:
                    self.index.remove(np.zeros(0, dtype=np.int64), version=version)
                applied += len(changes)
        return applied

    def rebuild(self) -> None:
        """Rebuild from every stored vector, then swap in one assignment."""
        with self._sync_lock:
            with self.factory() as session:
                # Read the log position first: changes racing with the scan replay idempotently.
                version = repo.max_change_seq(session)
                parts = list(repo.iter_all_vectors(session, self.model_id))
            if parts:
                ids = np.concatenate([p[0] for p in parts])
                vectors = np.concatenate([p[1] for p in parts])
                brands = [b for p in parts for b in p[2]]
                categories = [c for p in parts for c in p[3]]
            else:
                ids = np.zeros(0, dtype=np.int64)
                vectors = np.zeros((0, self.dim), dtype=np.float32)
                brands, categories = [], []
            self.index.rebuild(ids, vectors, brands, categories, version=version)
            logger.info("index rebuilt: %d vectors at version %d", len(ids), version)

    def verify(self, repair: bool = False) -> ConsistencyReport:
        """Compare the index's ids with the rows that carry a vector for this model."""
        with self.factory() as session:
            db_ids = repo.embedded_ids(session, self.model_id)
        index_ids = self.index.ids()
        report = ConsistencyReport(
            missing=[int(i) for i in np.setdiff1d(db_ids, index_ids)],
            orphans=[int(i) for i in np.setdiff1d(index_ids, db_ids)],
        )
        if repair and not report.consistent:
            with self._sync_lock, self.factory() as session:
                found = repo.vectors_for(session, report.missing, self.model_id)
                if found:
                    ids = np.fromiter(found.keys(), dtype=np.int64, count=len(found))
                    self.index.upsert(
                        ids,
                        np.stack([found[int(i)][0] for i in ids]),
                        [found[int(i)][1] for i in ids],
                        [found[int(i)][2] for i in ids],
                    )
                if report.orphans:
                    self.index.remove(np.asarray(report.orphans, dtype=np.int64))
            report.repaired = True
        return report

    # -- persistence ----------------------------------------------------------------------
    def snapshot(self) -> Path:
        with self._sync_lock:
            self.snapshot_path.parent.mkdir(parents=True, exist_ok=True)
            self.index.save(self.snapshot_path)
            self._snapshot_version = self.index.version
        return self.snapshot_path

    def maybe_snapshot(self) -> None:
        if self.index.version - self._snapshot_version >= self.snapshot_every:
            self.snapshot()

    # -- background follower ----------------------------------------------------------------
    def start_follower(self, interval: float) -> None:
        """Poll the change log so writes made by other processes reach this index."""

        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.catch_up()
                    self.maybe_snapshot()
                except Exception:  # noqa: BLE001 - a DB outage must not kill the follower
                    logger.exception("index follower could not sync; will retry")
                    time.sleep(min(5.0, interval * 4))

        self._thread = threading.Thread(target=loop, name="index-follower", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
