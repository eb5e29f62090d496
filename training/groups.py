"""Product ids for pair-only datasets, and the known non-matches (METHODS §3.3 step 2, §3.5).

SupCon needs a product label per record, but Abt-Buy, Amazon-Google and WDC Block only list
labelled pairs. The standard construction (R-SupCon) is the connected components of the
positive training pairs (union-find), with every unmatched record its own product. A single
wrong positive label chains two products into one component, so components above a size cap
are split; the pieces keep their common ``component`` so the trainer can avoid pushing them
apart (they are neither sure positives nor sure negatives).

Records are keyed by ``"<source>:<id>"``: ids are only unique within one table (DeepMatcher
tableA and tableB both start at 0).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from training.data.records import Pair, Record

logger = logging.getLogger(__name__)

#: Default component size cap; WDC products have up to ~20 offers, the DeepMatcher sets <= 5.
DEFAULT_MAX_COMPONENT_SIZE = 32


def record_key(record: Record) -> str:
    """A record's identity across both tables: ``"<source>:<id>"``."""
    return f"{record.source or '?'}:{record.id}"


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def add(self, x: str) -> None:
        self.parent.setdefault(x, x)

    def find(self, x: str) -> str:
        self.add(x)
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:  # path compression
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            # Deterministic: the lexicographically smaller root wins.
            if rb < ra:
                ra, rb = rb, ra
            self.parent[rb] = ra


