"""Validation of caller input, done before any lock is taken or FAISS is touched.

FAISS fails late and unclearly on a wrong dtype, shape or NaN, and an exception half-way
through an update would leave the index and its id map disagreeing, so every array is checked
and copied into the layout FAISS wants up front.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Batch:
    """Validated rows: unique int64 ids, float32 (n, dim) C-contiguous vectors, raw attributes."""

    ids: np.ndarray
    vectors: np.ndarray
    brands: tuple[str | None, ...]
    categories: tuple[str | None, ...]

    def __len__(self) -> int:
        return len(self.ids)


def as_ids(ids: Any) -> np.ndarray:
    """1-D int64 copy; refuses floats and values outside int64 instead of silently casting."""
    arr = np.asarray(ids)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.ndim != 1:
        raise ValueError(f"ids must be 1-D, got shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise ValueError(f"ids must be integers, got dtype {arr.dtype}")
    if arr.dtype.kind == "u" and arr.max() > np.iinfo(np.int64).max:
        raise ValueError("ids must fit in int64")
    return arr.astype(np.int64, copy=True)


def as_vectors(vectors: Any, dim: int, what: str = "vectors", copy: bool = True) -> np.ndarray:
    """(n, dim) float32 C-contiguous array with finite values; a 1-D input is one row.

    `copy=False` reuses a caller array that already has that layout (a 1M-row rebuild would
    otherwise hold the catalogue twice); keep the default for anything stored for later.
    """
    arr = np.asarray(vectors, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise ValueError(f"{what} must have shape (n, {dim}), got {np.shape(vectors)}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} contain NaN or infinite values")
    if copy:
        return np.array(arr, dtype=np.float32, order="C", copy=True)
    return np.ascontiguousarray(arr, dtype=np.float32)


def _attrs(values: Sequence[str | None] | None, n: int, what: str) -> tuple[str | None, ...]:
    if values is None:
        return (None,) * n
    out = tuple(values)
    if len(out) != n:
        raise ValueError(f"{what} has {len(out)} entries for {n} ids")
    for value in out:
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{what} entries must be str or None, got {type(value).__name__}")
    return out


def make_batch(
    ids: Any,
    vectors: Any,
    brands: Sequence[str | None] | None,
    categories: Sequence[str | None] | None,
    dim: int,
    copy: bool = True,
) -> Batch:
    """Validate an upsert/rebuild batch; a repeated id keeps its last row, as a replayed log would."""
    id_arr = as_ids(ids)
    n = len(id_arr)
    vec = as_vectors(vectors, dim, copy=copy) if np.size(vectors) else np.zeros((0, dim), dtype=np.float32)
    if len(vec) != n:
        raise ValueError(f"{n} ids but {len(vec)} vectors")
    b = _attrs(brands, n, "brands")
    c = _attrs(categories, n, "categories")
    _, first_from_end = np.unique(id_arr[::-1], return_index=True)
    if len(first_from_end) != n:
        keep = np.sort(n - 1 - first_from_end)
        id_arr, vec = id_arr[keep], vec[keep]
        b = tuple(b[i] for i in keep.tolist())
        c = tuple(c[i] for i in keep.tolist())
    return Batch(id_arr, vec, b, c)
