"""The recipe's sources as the service would store them: each benchmark read by its own reader,
every record mapped onto the service's product fields (title, brand, category, price,
description), so training serialises exactly what serving serialises.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.data.readers import data_root, load_dataset
from training.data.records import Pair, PairDataset, Record
from training.default_recipe.config import SourceSpec

logger = logging.getLogger(__name__)

Product = dict[str, Any]

_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")
# The raw schema.org titles of WDC LSPC carry language tags and quotes: "..."@en, "..."@en-US.
_LANG_TAG = re.compile(r'"@[a-z]{2}(?:-[A-Za-z]{2})?')
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class ProductPair:
    """A labelled pair of service product mappings, with where it came from."""

    left: Product
    right: Product
    label: int
    source: str
    left_id: str
    right_id: str


@dataclass
class SourceData:
    """One source's training and validation pairs (and, for LOO, its test pairs) as products."""

    spec: SourceSpec
    train: list[ProductPair]
    valid: list[ProductPair]
    test: list[ProductPair]
    fingerprint: str
    # record id -> cluster id of the training records, where the clusters tell every match
    left_clusters: dict[str, str] | None = None
    right_clusters: dict[str, str] | None = None
    # the same over training and validation records: judges ranked validation candidates
    # (ranked.py); never the test records
    judge_left_clusters: dict[str, str] | None = None
    judge_right_clusters: dict[str, str] | None = None

    @property
    def name(self) -> str:
        return self.spec.name


def parse_price(value: object) -> float | None:
    """The service's price (a float) from a benchmark cell such as ``"$1,299.00"``; None if absent."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    match = _NUMBER.search(str(value))
    if match is None:
        return None
    try:
        return float(match.group(0).replace(",", ""))
    except ValueError:
        return None


def clean_lspc_title(title: str) -> str:
    """``"Sony A7"@en, " Sony "@en Prices - CNET"@en`` -> ``Sony A7, Sony Prices - CNET``."""
    text = _LANG_TAG.sub(" ", title).replace('"', " ")
    return _SPACES.sub(" ", text).strip()


def to_product(record: Record, spec: SourceSpec) -> Product:
    """The record as the service stores a product: the service's fields, missing ones None."""
    product: Product = {"title": None, "brand": None, "category": spec.category, "price": None, "description": None}
    for service_field, attribute in spec.field_map.items():
        value = record.fields.get(attribute)
        if value is None or not str(value).strip():
            continue
        product[service_field] = parse_price(value) if service_field == "price" else str(value).strip()
    if spec.title_cleanup == "wdc-lspc" and product["title"]:
        product["title"] = clean_lspc_title(str(product["title"]))
    product["title"] = product["title"] or ""
    return product


def _convert(pairs: Sequence[Pair], spec: SourceSpec, memo: dict[int, Product]) -> list[ProductPair]:
    def product(record: Record) -> Product:
        key = id(record)  # readers share one Record object per table row
        if key not in memo:
            memo[key] = to_product(record, spec)
        return memo[key]

    return [
        ProductPair(product(p.left), product(p.right), int(p.label), spec.name, p.left.id, p.right.id) for p in pairs
    ]


def clusters_agree(pairs: Sequence[Pair]) -> bool:
    """Whether every pair's label is exactly "same cluster id" (and every record has one)."""
    return all(
        p.left.cluster_id is not None
        and p.right.cluster_id is not None
        and (p.left.cluster_id == p.right.cluster_id) == (p.label == 1)
        for p in pairs
    )


def source_from_dataset(dataset: PairDataset, spec: SourceSpec) -> SourceData:
    """Convert a read benchmark; cluster maps only where the clusters are complete and agree."""
    memo: dict[int, Product] = {}
    splits = {name: _convert(dataset.splits.get(name, []), spec, memo) for name in ("train", "valid", "test")}
    train_pairs = dataset.splits.get("train", [])
    known_pairs = train_pairs + dataset.splits.get("valid", [])
    left_clusters = right_clusters = judge_left = judge_right = None
    if spec.complete_clusters:
        if clusters_agree(train_pairs):
            left_clusters = {p.left.id: str(p.left.cluster_id) for p in train_pairs}
            right_clusters = {p.right.id: str(p.right.cluster_id) for p in train_pairs}
        else:
            logger.warning("%s: cluster ids disagree with the labels; no negatives are mined there", spec.name)
        if left_clusters is not None and clusters_agree(known_pairs):
            judge_left = {p.left.id: str(p.left.cluster_id) for p in known_pairs}
            judge_right = {p.right.id: str(p.right.cluster_id) for p in known_pairs}
    return SourceData(
        spec,
        splits["train"],
        splits["valid"],
        splits["test"],
        dataset.fingerprint(),
        left_clusters,
        right_clusters,
        judge_left,
        judge_right,
    )


def load_source(spec: SourceSpec, root: str | Path | None = None, **reader_overrides: Any) -> SourceData:
    """Read one source with its reader from ``root`` (default: the data root)."""
    base = Path(root) if root is not None else data_root()
    dataset = load_dataset(base / spec.path, spec.fmt, **{**spec.reader_kwargs, **reader_overrides})
    data = source_from_dataset(dataset, spec)
    logger.info(
        "source %s: %d train / %d valid pairs (%d / %d positive)",
        spec.name,
        len(data.train),
        len(data.valid),
        sum(p.label for p in data.train),
        sum(p.label for p in data.valid),
    )
    return data


def load_sources(specs: Sequence[SourceSpec], root: str | Path | None = None) -> list[SourceData]:
    """Every source with training and validation pairs; a source lacking either is an error."""
    out = []
    for spec in specs:
        data = load_source(spec, root)
        if not data.train or not data.valid:
            raise ValueError(
                f"source {spec.name} needs train and valid pairs (has {len(data.train)}/{len(data.valid)})"
            )
        out.append(data)
    return out


# ------------------------------------------------------------------------------ licences

_ROW = re.compile(r"^\|\s*`([^`/]+)/")


def licences(sources_md: str | Path | None = None) -> dict[str, str]:
    """``{data folder: licence stated in SOURCES.md}`` (rows of one folder joined with "; ")."""
    path = Path(sources_md) if sources_md is not None else data_root() / "SOURCES.md"
    if not path.is_file():
        logger.warning("%s not found: licences unknown", path)
        return {}
    found: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _ROW.match(line)
        if match is None:
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 5:
            continue
        licence = cells[-1].split(". ")[0].strip().rstrip(".")
        entries = found.setdefault(match.group(1), [])
        if licence not in entries:
            entries.append(licence)
    return {folder: "; ".join(entries) for folder, entries in found.items()}


__all__ = [
    "Product",
    "ProductPair",
    "SourceData",
    "clean_lspc_title",
    "clusters_agree",
    "licences",
    "load_source",
    "load_sources",
    "parse_price",
    "source_from_dataset",
    "to_product",
]
