"""Training data for a retrain job: stored feedback labels and named benchmark folders.

Every record is normalised to one schema so that both sources train the same way and serve
the same way: ``title`` (raw title: what the matcher reads, as ``serialize_product(offer,
"title")`` does at serving time) and ``text`` (what the bi-encoder reads: ``embed_text``, the
exact string the service embeds).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from app.db import products as product_repo
from app.db.labels import effective_labels
from app.db.review_queue import earliest_items
from app.db.tables import LabeledPair, Product
from models.product_text import embed_text, title_of
from training.data.readers import load_dataset
from training.data.records import Pair, PairDataset, Record

logger = logging.getLogger(__name__)

#: Fields the retrained models read (see the module docstring).
MATCHER_FIELDS = "title"
BLOCKER_FIELDS = ["text"]
SPLITS = ("train", "valid", "test")


class RetrainDataError(ValueError):
    """The requested data cannot make a training set (too few labels, unknown folder)."""


def normalise(mapping: Mapping[str, Any]) -> dict[str, str | None]:
    title = title_of(mapping)
    brand = mapping.get("brand") or mapping.get("manufacturer")
    brand_text = str(brand) if brand not in (None, "") else None
    return {"title": title, "brand": brand_text, "text": embed_text({"title": title, "brand": brand_text})}


def _product_mapping(product: Product) -> dict[str, Any]:
    return {"title": product.title, "brand": product.brand}


def split_of(key: str, seed: int, shares: tuple[float, float] = (0.7, 0.15)) -> str:
    """A stable split per product: every label of one product lands in the same split."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < shares[0]:
        return "train"
    return "valid" if u < shares[0] + shares[1] else "test"


@dataclass
class RetrainData:
    dataset: PairDataset
    sources: dict[str, dict[str, int]] = field(default_factory=dict)
    unlabelled: list[tuple[str, str]] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {"sources": self.sources, "splits": self.dataset.stats(), "unlabelled_pairs": len(self.unlabelled)}


def feedback_pairs(
    factory: sessionmaker[Session], seed: int
) -> tuple[dict[str, list[Pair]], dict[str, Record], dict[str, Record], dict[str, int]]:
    """The latest label of every (offer, product) pair joined with the stored product."""
    labels: list[LabeledPair] = effective_labels(factory)
    wanted = {row.product_external_id for row in labels}
    with factory() as session:
        products = product_repo.by_external_ids(session, wanted)
    splits: dict[str, list[Pair]] = {s: [] for s in SPLITS}
    left: dict[str, Record] = {}
    right: dict[str, Record] = {}
    missing = 0
    for row in labels:
        product = products.get(row.product_external_id)
        if product is None:
            missing += 1  # the product was deleted since it was labelled
            continue
        offer_id = f"fb-offer:{row.offer_external_id or row.id}"
        offer = left.setdefault(offer_id, Record(offer_id, normalise(row.offer), source="feedback"))
        pid = f"fb-product:{product.external_id}"
        prod = right.setdefault(pid, Record(pid, normalise(_product_mapping(product)), source="catalogue"))
        splits[split_of(product.external_id, seed)].append(Pair(offer, prod, int(row.label)))
    stats = {"labels": len(labels), "used": sum(len(v) for v in splits.values()), "product_deleted": missing}
    stats.update({f"{s}_pairs": len(v) for s, v in splits.items()})
    return splits, left, right, stats


def catalogue_records(factory: sessionmaker[Session], limit: int) -> dict[str, Record]:
    """Up to ``limit`` catalogue products: the corpus a held-out blocking query searches."""
    with factory() as session:
        rows = product_repo.first_products(session, limit)
    return {
        f"fb-product:{p.external_id}": Record(
            f"fb-product:{p.external_id}", normalise(_product_mapping(p)), source="catalogue"
        )
        for p in rows
    }


def _renamed(record: Record, prefix: str) -> Record:
    return Record(f"{prefix}:{record.id}", normalise(record.fields), cluster_id=record.cluster_id, source=prefix)


