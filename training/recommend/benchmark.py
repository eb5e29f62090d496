"""Build the recommendation benchmark from WDC Products (or any folder in its format).

Queries are offers, labels are product clusters (``cluster_id``). A label is **seen** when the
training split has offers of it; its text is a representative training title (the medoid by
token overlap), so no validation or test text leaks into seen labels. An **unseen** product has
no training offer and therefore no training title: one of its own offers (the lowest offer id)
is taken out of the queries and plays the catalogue record whose title is the label text. That
is the only way an unseen product can have a text at all, and it mirrors a catalogue that lists
a product nobody has matched yet.

Label space: every product of train, valid and test, so seen products are distractors for
unseen queries (100un) and the other way round. Test offers that also occur in training (a
quirk of the 050un file) and valid offers that also occur in test are dropped as queries.
"""

from __future__ import annotations

import logging
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from training.data.readers import read_wdc_products
from training.data.records import PairDataset, Record

logger = logging.getLogger(__name__)

DEFAULT_TEST = "000un"
TEST_SETS: tuple[str, ...] = ("000un", "050un", "100un")
_TOKEN = re.compile(r"\w+", re.UNICODE)


@dataclass
class QuerySet:
    """Queries of one split: offer ids, texts, positive label indices and whether each is seen."""

    ids: list[str]
    texts: list[str]
    targets: list[list[int]]
    seen: np.ndarray  # bool per query: its (first) positive label has training offers

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, index: np.ndarray | list[int]) -> QuerySet:
        idx = [int(i) for i in index]
        return QuerySet(
            ids=[self.ids[i] for i in idx],
            texts=[self.texts[i] for i in idx],
            targets=[self.targets[i] for i in idx],
            seen=self.seen[idx] if len(idx) else np.zeros(0, dtype=bool),
        )


@dataclass
class RecommendBenchmark:
    """Labels (products) and the train / valid / test queries that point at them."""

    name: str
    test_name: str
    label_keys: list[str]
    label_texts: list[str]
    label_seen: np.ndarray
    train: QuerySet
    valid: QuerySet | None
    test: QuerySet
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def n_labels(self) -> int:
        return len(self.label_keys)

    def describe(self) -> dict[str, Any]:
        return {
            "dataset": self.name,
            "test": self.test_name,
            "labels": self.n_labels,
            "labels_seen": int(self.label_seen.sum()),
            "train_queries": len(self.train),
            "valid_queries": len(self.valid) if self.valid is not None else 0,
            "test_queries": len(self.test),
            "test_queries_seen": int(self.test.seen.sum()),
            **self.notes,
        }


def record_text(record: Record, fields: tuple[str, ...] = ("title",)) -> str:
    """The query / label text of an offer: the named fields joined by spaces (default title)."""
    parts = [record.fields.get(f) for f in fields]
    text = " ".join(p.strip() for p in parts if p and p.strip())
    return text or record.title


def _tokens(text: str) -> set[str]:
    return set(_TOKEN.findall(text.lower()))


def representative_title(titles: list[str]) -> str:
    """The medoid of ``titles`` by token Jaccard similarity; ties go to the earlier title.

    A medoid is a real title (no synthetic text) that shares most words with the others, so
    one offer's odd wording or shop-specific suffix does not become the product's name.
    """
    if not titles:
        raise ValueError("a product needs at least one title")
    if len(titles) <= 2:
        # With two titles both are medoids; the longer one usually names more attributes.
        return max(titles, key=len) if len(titles) == 2 else titles[0]
    sets = [_tokens(t) for t in titles]
    best, best_value = 0, -1.0
    for i, a in enumerate(sets):
        value = sum(len(a & b) / max(1, len(a | b)) for j, b in enumerate(sets) if j != i)
        if value > best_value:
            best, best_value = i, value
    return titles[best]


def split_offers(dataset: PairDataset, split: str) -> dict[str, Record]:
    """Distinct offers of a split (both sides of every pair), first occurrence kept, with a cluster id."""
    offers: dict[str, Record] = {}
    missing = 0
    for pair in dataset.split(split):
        for record in (pair.left, pair.right):
            if record.cluster_id is None:
                missing += 1
                continue
            offers.setdefault(record.id, record)
    if missing:
        logger.warning("%s/%s: %d offer sides without a cluster id skipped", dataset.name, split, missing)
    return offers


def _sort_key(offer_id: str) -> tuple[int, int | str]:
    # Numeric ids sort numerically, so "the lowest offer id" does not depend on string order.
    return (0, int(offer_id)) if offer_id.isdigit() else (1, offer_id)


