"""Search and build parameters of the vector index, pinned so that results are reproducible.

Every knob that changes which ids a query returns (`hnsw_ef_search`, `ivf_nprobe`, the refine
factor, the exact-search threshold for filters) lives here and is written into the index file,
so a reloaded index answers the same golden queries with identical ids (RELIABILITY.md, R3).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

KINDS = ("flat", "hnsw", "ivfpq")

# faiss warns below this many training points per centroid; we size nlist to respect it.
MIN_POINTS_PER_CENTROID = 39


@dataclass(frozen=True)
class IndexParams:
    """How the index is built and searched.

    Args:
        kind: "flat" (exact inner product), "hnsw" (graph, in-memory vectors) or "ivfpq"
            (inverted lists with product-quantised codes, optionally re-ranked exactly).
        hnsw_m: HNSW neighbours per node; more gives better recall and more memory.
        hnsw_ef_construction: HNSW candidate list while inserting.
        hnsw_ef_search: HNSW candidate list while searching (raised to `k` when `k` is larger).
        ivf_nlist: number of inverted lists; None picks about 4*sqrt(n) at build time, capped
            so that every list gets at least 39 training points.
        ivf_nprobe: inverted lists visited per query (capped at nlist).
        pq_m: PQ sub-quantisers; must divide the dimension, otherwise a divisor below it is used
            (see `resolved_pq_m`; 384 -> 48, 32 -> 8).
        pq_nbits: bits per PQ code.
        ivf_refine: wrap IVF-PQ in IndexRefineFlat, which re-ranks the candidates with the exact
            vectors; this is what makes recall@20 >= 0.99 reachable, at 4*dim bytes per vector.
        ivf_refine_k_factor: candidates fetched from IVF-PQ per result when refining (at least
            64 in all, so that small k still re-ranks a useful pool). Exact re-ranking of 64*k
            candidates is cheap next to the list scan: at 1M vectors recall@20 against exact
            search was 0.9878 at 16 and 0.9989 at 64 (docs/benchmarks/ann.md).
        ivf_min_train: fewest live vectors needed to train IVF-PQ; below it the index answers
            exactly from a flat side index (and trains itself once enough vectors arrived).
        ivf_max_train: training sample cap; k-means cost grows with the sample, not with n.
        filter_exact_max: when a brand/category filter matches at most this many products the
            index scores them exactly (flat scan of the stored vectors through a bitmap selector)
            instead of walking the graph/lists, where a selective filter starves the approximate
            search of candidates. Larger filtered sets use the ANN index with efSearch/nprobe
            raised by the inverse share of matching products (at most 16x).
        compact_ratio: rebuild automatically once tombstoned slots exceed this share of the
            slots (hnsw, ivfpq), because dead vectors still cost memory and search time.
        seed: seed of the training sample, so that rebuilds are reproducible.
    """

    kind: str = "flat"
    hnsw_m: int = 32
    hnsw_ef_construction: int = 200
    hnsw_ef_search: int = 128
    ivf_nlist: int | None = None
    ivf_nprobe: int = 32
    pq_m: int = 48
    pq_nbits: int = 8
    ivf_refine: bool = True
    ivf_refine_k_factor: float = 64.0
    ivf_min_train: int = 4096
    ivf_max_train: int = 262_144
    filter_exact_max: int = 16_384
    compact_ratio: float = 0.3
    seed: int = 1234

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        positive = {
            "hnsw_m": self.hnsw_m,
            "hnsw_ef_construction": self.hnsw_ef_construction,
            "hnsw_ef_search": self.hnsw_ef_search,
            "ivf_nprobe": self.ivf_nprobe,
            "pq_m": self.pq_m,
            "ivf_min_train": self.ivf_min_train,
            "ivf_max_train": self.ivf_max_train,
        }
        for name, value in positive.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.ivf_nlist is not None and (not isinstance(self.ivf_nlist, int) or self.ivf_nlist < 1):
            raise ValueError(f"ivf_nlist must be None or a positive integer, got {self.ivf_nlist!r}")
        if self.pq_nbits not in range(1, 17):
            raise ValueError(f"pq_nbits must be in 1..16, got {self.pq_nbits!r}")
        if not self.ivf_refine_k_factor >= 1.0:
            raise ValueError(f"ivf_refine_k_factor must be >= 1, got {self.ivf_refine_k_factor!r}")
        if not isinstance(self.filter_exact_max, int) or self.filter_exact_max < 0:
            raise ValueError(f"filter_exact_max must be >= 0, got {self.filter_exact_max!r}")
        if not 0.0 < self.compact_ratio < 1.0:
            raise ValueError(f"compact_ratio must be in (0, 1), got {self.compact_ratio!r}")

    @property
    def exact_scores(self) -> bool:
        """Whether a search returns the exact inner products of the hits it returns.

        Flat scans exactly, HNSW rescores its hits on the stored vectors, and IVF-PQ does so
        when refined; only unrefined IVF-PQ returns product-quantised approximations.
        """
        return self.kind != "ivfpq" or self.ivf_refine

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe dict, written into index files and manifests."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> IndexParams:
        """Inverse of `to_dict`; unknown keys are refused so that typos do not go unnoticed."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown IndexParams field(s): {', '.join(unknown)}")
        return cls(**dict(d))

    def resolved_pq_m(self, dim: int) -> int:
        """`pq_m` if it divides `dim`; otherwise the largest divisor of `dim` below `pq_m` that keeps
        at least 4 dimensions per sub-quantiser (1-dimensional sub-quantisers train slowly and
        compress nothing useful)."""
        if dim % self.pq_m == 0:
            return self.pq_m
        divisors = [m for m in range(1, min(self.pq_m, dim) + 1) if dim % m == 0]
        wide = [m for m in divisors if dim // m >= 4]
        best = max(wide or divisors)
        logger.info("pq_m=%d does not divide dim=%d; using pq_m=%d", self.pq_m, dim, best)
        return best

    def resolved_nlist(self, n: int) -> int:
        """Inverted lists for `n` training vectors.

        The automatic value (~4*sqrt(n)) is capped at n/39 so that k-means has enough points per
        centroid; an explicit `ivf_nlist` is only capped at n, which k-means strictly needs.
        """
        if n < 1:
            raise ValueError("cannot size IVF lists for an empty training set")
        if self.ivf_nlist is not None:
            return max(1, min(self.ivf_nlist, n))
        auto = int(round(4 * math.sqrt(n)))
        return max(1, min(auto, n // MIN_POINTS_PER_CENTROID))
