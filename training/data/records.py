"""Typed records shared by every benchmark reader.

A reader turns one on-disk format into a :class:`PairDataset` made of :class:`Pair` objects whose
sides are :class:`Record` objects, so the rest of the training code never sees a format quirk.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from models.product_text import title_of

logger = logging.getLogger(__name__)

#: Split names a dataset may carry, in canonical order.
SPLIT_NAMES: tuple[str, ...] = ("train", "valid", "test")


@dataclass(frozen=True)
class Record:
    """One offer / product record.

    ``fields`` maps attribute name -> value in schema order; a missing value is ``None``.
    """

    id: str
    fields: dict[str, str | None]
    cluster_id: str | None = None
    source: str | None = None

    # ``fields`` is a dict, so the dataclass-generated hash would raise; hash its items instead so
    # records can live in sets and serve as dict keys.
    def __hash__(self) -> int:
        return hash((self.id, self.cluster_id, self.source, tuple(self.fields.items())))

    @property
    def title(self) -> str:
        """Value of the first present title-like field (``title``, then ``name``), else ``""``."""
        return title_of(self.fields)


@dataclass(frozen=True)
class Pair:
    """A labelled pair: ``label`` is 1 for a match, 0 for a non-match."""

    left: Record
    right: Record
    label: int
    pair_id: str | None = None


@dataclass
class PairDataset:
    """A benchmark: labelled splits plus, where known, the full left/right tables."""

    name: str
    format: str
    splits: dict[str, list[Pair]]
    left_table: dict[str, Record] | None = None
    right_table: dict[str, Record] | None = None
    attributes: list[str] = field(default_factory=list)

    def split(self, name: str) -> list[Pair]:
        """The pairs of split ``name``; a missing split raises a ``KeyError`` naming the available ones."""
        try:
            return self.splits[name]
        except KeyError:
            available = ", ".join(self.splits) or "none"
            raise KeyError(f"dataset {self.name!r} has no split {name!r}; available splits: {available}") from None

    def fingerprint(self) -> str:
        """sha256 hex digest of a canonical serialisation of all splits (content, labels, order).

        Each distinct record is hashed once and pairs refer to the record digest, so large tables
        with long descriptions are not re-serialised for every pair they appear in.
        """
        record_digests: dict[int, str] = {}
        outer = hashlib.sha256()
        for split_name in sorted(self.splits):
            outer.update(_canonical(["split", split_name, len(self.splits[split_name])]))
            for pair in self.splits[split_name]:
                left = _record_digest(pair.left, record_digests)
                right = _record_digest(pair.right, record_digests)
                outer.update(_canonical([pair.pair_id, int(pair.label), left, right]))
        return outer.hexdigest()

    def stats(self) -> dict[str, dict[str, int]]:
        """Rows / positives / negatives per split (for logs and manifests)."""
        out: dict[str, dict[str, int]] = {}
        for name, pairs in self.splits.items():
            pos = sum(1 for p in pairs if p.label == 1)
            out[name] = {"rows": len(pairs), "pos": pos, "neg": len(pairs) - pos}
        return out


def _canonical(obj: object) -> bytes:
    # One JSON value per line: unambiguous framing, stable key order, no locale dependence.
    return (json.dumps(obj, ensure_ascii=False, separators=(",", ":"), sort_keys=True) + "\n").encode()


def _record_digest(record: Record, memo: dict[int, str]) -> str:
    # Keyed by object identity: readers share one Record object per table row, and the dataset
    # keeps every record alive for the duration of the call, so ids cannot be reused.
    key = id(record)
    digest = memo.get(key)
    if digest is None:
        payload = [record.id, record.source, record.cluster_id, [list(kv) for kv in record.fields.items()]]
        digest = hashlib.sha256(_canonical(payload)).hexdigest()
        memo[key] = digest
    return digest


def table_from_records(records: Iterable[Record]) -> dict[str, Record]:
    """Deduplicate records by id, keeping the first one seen (for formats without tables)."""
    table: dict[str, Record] = {}
    conflicts = 0
    for record in records:
        seen = table.get(record.id)
        if seen is None:
            table[record.id] = record
        elif seen is not record and seen.fields != record.fields:
            conflicts += 1
    if conflicts:
        logger.warning("%d records share an id with different content; kept the first of each", conflicts)
    return table
