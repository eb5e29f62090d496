"""Id map and filter attributes kept next to the FAISS index, in flat numpy columns.

The index stores vectors under *keys*: product ids for the flat kind, sequential slot numbers
(labels) for hnsw and ivfpq, which cannot delete in place and therefore tombstone. The id map
holds, per slot, the product id, the brand and category codes and a live flag, plus a
product id -> slot dict. Columns instead of per-product Python objects keep a million products
at a few tens of MB, and let a filter be one vectorised comparison.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

NO_VALUE = 0  # attribute code of a product without brand/category

_COLUMNS = {"slot_pid": np.int64, "brand": np.int32, "category": np.int32, "live": np.bool_}


def normalize_attr(value: str | None) -> str | None:
    """Filters compare case-insensitively after stripping; blank means "no value"."""
    if value is None:
        return None
    text = str(value).strip().casefold()
    return text or None


class Vocabulary:
    """Interns normalised attribute values as small integer codes (0 is reserved for "none")."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self.values: list[str] = [""]
        self._codes: dict[str, int] = {}
        for value in values:
            self._intern(value)

    def __len__(self) -> int:
        return len(self.values) - 1

    def _intern(self, norm: str) -> int:
        code = self._codes.get(norm)
        if code is None:
            code = len(self.values)
            self.values.append(norm)
            self._codes[norm] = code
        return code

    def encode(self, raw: Sequence[str | None]) -> np.ndarray:
        """Codes for raw values, adding unseen ones; a per-call cache keeps 1M rows cheap."""
        out = np.empty(len(raw), dtype=np.int32)
        seen: dict[str | None, int] = {}
        for i, value in enumerate(raw):
            code = seen.get(value)
            if code is None:
                norm = normalize_attr(value)
                code = NO_VALUE if norm is None else self._intern(norm)
                seen[value] = code
            out[i] = code
        return out

    def lookup(self, raw: str) -> int | None:
        """Code of a filter value, or None when no product ever had it."""
        norm = normalize_attr(raw)
        return None if norm is None else self._codes.get(norm)

    def decode(self, codes: np.ndarray) -> list[str | None]:
        return [self.values[c] if c != NO_VALUE else None for c in codes.tolist()]

    def to_list(self) -> list[str]:
        return self.values[1:]


