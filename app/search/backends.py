"""The FAISS index of each kind, and how to add to, search and size it.

Keys are what FAISS stores: product ids for "flat" (IndexIDMap2 can delete), sequential slot
labels for the others. HNSW cannot `remove_ids` (faiss#3339) and IndexRefineFlat requires
sequential ids, so those kinds never delete: the id map tombstones the slot and searches pass
an IDSelector that hides tombstones. Per-query settings always travel in SearchParameters
and are never written into the shared index (faiss#2204).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import faiss
import numpy as np
import torch

from app.search.params import MIN_POINTS_PER_CENTROID, IndexParams

logger = logging.getLogger(__name__)

_MIN_REFINE_CANDIDATES = 64
# Up to this many queries a flat search is one matrix product over the stored vectors (below).
_MATMUL_MAX_QUERIES = 8
_EMPTY_SCORE = np.float32(-np.finfo(np.float32).max)  # what FAISS reports for a missing result


def exact_rescore(exact_index: faiss.Index, queries: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inner products of each query with its found keys, in float64 then rounded to float32,
    re-sorted by (score desc, key asc); -1 padding stays last with score -inf."""
    found = keys >= 0
    if not found.any():
        return np.full(keys.shape, -np.inf, dtype=np.float32), keys
    vectors = exact_index.reconstruct_batch(np.ascontiguousarray(np.where(found, keys, 0).ravel(), dtype=np.int64))
    vectors = vectors.reshape(*keys.shape, -1).astype(np.float64)
    scores = np.einsum("qd,qkd->qk", queries.astype(np.float64), vectors).astype(np.float32)
    scores[~found] = -np.inf
    order = np.lexsort((np.where(found, keys, np.iinfo(np.int64).max), -scores.astype(np.float64)), axis=-1)
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(keys, order, axis=1)


