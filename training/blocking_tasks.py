"""Blocking evaluation tasks built from a PairDataset (METHODS §9.5 protocol).

For each positive pair of a split, the query is the left record and the search space is the
*whole* right table (not only the records in labelled pairs); the query is a hit at k when its
matching right record is in the top k. WDC Products has no tables: the corpus is every distinct
right record of the dataset's splits and every corpus record of the query's product (cluster
id) counts as a match; one query per distinct left record. A corpus record that *is* the query
(the same offer id, or a field-for-field copy in the other table - WDC Block lists 4,379 of its
5,000 tableB offers in tableA too) is left out of that query's ranking, see
:func:`build_blocking_task`.

Texts: the selected fields' values joined with single spaces (``"name description"``), which
is what reproduces the §9.5 zero-shot numbers (with MiniLM at max length 256, the
sentence-transformers default); Ditto ``COL ... VAL`` markers cost 1-4 points of recall@1.

Typo-noised queries (METHODS §1.3 seeding): query ``i`` (0-based, task order = split file
order) of noisy copy ``s`` is ``typo(text, Random(s*7919 + i))``, the left-side stream of §1.3.
Only queries are noised: the corpus plays the clean catalogue and incoming offers carry the
typos, so one corpus encoding serves every copy.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from models.product_text import serialize
from training.data.readers import load_dataset
from training.data.records import Pair, PairDataset, Record
from training.data.typos import TYPO_VERSION, typo
from training.groups import product_groups, record_key

logger = logging.getLogger(__name__)

#: METHODS §9.5 query fields per benchmark; everything else is title-only.
DATASET_FIELDS: dict[str, list[str]] = {
    "abt-buy": ["name", "description"],
    "amazon-google": ["title", "manufacturer"],
}

TITLE = "title"


def _normalise_name(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(" ", "-")


def default_fields(dataset: PairDataset) -> list[str]:
    """§9.5 defaults: Abt-Buy ``name description``, Amazon-Google ``title manufacturer``, else title."""
    name = _normalise_name(dataset.name)
    for key, fields in DATASET_FIELDS.items():
        if key in name and all(f in dataset.attributes for f in fields):
            return list(fields)
    return [TITLE]


def record_text(record: Record, fields: Sequence[str]) -> str:
    """The selected fields' values joined with one space; ``["title"]`` = the record's title.

    Missing values are skipped. ``"title"`` falls back to ``name`` when a record has no title
    (Abt-Buy), via :func:`models.product_text.serialize`.
    """
    parts: list[str] = []
    for name in fields:
        value = serialize(record, TITLE) if name == TITLE else serialize(record, [name])
        if value:
            parts.append(value)
    return " ".join(parts)


@dataclass
class BlockingTask:
    """Queries, their matching corpus indices and the corpus, ready for ``blocking_recall``."""

    dataset: str
    split: str
    fields: list[str]
    queries: list[str]
    query_targets: list[set[int]]
    corpus: list[str]
    query_ids: list[str] = field(default_factory=list)
    corpus_ids: list[str] = field(default_factory=list)
    targets_from: str = "pairs"
    query_exclude: list[set[int]] = field(default_factory=list)

    def noisy_queries(self, seed: int) -> list[str]:
        """Noisy copy ``seed`` of the queries (typo-v1, ``Random(seed*7919 + i)``)."""
        return [typo(text, random.Random(seed * 7919 + i)) for i, text in enumerate(self.queries)]

    def describe(self) -> dict[str, object]:
        return {
            "dataset": self.dataset,
            "split": self.split,
            "fields": self.fields,
            "queries": len(self.queries),
            "corpus_size": len(self.corpus),
            "targets_from": self.targets_from,
            "mean_targets": round(sum(len(t) for t in self.query_targets) / max(1, len(self.query_targets)), 3),
            "queries_with_excluded_copies": sum(1 for e in self.query_exclude if e),
            "noise": TYPO_VERSION,
        }

    def subsample(self, max_queries: int | None, seed: int = 0) -> BlockingTask:
        """At most ``max_queries`` queries (seeded, order kept); the corpus stays whole."""
        if max_queries is None or len(self.queries) <= max_queries:
            return self
        keep = sorted(random.Random(seed).sample(range(len(self.queries)), max_queries))
        return BlockingTask(
            dataset=self.dataset,
            split=self.split,
            fields=self.fields,
            queries=[self.queries[i] for i in keep],
            query_targets=[self.query_targets[i] for i in keep],
            corpus=self.corpus,
            query_ids=[self.query_ids[i] for i in keep] if self.query_ids else [],
            corpus_ids=self.corpus_ids,
            targets_from=self.targets_from,
            query_exclude=[self.query_exclude[i] for i in keep] if self.query_exclude else [],
        )


def load_blocking_dataset(path: str | os.PathLike[str], fmt: str) -> PairDataset:
    """Read a dataset for blocking. WDC Block is read with ``cluster_ids="split"``: its tables'
    cluster ids are renumbered, while the test split's ids are the original, label-consistent
    ones (training ignores both and uses union-find over the positive pairs)."""
    key = fmt.strip().lower().replace("_", "-")
    if key == "wdc-block":
        return load_dataset(path, key, cluster_ids="split")
    return load_dataset(path, key)


def _corpus_records(dataset: PairDataset) -> list[Record]:
    if dataset.right_table:
        return list(dataset.right_table.values())
    # No table: every distinct right record of every split, first occurrence order.
    seen: dict[str, Record] = {}
    for pairs in dataset.splits.values():
        for pair in pairs:
            seen.setdefault(pair.right.id, pair.right)
    return list(seen.values())


def _content(record: Record) -> tuple[tuple[str, str], ...]:
    # A record's attribute values, whitespace-normalised and lower-cased; None-valued fields skipped.
    return tuple(
        (k, " ".join(str(v).split()).lower()) for k, v in record.fields.items() if v is not None and str(v).strip()
    )


def _split_clusters_reliable(pairs: Sequence[Pair]) -> bool:
    # Split-file cluster ids can widen the targets only where they reproduce every label
    # (WDC Block test read with cluster_ids="split"; not its renumbered train/valid ids).
    return bool(pairs) and all(
        p.left.cluster_id is not None
        and p.right.cluster_id is not None
        and (p.left.cluster_id == p.right.cluster_id) == (p.label == 1)
        for p in pairs
    )


def build_blocking_task(
    dataset: PairDataset,
    split: str = "test",
    fields: Sequence[str] | None = None,
    targets: str = "auto",
    exclude_copies: bool = True,
    widen_components: bool | str = "auto",
) -> BlockingTask:
    """Build the §9.5 blocking task of ``split``.

    ``targets``: ``"pairs"`` (the matching right record of each positive pair), ``"clusters"``
    (every corpus record with the query's cluster id; one query per distinct left record) or
    ``"auto"`` (clusters for WDC Products, pairs otherwise). With ``"pairs"``, when the split's
    cluster ids agree with every label (WDC Block test read with ``cluster_ids="split"``), the
    right records of the split that carry the query's cluster id are matches too.

    ``widen_components``: with ``"pairs"``, every right record connected to the query through
    the split's positive pairs (union-find) is a match too. ``"auto"`` turns it on for WDC
    Block, whose valid split lists up to 20 offers per product (one query per pair would
    count the product's other offers as misses); its test split has one pair per product, so
    test numbers are unchanged. Off for Abt-Buy / Amazon-Google, as in §9.5.

    ``exclude_copies``: a corpus record that *is* the query - the same offer id (WDC Products
    lists most test offers on both sides of some pair), or a field-for-field copy (WDC Block
    lists most offers in both tables) - is left out of that query's ranking, unless it is the
    labelled partner of the query's pair. Counting it as a miss would be wrong and counting it
    as a hit trivial: the task is to find the *other* offers of the product.
    """
    chosen = list(fields) if fields else default_fields(dataset)
    mode = targets if targets != "auto" else ("clusters" if dataset.format == "wdc-products" else "pairs")
    if mode not in ("pairs", "clusters"):
        raise ValueError(f"targets must be 'pairs', 'clusters' or 'auto', got {targets!r}")
    corpus_records = _corpus_records(dataset)
    corpus_ids = [r.id for r in corpus_records]
    index_of = {rid: i for i, rid in enumerate(corpus_ids)}
    split_pairs = dataset.split(split)
    positives = [p for p in split_pairs if p.label == 1]
    if not positives:
        raise ValueError(f"{dataset.name}: split {split!r} has no positive pairs to query with")

    query_records: list[Record] = []
    query_targets: list[set[int]] = []
    partners: list[int] = []  # the labelled right record of each query's positive pair
    if mode == "pairs":
        widen: dict[str, set[int]] = {}
        if _split_clusters_reliable(split_pairs):
            for pair in split_pairs:
                idx = index_of.get(pair.right.id)
                if idx is not None:
                    widen.setdefault(str(pair.right.cluster_id), set()).add(idx)
        widen_by_component = dataset.format == "wdc-block" if widen_components == "auto" else bool(widen_components)
        component_rights: dict[int, set[int]] = {}
        groups = None
        if widen_by_component:
            groups = product_groups(positives, max_component_size=None, use_cluster_ids=False, merge_identical=False)
            for pair in positives:
                idx = index_of.get(pair.right.id)
                if idx is not None:
                    component_rights.setdefault(groups.component_of[record_key(pair.right)], set()).add(idx)
        for pair in positives:
            idx = index_of.get(pair.right.id)
            if idx is None:
                raise ValueError(f"{dataset.name}: right record {pair.right.id!r} is not in the right table")
            query_records.append(pair.left)
            partners.append(idx)
            tset = {idx} | widen.get(str(pair.left.cluster_id), set())
            if groups is not None:
                tset |= component_rights.get(groups.component_of[record_key(pair.left)], set())
            query_targets.append(tset)
    else:
        by_cluster: dict[str, set[int]] = {}
        for i, record in enumerate(corpus_records):
            if record.cluster_id is not None:
                by_cluster.setdefault(record.cluster_id, set()).add(i)
        seen_left: set[str] = set()
        for pair in positives:
            if pair.left.id in seen_left:
                continue
            cluster = pair.left.cluster_id
            tset = by_cluster.get(cluster, set()) if cluster is not None else set()
            seen_left.add(pair.left.id)
            query_records.append(pair.left)
            partners.append(index_of[pair.right.id])
            # The labelled partner always counts, whatever the cluster ids say.
            query_targets.append(set(tset) | {partners[-1]})

    query_exclude: list[set[int]] = [set() for _ in query_records]
    if exclude_copies:
        by_content: dict[tuple[tuple[str, str], ...], list[int]] = {}
        for i, record in enumerate(corpus_records):
            by_content.setdefault(_content(record), []).append(i)
        same_id_possible = not dataset.right_table or dataset.format == "wdc-products"
        for q, record in enumerate(query_records):
            copies = set(by_content.get(_content(record), []))
            if same_id_possible and record.id in index_of:
                copies.add(index_of[record.id])
            query_exclude[q] = copies - {partners[q]}
            query_targets[q] -= query_exclude[q]

    task = BlockingTask(
        dataset=dataset.name,
        split=split,
        fields=chosen,
        queries=[record_text(r, chosen) for r in query_records],
        query_targets=query_targets,
        corpus=[record_text(r, chosen) for r in corpus_records],
        query_ids=[r.id for r in query_records],
        corpus_ids=corpus_ids,
        targets_from=mode,
        query_exclude=query_exclude,
    )
    empty = sum(1 for q in task.queries if not q)
    if empty:
        logger.warning("%s/%s: %d queries have empty text for fields %s", dataset.name, split, empty, chosen)
    logger.info("blocking task %s", task.describe())
    return task