class IdMap:
    """Slot-aligned columns for one index state. Not thread-safe: the owner locks.

    Args:
        reuse_slots: reuse freed slots (flat kind, whose FAISS keys are product ids, so slots
            are private); label kinds never reuse a slot because its vector stays in FAISS.
    """

    def __init__(self, reuse_slots: bool) -> None:
        self.reuse_slots = reuse_slots
        self.slot_pid = np.empty(0, dtype=np.int64)
        self.brand = np.empty(0, dtype=np.int32)
        self.category = np.empty(0, dtype=np.int32)
        self.live = np.empty(0, dtype=np.bool_)
        self.n_slots = 0
        self.n_live = 0
        self.pid_to_slot: dict[int, int] = {}
        self.free: list[int] = []
        self.brands = Vocabulary()
        self.categories = Vocabulary()

    @property
    def n_dead(self) -> int:
        """Slots whose vector is still in FAISS but no longer live (tombstones)."""
        return 0 if self.reuse_slots else self.n_slots - self.n_live

    def _reserve(self, extra: int) -> None:
        need = self.n_slots + extra
        if need <= len(self.live):
            return
        cap = max(need, 2 * len(self.live), 64)
        for name in _COLUMNS:
            old = getattr(self, name)
            new = np.zeros(cap, dtype=old.dtype)
            new[: self.n_slots] = old[: self.n_slots]
            setattr(self, name, new)

    def lookup(self, pids: np.ndarray) -> np.ndarray:
        """Slot of each product id, -1 where unknown."""
        get = self.pid_to_slot.get
        return np.fromiter((get(p, -1) for p in pids.tolist()), dtype=np.int64, count=len(pids))

    def allocate(self, pids: np.ndarray, brands: np.ndarray, categories: np.ndarray) -> np.ndarray:
        """Give new live slots to products that have none; returns the slots in input order."""
        m = len(pids)
        reused: list[int] = []
        if self.reuse_slots and self.free:
            take = min(m, len(self.free))
            reused = self.free[-take:]
            del self.free[-take:]
        fresh = m - len(reused)
        self._reserve(fresh)
        new = np.arange(self.n_slots, self.n_slots + fresh, dtype=np.int64)
        slots = np.concatenate([np.asarray(reused, dtype=np.int64), new])
        self.n_slots += fresh
        self.slot_pid[slots] = pids
        self.brand[slots] = brands
        self.category[slots] = categories
        self.live[slots] = True
        self.pid_to_slot.update(zip(pids.tolist(), slots.tolist(), strict=True))
        self.n_live += m
        return slots

    def release(self, slots: np.ndarray) -> None:
        """Mark slots dead and forget their product ids."""
        for pid in self.slot_pid[slots].tolist():
            del self.pid_to_slot[pid]
        self.live[slots] = False
        self.n_live -= len(slots)
        if self.reuse_slots:
            self.free.extend(slots.tolist())

    def set_attrs(self, slots: np.ndarray, brands: np.ndarray, categories: np.ndarray) -> None:
        self.brand[slots] = brands
        self.category[slots] = categories

    def live_slots(self) -> np.ndarray:
        return np.flatnonzero(self.live[: self.n_slots])

    def live_pids_sorted(self) -> np.ndarray:
        return np.sort(self.slot_pid[self.live_slots()])

    def matching_slots(self, brand: int | None, category: int | None) -> np.ndarray:
        """Live slots whose codes equal the given ones (None = any)."""
        mask = self.live[: self.n_slots].copy()
        if brand is not None:
            mask &= self.brand[: self.n_slots] == brand
        if category is not None:
            mask &= self.category[: self.n_slots] == category
        return np.flatnonzero(mask)

    def bitmap(self, slots: np.ndarray | None = None) -> np.ndarray:
        """Little-endian bitmap over slots, the layout faiss.IDSelectorBitmap reads."""
        mask = self.live[: self.n_slots]
        if slots is not None:
            mask = np.zeros(self.n_slots, dtype=np.bool_)
            mask[slots] = True
        return np.packbits(mask, bitorder="little")

    def nbytes(self) -> int:
        """Approximate memory: used column rows plus ~100 bytes per dict entry (two ints and a slot).

        Spare capacity is left out so that the figure does not change across save and load.
        """
        columns = self.n_slots * sum(np.dtype(dtype).itemsize for dtype in _COLUMNS.values())
        return columns + 100 * len(self.pid_to_slot) + 8 * len(self.free)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name)[: self.n_slots].copy() for name in _COLUMNS}

    @classmethod
    def from_arrays(
        cls,
        reuse_slots: bool,
        arrays: Mapping[str, np.ndarray],
        brand_values: Sequence[str],
        category_values: Sequence[str],
    ) -> IdMap:
        """Inverse of `to_arrays`; raises ValueError when the columns do not fit together."""
        cat = cls(reuse_slots)
        lengths = {name: len(arrays[name]) for name in _COLUMNS}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"id map columns differ in length: {lengths}")
        for name, dtype in _COLUMNS.items():
            setattr(cat, name, np.ascontiguousarray(arrays[name], dtype=dtype).copy())
        cat.n_slots = len(cat.live)
        cat.brands = Vocabulary(brand_values)
        cat.categories = Vocabulary(category_values)
        if len(cat.brands) != len(brand_values) or len(cat.categories) != len(category_values):
            raise ValueError("attribute vocabularies contain duplicates")
        for name, vocab in (("brand", cat.brands), ("category", cat.categories)):
            codes = getattr(cat, name)
            if len(codes) and (codes.min() < 0 or codes.max() > len(vocab)):
                raise ValueError(f"{name} codes fall outside the stored vocabulary")
        live = cat.live_slots()
        pids = cat.slot_pid[live]
        cat.pid_to_slot = dict(zip(pids.tolist(), live.tolist(), strict=True))
        if len(cat.pid_to_slot) != len(live):
            raise ValueError("a product id is live in more than one slot")
        cat.n_live = len(live)
        if reuse_slots:
            cat.free = np.flatnonzero(~cat.live).tolist()
        return cat