def top_k_rows(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k`` best ``(scores, ids)``, by score desc then id asc; FAISS's padding
    (-FLT_MAX, -1) where a row has fewer than ``k`` entries."""
    nq, n = scores.shape
    out_scores = np.full((nq, k), _EMPTY_SCORE, dtype=np.float32)
    out_ids = np.full((nq, k), -1, dtype=np.int64)
    take = min(k, n)
    for row, row_scores in enumerate(scores):
        # Everything tied with the k-th best score is a candidate, so the id tie-break is exact.
        cut = np.partition(row_scores, n - take)[n - take]
        part = np.flatnonzero(row_scores >= cut)
        order = np.lexsort((ids[part], -row_scores[part].astype(np.float64)))[:take]
        out_scores[row, :take] = row_scores[part[order]]
        out_ids[row, :take] = ids[part[order]]
    return out_scores, out_ids


class Backend:
    """Base class: one FAISS index plus the rules for using it. The owner does the locking."""

    name = "base"
    uses_labels = True  # keys are sequential slots of the id map (else product ids)

    def __init__(self, index: faiss.Index, params: IndexParams) -> None:
        self.index = index
        self.params = params
        # Flat index over the exact stored vectors (or None): searched with a selector for small
        # filtered subsets, reconstructed from for compaction and training.
        self.exact_index: faiss.Index | None = index

    @property
    def exact_vectors(self) -> bool:
        return self.exact_index is not None

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Append vectors; label kinds get the next labels, which must equal `keys`."""
        if len(keys) and (keys[0] != self.ntotal or keys[-1] != self.ntotal + len(keys) - 1):
            raise RuntimeError(f"label kinds need sequential keys from {self.ntotal}, got {keys[:3]}...")
        self.index.add(vectors)

    def delete(self, keys: np.ndarray) -> None:
        """Label kinds keep dead vectors in place; the id map tombstones them."""

    def search(
        self, queries: np.ndarray, k: int, sel: faiss.IDSelector | None, widen: float = 1.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k keys by inner product.

        `widen` (>= 1) scales the approximate search effort (efSearch, nprobe) when a selector
        lets only a share 1/widen of the vectors through; infinity means exhaustive.
        """
        return self.index.search(queries, k, params=self.search_params(k, sel, widen))

    def search_params(self, k: int, sel: faiss.IDSelector | None, widen: float) -> Any:
        return faiss.SearchParameters(sel=sel) if sel is not None else None

    def exact_search(self, queries: np.ndarray, k: int, sel: faiss.IDSelector | None) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k over the stored vectors that `sel` lets through."""
        if self.exact_index is None:
            raise RuntimeError(f"{self.name} keeps no exact vectors")
        params = faiss.SearchParameters(sel=sel) if sel is not None else None
        return self.exact_index.search(queries, k, params=params)

    def reconstruct(self, keys: np.ndarray) -> np.ndarray:
        if self.exact_index is None:
            raise RuntimeError(f"{self.name} keeps no exact vectors")
        return self.exact_index.reconstruct_batch(np.ascontiguousarray(keys, dtype=np.int64))

    def nbytes(self) -> int:
        return self.ntotal * self.dim * 4

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name}


class FlatBackend(Backend):
    """Exact inner product; keys are product ids, so updates are remove_ids + add_with_ids.

    `remove_ids` compacts the flat storage (O(ntotal) per call), so send changes in batches.
    """

    name = "flat"
    uses_labels = False

    @classmethod
    def empty(cls, dim: int, params: IndexParams) -> FlatBackend:
        return cls(faiss.IndexIDMap2(faiss.IndexFlatIP(dim)), params)

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        self.index.add_with_ids(vectors, np.ascontiguousarray(keys, dtype=np.int64))

    def delete(self, keys: np.ndarray) -> None:
        if len(keys):
            self.index.remove_ids(faiss.IDSelectorBatch(np.ascontiguousarray(keys, dtype=np.int64)))

    def search(
        self, queries: np.ndarray, k: int, sel: faiss.IDSelector | None, widen: float = 1.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k by inner product, ties to the lower product id.

        For a few queries FAISS scans the vectors one at a time on one core (a 100k-product
        single-offer search: 16-18 ms on the 2-core Xeon); one torch matrix-vector product over
        the same stored array, on the thread pool the encoders use, takes 7 ms. numpy's BLAS is
        not used: its own spinning threads fight torch's over the same cores. Filtered searches
        and larger batches stay with FAISS.
        """
        if sel is not None or len(queries) > _MATMUL_MAX_QUERIES or self.ntotal == 0:
            return super().search(queries, k, sel, widen)
        n, dim = self.ntotal, self.dim
        flat = faiss.downcast_index(self.index.index)
        # Views into the index's own arrays: valid while the caller's lock keeps writers out.
        vectors = faiss.rev_swig_ptr(flat.get_xb(), n * dim).reshape(n, dim)
        ids = faiss.rev_swig_ptr(self.index.id_map.data(), n)
        query = np.ascontiguousarray(queries, dtype=np.float32)
        scores = (torch.from_numpy(vectors) @ torch.from_numpy(query).T).numpy().T  # (nq, n)
        return top_k_rows(scores, ids, k)

    def nbytes(self) -> int:
        # vectors + id_map (8 B) + rev_map hash node (~40 B)
        return self.ntotal * (self.dim * 4 + 48)


class ExactSideBackend(Backend):
    """Flat IndexFlatIP with sequential labels: what "ivfpq" serves before it can be trained."""

    name = "exact_side"

    @classmethod
    def empty(cls, dim: int, params: IndexParams) -> ExactSideBackend:
        return cls(faiss.IndexFlatIP(dim), params)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "trained": False}


class HNSWBackend(Backend):
    """IndexHNSWFlat with inner product; efSearch is pinned per query, raised to k if needed."""

    name = "hnsw"

    def __init__(self, index: faiss.Index, params: IndexParams) -> None:
        super().__init__(index, params)
        self.exact_index = faiss.downcast_index(index.storage)  # owned by `index`, which we keep

    @classmethod
    def empty(cls, dim: int, params: IndexParams) -> HNSWBackend:
        index = faiss.IndexHNSWFlat(dim, params.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = params.hnsw_ef_construction  # build-time field, set before any add
        return cls(index, params)

    def search(
        self, queries: np.ndarray, k: int, sel: faiss.IDSelector | None, widen: float = 1.0
    ) -> tuple[np.ndarray, np.ndarray]:
        # The graph walk scores neighbours in SIMD batches whose grouping follows the graph, so
        # the same pair can differ in the last float32 bit between two graphs of the same
        # vectors (incremental vs rebuilt). Rescoring the found keys exactly makes the answer a
        # function of the vectors alone, which restarts and rebuilds rely on.
        _, keys = super().search(queries, k, sel, widen)
        return exact_rescore(self.exact_index, queries, keys)

    def search_params(self, k: int, sel: faiss.IDSelector | None, widen: float) -> Any:
        ef = max(self.params.hnsw_ef_search, k)
        ef = math.ceil(min(ef * widen, max(ef, self.ntotal)))
        if sel is None:
            return faiss.SearchParametersHNSW(efSearch=ef)
        return faiss.SearchParametersHNSW(efSearch=ef, sel=sel)

    def nbytes(self) -> int:
        hnsw = self.index.hnsw
        graph = hnsw.neighbors.size() * 4 + hnsw.offsets.size() * 8 + hnsw.levels.size() * 4
        return super().nbytes() + int(graph)


class IVFPQBackend(Backend):
    """Trained IVF-PQ (inner product), optionally wrapped in IndexRefineFlat for exact re-ranking.

    Without refine there are no exact vectors to reconstruct, so tombstones cannot be compacted
    in place: the index logs that it needs a rebuild from the database instead.
    """

    name = "ivfpq"

    def __init__(self, index: faiss.Index, params: IndexParams) -> None:
        super().__init__(index, params)
        self.refine = isinstance(index, faiss.IndexRefine)
        self.exact_index = faiss.downcast_index(index.refine_index) if self.refine else None
        self.ivf = faiss.extract_index_ivf(index)

    @classmethod
    def train(cls, dim: int, params: IndexParams, vectors: np.ndarray) -> IVFPQBackend:
        """Train on a seeded sample of `vectors` (capped at ivf_max_train) and return it empty."""
        n = len(vectors)
        nlist = params.resolved_nlist(n)
        pq_m = params.resolved_pq_m(dim)
        # "np": skip polysemous training, which we never search with and which dominates train time.
        desc = f"IVF{nlist},PQ{pq_m}x{params.pq_nbits}np" + (",RFlat" if params.ivf_refine else "")
        index = faiss.index_factory(dim, desc, faiss.METRIC_INNER_PRODUCT)
        sample = vectors
        if n > params.ivf_max_train:
            rows = np.sort(np.random.default_rng(params.seed).choice(n, params.ivf_max_train, replace=False))
            sample = vectors[rows]
        backend = cls(index, params)
        backend._quiet_clustering(len(sample))
        index.train(np.ascontiguousarray(sample))
        logger.info("trained %s on %d of %d vectors", desc, len(sample), n)
        return backend

    def _quiet_clustering(self, n_train: int) -> None:
        """faiss prints a stderr warning below 39 points per centroid; we log it once instead."""
        ivfpq = faiss.downcast_index(self.ivf)
        for what, cp, k in (("coarse", ivfpq.cp, ivfpq.nlist), ("pq", ivfpq.pq.cp, 1 << ivfpq.pq.nbits)):
            per = n_train // k
            if per < MIN_POINTS_PER_CENTROID:
                logger.info("%s quantiser: %d training points for %d centroids", what, n_train, k)
                cp.min_points_per_centroid = max(1, per)

    def search_params(self, k: int, sel: faiss.IDSelector | None, widen: float) -> Any:
        nlist = int(self.ivf.nlist)
        nprobe = math.ceil(min(self.params.ivf_nprobe * widen, nlist))
        ivf_params = faiss.SearchParametersIVF(nprobe=nprobe)
        if sel is not None:
            ivf_params.sel = sel
        if not self.refine:
            return ivf_params
        # Small k would re-rank only a handful of PQ candidates; keep at least _MIN_REFINE_CANDIDATES.
        k_factor = max(float(self.params.ivf_refine_k_factor), _MIN_REFINE_CANDIDATES / k)
        return faiss.IndexRefineSearchParameters(k_factor=k_factor, base_index_params=ivf_params)

    def nbytes(self) -> int:
        ivf = faiss.downcast_index(self.ivf)
        codes = self.ntotal * (int(ivf.code_size) + 8)
        centroids = int(ivf.nlist) * self.dim * 4
        pq_tables = self.dim * (1 << int(ivf.pq.nbits)) * 4
        refine = self.ntotal * self.dim * 4 if self.refine else 0
        return codes + centroids + pq_tables + refine

    def describe(self) -> dict[str, Any]:
        ivf = faiss.downcast_index(self.ivf)
        return {
            "backend": self.name,
            "trained": True,
            "nlist": int(ivf.nlist),
            "pq_m": int(ivf.pq.M),
            "refine": self.refine,
        }


_BY_NAME: dict[str, type[Backend]] = {b.name: b for b in (FlatBackend, ExactSideBackend, HNSWBackend, IVFPQBackend)}
_FAISS_TYPES: dict[str, tuple[Any, ...]] = {
    "flat": (faiss.IndexIDMap2,),
    "exact_side": (faiss.IndexFlatIP,),
    "hnsw": (faiss.IndexHNSWFlat,),
    "ivfpq": (faiss.IndexRefineFlat, faiss.IndexIVFPQ),
}
_KIND_BACKENDS = {"flat": ("flat",), "hnsw": ("hnsw",), "ivfpq": ("ivfpq", "exact_side")}


def empty_backend(kind: str, dim: int, params: IndexParams) -> Backend:
    """The backend a fresh index starts with (ivfpq starts exact until it can train)."""
    if kind == "flat":
        return FlatBackend.empty(dim, params)
    if kind == "hnsw":
        return HNSWBackend.empty(dim, params)
    return ExactSideBackend.empty(dim, params)


def build_backend(dim: int, params: IndexParams, keys: np.ndarray, vectors: np.ndarray) -> Backend:
    """A filled backend for a full rebuild; ivfpq trains when it has ivf_min_train vectors."""
    if params.kind == "ivfpq" and len(vectors) >= params.ivf_min_train:
        backend: Backend = IVFPQBackend.train(dim, params, vectors)
    else:
        if params.kind == "ivfpq":
            logger.info(
                "ivfpq: %d vectors < ivf_min_train=%d; serving exact search until trained",
                len(vectors),
                params.ivf_min_train,
            )
        backend = empty_backend(params.kind, dim, params)
    if len(vectors):
        backend.add(keys, vectors)
    return backend


def backend_from_index(name: str, index: faiss.Index, params: IndexParams) -> Backend:
    """Wrap a deserialised index, refusing one whose type does not match the recorded backend."""
    if name not in _KIND_BACKENDS.get(params.kind, ()):
        raise ValueError(f"backend {name!r} does not belong to kind {params.kind!r}")
    # deserialize_index already returns the concrete class; faiss.downcast_index here would
    # return a non-owning wrapper whose index dies with the original Python object.
    if not isinstance(index, _FAISS_TYPES[name]) or (name == "exact_side" and type(index) is not faiss.IndexFlatIP):
        raise ValueError(f"stored faiss index is {type(index).__name__}, expected {name}")
    if int(index.metric_type) != faiss.METRIC_INNER_PRODUCT:
        raise ValueError("stored faiss index does not use inner product")
    return _BY_NAME[name](index, params)