def build_benchmark(
    dataset: PairDataset, fields: tuple[str, ...] = ("title",), test_name: str = DEFAULT_TEST
) -> RecommendBenchmark:
    """Turn a WDC-Products-style :class:`PairDataset` (train / valid / test) into a benchmark."""
    if "train" not in dataset.splits or "test" not in dataset.splits:
        raise ValueError(f"{dataset.name}: the recommender benchmark needs train and test splits")
    train = split_offers(dataset, "train")
    valid = split_offers(dataset, "valid") if "valid" in dataset.splits else None
    test = split_offers(dataset, "test")
    if not train:
        raise ValueError(f"{dataset.name}: no training offers with a cluster id")

    by_cluster: dict[str, list[Record]] = defaultdict(list)
    for offer_id in sorted(train, key=_sort_key):
        by_cluster[train[offer_id].cluster_id].append(train[offer_id])  # type: ignore[index]
    keys: list[str] = sorted(by_cluster, key=_sort_key)
    texts: list[str] = [representative_title([record_text(r, fields) for r in by_cluster[k]]) for k in keys]
    seen_flags: list[bool] = [True] * len(keys)
    index: dict[str, int] = {k: i for i, k in enumerate(keys)}

    notes: dict[str, Any] = {"fields": list(fields)}
    # Drop leaked queries before unseen label texts are taken, so a held-out catalogue record is
    # never a dropped offer.
    test_ids = [i for i in sorted(test, key=_sort_key) if i not in train]
    notes["test_queries_dropped_in_train"] = len(test) - len(test_ids)
    valid_ids: list[str] = []
    if valid is not None:
        valid_ids = [i for i in sorted(valid, key=_sort_key) if i not in test and i not in train]
        notes["valid_queries_dropped_in_test"] = len(valid) - len(valid_ids)

    held_out: set[str] = set()
    for offers, ids in ((valid, valid_ids), (test, test_ids)):
        if offers is None:
            continue
        for offer_id in ids:
            cluster = offers[offer_id].cluster_id
            if cluster in index:
                continue
            # First offer (lowest id) of an unseen product becomes its catalogue record.
            index[cluster] = len(keys)  # type: ignore[index]
            keys.append(cluster)  # type: ignore[arg-type]
            texts.append(record_text(offers[offer_id], fields))
            seen_flags.append(False)
            held_out.add(offer_id)
    notes["unseen_label_texts_from_held_out_offers"] = len(held_out)
    seen = np.array(seen_flags, dtype=bool)

    def queries(offers: dict[str, Record], ids: list[str]) -> QuerySet:
        kept = [i for i in ids if i not in held_out]
        targets = [[index[offers[i].cluster_id]] for i in kept]  # type: ignore[index]
        return QuerySet(
            ids=kept,
            texts=[record_text(offers[i], fields) for i in kept],
            targets=targets,
            seen=np.array([bool(seen[t[0]]) for t in targets], dtype=bool),
        )

    bench = RecommendBenchmark(
        name=dataset.name,
        test_name=test_name,
        label_keys=keys,
        label_texts=texts,
        label_seen=seen,
        train=queries(train, sorted(train, key=_sort_key)),
        valid=queries(valid, valid_ids) if valid is not None else None,
        test=queries(test, test_ids),
        notes=notes,
    )
    logger.info("recommend benchmark %s", bench.describe())
    return bench


def available_test_sets(folder: str | os.PathLike[str]) -> list[str]:
    """Names ``X`` of the ``*X_gs.json[.gz]`` files in a WDC Products folder (e.g. 000un)."""
    names = []
    for path in sorted(Path(folder).glob("*_gs.json*")):
        stem = path.name.split("_gs.json")[0]
        match = re.search(r"(\d+un)$", stem)
        names.append(match.group(1) if match else stem)
    return names


def load_benchmark(
    folder: str | os.PathLike[str],
    test: str | None = None,
    train_size: str = "medium",
    valid_size: str = "medium",
    fields: tuple[str, ...] = ("title",),
) -> RecommendBenchmark:
    """Read a WDC Products folder and build the benchmark for test set ``test``.

    ``test=None`` takes 000un when present, else the first test file found, so folders with
    other names or a single test set work too.
    """
    from training.data.readers import _resolve_path

    root = _resolve_path(folder)
    if test is None:
        found = available_test_sets(root) if root.is_dir() else []
        test = DEFAULT_TEST if DEFAULT_TEST in found or not found else found[0]
    dataset = read_wdc_products(root, train_size=train_size, valid_size=valid_size, test=test)
    return build_benchmark(dataset, fields=fields, test_name=test)