@dataclass
class ProductGroups:
    """Record key -> product group id, plus the records and the uncapped components."""

    group_of: dict[str, int]
    records: dict[str, Record]
    component_of: dict[str, int]
    split_components: int = 0
    source: str = "pairs"
    members: dict[int, list[str]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        members: dict[int, list[str]] = defaultdict(list)
        for key, gid in self.group_of.items():
            members[gid].append(key)
        self.members = dict(members)

    @property
    def n_groups(self) -> int:
        return len(self.members)

    def sizes(self) -> dict[int, int]:
        """Histogram: group size -> number of groups."""
        hist: dict[int, int] = defaultdict(int)
        for keys in self.members.values():
            hist[len(keys)] += 1
        return dict(sorted(hist.items()))

    def stats(self) -> dict[str, int]:
        multi = sum(1 for keys in self.members.values() if len(keys) >= 2)
        return {
            "records": len(self.group_of),
            "groups": self.n_groups,
            "groups_with_2plus": multi,
            "split_components": self.split_components,
        }


def _split_component(keys: list[str], edges: dict[str, set[str]], cap: int) -> list[list[str]]:
    """Cut an oversized component into connected-as-possible chunks of at most ``cap``.

    Breadth-first from the smallest unassigned key, so each chunk follows positive edges and
    the result does not depend on iteration order.
    """
    remaining = set(keys)
    chunks: list[list[str]] = []
    while remaining:
        start = min(remaining)
        chunk = [start]
        remaining.discard(start)
        frontier = [start]
        while frontier and len(chunk) < cap:
            nxt: list[str] = []
            for node in frontier:
                for other in sorted(edges.get(node, ())):
                    if other in remaining and len(chunk) < cap:
                        remaining.discard(other)
                        chunk.append(other)
                        nxt.append(other)
            frontier = nxt
        chunks.append(chunk)
    return chunks


def _cluster_ids_agree(pairs: Sequence[Pair]) -> bool:
    # Cluster ids are usable as product ids only if every record has one and they reproduce
    # every label (true for WDC Products; false for WDC Block's renumbered train/valid ids).
    for pair in pairs:
        if pair.left.cluster_id is None or pair.right.cluster_id is None:
            return False
        if (pair.left.cluster_id == pair.right.cluster_id) != (pair.label == 1):
            return False
    return bool(pairs)


def _content_key(record: Record) -> tuple[tuple[str, str], ...]:
    return tuple(
        (k, " ".join(str(v).split()).lower()) for k, v in record.fields.items() if v is not None and str(v).strip()
    )


def product_groups(
    pairs: Sequence[Pair],
    *,
    max_component_size: int | None = DEFAULT_MAX_COMPONENT_SIZE,
    use_cluster_ids: bool | str = "auto",
    merge_identical: bool = True,
) -> ProductGroups:
    """Group the records of ``pairs`` into products: record key -> group id.

    ``use_cluster_ids``: ``True`` takes ``Record.cluster_id`` as the product id; ``False``
    builds union-find components over the positive pairs; ``"auto"`` uses the cluster ids only
    when they agree with every label of ``pairs``. Records in no positive pair are singletons.
    ``merge_identical``: records of *different* tables with identical content (every attribute,
    case- and whitespace-insensitive) are one product unless labelled a non-match - WDC Block
    lists most offers in both tables, and two copies labelled as different products would be
    pushed apart. Identical records within one table are left alone (Buy lists five different
    LG ranges as "lg 5.6 cu.ft . freestanding electric range").
    Components larger than ``max_component_size`` (``None`` = no cap) are split; pieces of one
    component share ``component_of``. Group ids are 0..n-1 in sorted key order, so they are
    deterministic.
    """
    records: dict[str, Record] = {}
    for pair in pairs:
        records.setdefault(record_key(pair.left), pair.left)
        records.setdefault(record_key(pair.right), pair.right)
    keys = sorted(records)

    use_clusters = _cluster_ids_agree(pairs) if use_cluster_ids == "auto" else bool(use_cluster_ids)
    edges: dict[str, set[str]] = defaultdict(set)
    uf = _UnionFind()
    for key in keys:
        uf.add(key)
    if use_clusters:
        first_of_cluster: dict[str, str] = {}
        for key in keys:
            cluster = records[key].cluster_id
            if cluster is None:
                continue
            head = first_of_cluster.setdefault(cluster, key)
            if head != key:
                uf.union(head, key)
                edges[head].add(key)
                edges[key].add(head)
    else:
        for pair in pairs:
            if pair.label == 1:
                a, b = record_key(pair.left), record_key(pair.right)
                uf.union(a, b)
                edges[a].add(b)
                edges[b].add(a)

    if merge_identical:
        negatives = known_non_matches(pairs)
        by_content: dict[tuple[tuple[str, str], ...], list[str]] = defaultdict(list)
        for key in keys:
            content = _content_key(records[key])
            if content:
                by_content[content].append(key)
        for same in by_content.values():
            for i, a in enumerate(same):
                for b in same[i + 1 :]:
                    # Only across tables (the same offer listed twice); within one table an
                    # identical generic title may name several products. Labels win.
                    if records[a].source != records[b].source and b not in negatives.get(a, ()):
                        uf.union(a, b)
                        edges[a].add(b)
                        edges[b].add(a)

    components: dict[str, list[str]] = defaultdict(list)
    for key in keys:
        components[uf.find(key)].append(key)

    group_of: dict[str, int] = {}
    component_of: dict[str, int] = {}
    split = 0
    ordered = sorted(components.values(), key=lambda ks: ks[0])
    next_group = 0
    for comp_id, members in enumerate(ordered):
        if max_component_size is not None and len(members) > max_component_size:
            chunks = _split_component(members, edges, max_component_size)
            split += 1
            logger.warning(
                "product component of %d records (e.g. %s) exceeds the cap %d; split into %d groups",
                len(members),
                members[0],
                max_component_size,
                len(chunks),
            )
        else:
            chunks = [members]
        for chunk in chunks:
            for key in chunk:
                group_of[key] = next_group
                component_of[key] = comp_id
            next_group += 1
    groups = ProductGroups(
        group_of=group_of,
        records=records,
        component_of=component_of,
        split_components=split,
        source="cluster_ids" if use_clusters else "pairs",
    )
    logger.info("product groups from %s: %s", groups.source, groups.stats())
    return groups


def known_non_matches(pairs: Iterable[Pair]) -> dict[str, set[str]]:
    """Record key -> keys of the records it is *labelled* a non-match with (symmetric).

    These are the only negatives that are certainly negatives: blocker candidates without a
    label may be missed matches (METHODS §3.5).
    """
    out: dict[str, set[str]] = defaultdict(set)
    for pair in pairs:
        if pair.label == 0:
            a, b = record_key(pair.left), record_key(pair.right)
            out[a].add(b)
            out[b].add(a)
    return dict(out)