def benchmark_pairs(
    name: str, folder: Path, fmt: str
) -> tuple[dict[str, list[Pair]], dict[str, Record], dict[str, Record], dict[str, int]]:
    try:
        source = load_dataset(folder, fmt)
    except (FileNotFoundError, ValueError) as exc:
        raise RetrainDataError(f"benchmark {name!r} cannot be read from {folder}: {exc}") from exc
    left: dict[str, Record] = {}
    right: dict[str, Record] = {}

    def side(record: Record, table: dict[str, Record], tag: str) -> Record:
        key = f"{name}:{tag}:{record.id}"
        if key not in table:
            table[key] = _renamed(record, f"{name}:{tag}")
        return table[key]

    for record in (source.right_table or {}).values():
        side(record, right, "R")
    splits: dict[str, list[Pair]] = {s: [] for s in SPLITS}
    for split in SPLITS:
        for pair in source.splits.get(split, []):
            splits[split].append(Pair(side(pair.left, left, "L"), side(pair.right, right, "R"), pair.label))
    return splits, left, right, {f"{s}_pairs": len(v) for s, v in splits.items()}


def unlabelled_candidates(factory: sessionmaker[Session], limit: int) -> list[tuple[str, str]]:
    """(offer title, product title) pairs the service showed a reviewer but nobody labelled."""
    labelled = {(r.offer_external_id, r.product_external_id) for r in effective_labels(factory)}
    out: list[tuple[str, str]] = []
    with factory() as session:
        items = earliest_items(session, limit)
        ids = {c.get("external_id") for item in items for c in (item.candidates or []) if isinstance(c, dict)}
        products = product_repo.by_external_ids(session, ids)
    for item in items:
        for cand in item.candidates or []:
            pid = cand.get("external_id") if isinstance(cand, dict) else None
            product = products.get(pid) if isinstance(pid, str) else None
            if product is None or (item.offer_external_id, pid) in labelled:
                continue
            out.append((title_of(item.offer), product.title))
            if len(out) >= limit:
                return out
    return out


def build_retrain_data(
    factory: sessionmaker[Session],
    sources: Sequence[str],
    benchmarks: Mapping[str, tuple[Path, str]],
    *,
    seed: int,
    min_labels: int,
    corpus_limit: int,
    unlabelled_limit: int = 0,
) -> RetrainData:
    """Merge the requested sources into one dataset with train / valid / test splits."""
    splits: dict[str, list[Pair]] = {s: [] for s in SPLITS}
    left: dict[str, Record] = {}
    right: dict[str, Record] = {}
    described: dict[str, dict[str, int]] = {}
    for source in sources:
        if source == "feedback":
            parts, lt, rt, stats = feedback_pairs(factory, seed)
            if stats["used"] < min_labels:
                raise RetrainDataError(
                    f"feedback holds {stats['used']} usable labels; at least {min_labels} are needed to train"
                )
            rt = catalogue_records(factory, corpus_limit) | rt
        elif source in benchmarks:
            folder, fmt = benchmarks[source]
            parts, lt, rt, stats = benchmark_pairs(source, folder, fmt)
        else:
            raise RetrainDataError(f"unknown data source {source!r}; allowed: feedback, {', '.join(benchmarks)}")
        for split in SPLITS:
            splits[split].extend(parts[split])
        left.update(lt)
        right.update(rt)
        described[source] = stats
    for split in SPLITS:
        positives = sum(p.label for p in splits[split])
        if positives == 0 or positives == len(splits[split]):
            raise RetrainDataError(
                f"the {split} split needs both matching and non-matching pairs "
                f"({positives} of {len(splits[split])} are matches); add labels"
            )
    dataset = PairDataset(
        name="retrain:" + "+".join(sources),
        format="retrain",
        splits=splits,
        left_table=left,
        right_table=right,
        attributes=["title", "brand", "text"],
    )
    unlabelled = unlabelled_candidates(factory, unlabelled_limit) if unlabelled_limit and "feedback" in sources else []
    return RetrainData(dataset, described, unlabelled)
