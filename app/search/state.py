"""One version of the index: a FAISS backend, its id map and the change-log version.

`IndexState` is not thread-safe on its own. `VectorIndex` mutates it only under the write lock,
searches it under the read lock, and replaces it as a whole (one reference assignment) after a
rebuild, so a search always sees ids, attributes and `version` from the same state.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import faiss
import numpy as np

from app.search.backends import Backend, ExactSideBackend, build_backend, empty_backend
from app.search.batch import Batch
from app.search.id_map import IdMap, normalize_attr
from app.search.journal import Change
from app.search.params import IndexParams

logger = logging.getLogger(__name__)

_FILTER_CACHE_MAX = 256
_MAX_WIDEN = 16.0  # cap on the efSearch/nprobe boost for filtered searches


@dataclass(frozen=True)
class SearchResult:
    """Per-query lists of product ids and inner-product scores (best first), and the index version."""

    ids: list[list[int]]
    scores: list[list[float]]
    version: int


class _Filter(NamedTuple):
    slots: np.ndarray | None  # matching live slots; None = every live slot
    selector: faiss.IDSelector | None  # hides non-matching (or tombstoned) keys from FAISS
    matching: int  # live slots the filter lets through


class IndexState:
    """Backend + id map + version; see the module docstring for the locking contract."""

    def __init__(self, backend: Backend, id_map: IdMap, version: int, params: IndexParams) -> None:
        self.backend = backend
        self.id_map = id_map
        self.version = version
        self.params = params
        self._filters: dict[tuple[int | None, int | None], _Filter] = {}
        self._compaction_warned = False

    @classmethod
    def empty(cls, dim: int, params: IndexParams, version: int = 0) -> IndexState:
        backend = empty_backend(params.kind, dim, params)
        return cls(backend, IdMap(reuse_slots=not backend.uses_labels), version, params)

    @classmethod
    def build(cls, dim: int, params: IndexParams, batch: Batch, version: int) -> IndexState:
        """A complete new state from a full snapshot (no locks needed: nobody else sees it yet)."""
        id_map = IdMap(reuse_slots=params.kind == "flat")
        slots = id_map.allocate(
            batch.ids, id_map.brands.encode(batch.brands), id_map.categories.encode(batch.categories)
        )
        keys = batch.ids if params.kind == "flat" else slots
        backend = build_backend(dim, params, keys, batch.vectors)
        return cls(backend, id_map, version, params)

    # -- writes (caller holds the write lock) ----------------------------------------------

    def apply(self, change: Change) -> bool:
        """Apply an upsert/remove; a change older than the current version is skipped as stale."""
        if change.version is not None and change.version < self.version:
            logger.debug("skipping stale %s at version %d < %d", change.action, change.version, self.version)
            return False
        if change.action == "upsert":
            self._upsert(change.batch)
        elif change.action == "remove":
            self._remove(change.batch.ids)
        else:
            raise ValueError(f"unknown change action {change.action!r}")
        if change.version is not None:
            self.version = change.version
        self._filters.clear()
        return True

    def _keys(self, slots: np.ndarray) -> np.ndarray:
        return slots if self.backend.uses_labels else self.id_map.slot_pid[slots]

    def _upsert(self, batch: Batch) -> None:
        cat, backend = self.id_map, self.backend
        slots = cat.lookup(batch.ids)
        brands = cat.brands.encode(batch.brands)
        categories = cat.categories.encode(batch.categories)
        known = slots >= 0
        same = np.zeros(len(batch), dtype=np.bool_)
        if known.any() and backend.exact_vectors:
            # An unchanged vector only updates attributes: replaying a log twice adds no tombstones.
            old = backend.reconstruct(self._keys(slots[known]))
            same[known] = np.all(old == batch.vectors[known], axis=1)
        if same.any():
            cat.set_attrs(slots[same], brands[same], categories[same])
        replace = known & ~same
        if replace.any():
            backend.delete(self._keys(slots[replace]))
            cat.release(slots[replace])
        add = ~same
        if add.any():
            new_slots = cat.allocate(batch.ids[add], brands[add], categories[add])
            backend.add(new_slots if backend.uses_labels else batch.ids[add], batch.vectors[add])

    def _remove(self, ids: np.ndarray) -> None:
        slots = self.id_map.lookup(ids)
        slots = slots[slots >= 0]
        if len(slots):
            self.backend.delete(self._keys(slots))
            self.id_map.release(slots)

    # -- reads (caller holds the read lock) ------------------------------------------------

    def search(self, queries: np.ndarray, k: int, brand: str | None, category: str | None) -> SearchResult:
        nq = len(queries)
        flt = self._filter(brand, category)
        if flt is None or flt.matching == 0:
            return SearchResult([[] for _ in range(nq)], [[] for _ in range(nq)], self.version)
        k_eff = min(k, flt.matching)
        scores, keys = self._search_keys(queries, k_eff, flt)
        pids, mask = self._to_pids(keys)
        return SearchResult(
            [row[m].tolist() for row, m in zip(pids, mask, strict=True)],
            [row[m].tolist() for row, m in zip(scores, mask, strict=True)],
            self.version,
        )

    def _search_keys(self, queries: np.ndarray, k: int, flt: _Filter) -> tuple[np.ndarray, np.ndarray]:
        """Pick the search path for a filter.

        A graph or inverted-list walk with a selective filter finds few matching candidates, so
        small filtered subsets are scored exactly on the stored vectors, and larger ones widen
        efSearch/nprobe by the inverse share of matching products (at most _MAX_WIDEN times).
        """
        backend = self.backend
        if flt.slots is None:
            return backend.search(queries, k, flt.selector)
        small = flt.matching <= self.params.filter_exact_max
        if small and backend.exact_vectors:
            return backend.exact_search(queries, k, flt.selector)
        widen = math.inf if small else min(self.id_map.n_live / flt.matching, _MAX_WIDEN)
        return backend.search(queries, k, flt.selector, widen)

    def _to_pids(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map FAISS keys to product ids; -1 padding and (defensively) dead labels are masked."""
        mask = keys >= 0
        if not self.backend.uses_labels:
            return keys, mask
        safe = np.where(mask, keys, 0)
        mask &= self.id_map.live[safe]
        return self.id_map.slot_pid[safe], mask

    def _filter(self, brand: str | None, category: str | None) -> _Filter | None:
        """Cached selector for a filter; None when a filter value is unknown (no product matches)."""
        codes: list[int | None] = []
        for raw, vocab in ((brand, self.id_map.brands), (category, self.id_map.categories)):
            if raw is None or normalize_attr(raw) is None:  # blank filter value = no filter
                codes.append(None)
                continue
            code = vocab.lookup(raw)
            if code is None:
                return None
            codes.append(code)
        key = (codes[0], codes[1])
        flt = self._filters.get(key)
        if flt is None:
            flt = self._make_filter(*key)
            if len(self._filters) >= _FILTER_CACHE_MAX:
                self._filters.clear()
            self._filters[key] = flt
        return flt

    def _make_filter(self, brand: int | None, category: int | None) -> _Filter:
        cat = self.id_map
        if brand is None and category is None:
            sel = None
            if self.backend.uses_labels and cat.n_dead:
                sel = faiss.IDSelectorBitmap(cat.bitmap())
            return _Filter(None, sel, cat.n_live)
        slots = cat.matching_slots(brand, category)
        if self.backend.uses_labels:
            sel = faiss.IDSelectorBitmap(cat.bitmap(slots))
        else:
            sel = faiss.IDSelectorBatch(cat.slot_pid[slots])
        return _Filter(slots, sel, len(slots))

    def snapshot(self) -> Batch:
        """Every live row with its exact vector, for compaction or training (needs exact vectors)."""
        cat = self.id_map
        slots = cat.live_slots()
        return Batch(
            cat.slot_pid[slots].copy(),
            np.ascontiguousarray(self.backend.reconstruct(self._keys(slots)), dtype=np.float32),
            tuple(cat.brands.decode(cat.brand[slots])),
            tuple(cat.categories.decode(cat.category[slots])),
        )

    def maintenance_reason(self) -> str | None:
        """ "train" (ivfpq has enough vectors), "compact" (too many tombstones) or None."""
        cat, backend = self.id_map, self.backend
        if isinstance(backend, ExactSideBackend) and cat.n_live >= self.params.ivf_min_train:
            return "train"
        if cat.n_dead and cat.n_dead > self.params.compact_ratio * cat.n_slots:
            if backend.exact_vectors:
                return "compact"
            if not self._compaction_warned:
                self._compaction_warned = True
                logger.warning(
                    "%d of %d slots are tombstones and %s keeps no exact vectors: rebuild from the database",
                    cat.n_dead,
                    cat.n_slots,
                    backend.name,
                )
        return None

    def stats(self) -> dict[str, Any]:
        cat, backend = self.id_map, self.backend
        return {
            "kind": self.params.kind,
            "dim": backend.dim,
            "ntotal": backend.ntotal,
            "live": cat.n_live,
            "tombstones": cat.n_dead,
            "version": self.version,
            "bytes": backend.nbytes() + cat.nbytes(),
            "params": self.params.to_dict(),
            "brands": len(cat.brands),
            "categories": len(cat.categories),
            **backend.describe(),
        }
