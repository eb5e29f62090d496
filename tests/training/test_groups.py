"""Product groups from pairs: union-find components, singletons, size cap, non-match sets."""

from __future__ import annotations

from training.data.records import Pair, Record
from training.groups import known_non_matches, product_groups, record_key


def _rec(source: str, rid: str, cluster: str | None = None, title: str | None = None) -> Record:
    return Record(id=rid, fields={"title": title or f"{source}{rid}"}, cluster_id=cluster, source=source)


def test_connected_components_and_singletons() -> None:
    a0, a1, a2, a3 = (_rec("A", str(i)) for i in range(4))
    b0, b1, b2 = (_rec("B", str(i)) for i in range(3))
    pairs = [
        Pair(a0, b0, 1),
        Pair(a1, b0, 1),  # a0 - b0 - a1: one product
        Pair(a2, b1, 1),
        Pair(a3, b2, 0),  # a3, b2 only in a negative pair: singletons
        Pair(a0, b1, 0),
    ]
    groups = product_groups(pairs)
    g = groups.group_of
    assert g["A:0"] == g["B:0"] == g["A:1"]
    assert g["A:2"] == g["B:1"] != g["A:0"]
    assert len({g["A:3"], g["B:2"], g["A:0"], g["A:2"]}) == 4
    assert groups.n_groups == 4
    assert groups.sizes() == {1: 2, 2: 1, 3: 1}
    # Left id "0" and right id "0" are different records.
    assert "A:0" in g and "B:0" in g and record_key(a0) == "A:0"


def test_group_ids_are_deterministic() -> None:
    recs = [_rec("A", str(i)) for i in range(6)] + [_rec("B", str(i)) for i in range(6)]
    pairs = [Pair(recs[i], recs[6 + (i * 5) % 6], i % 2) for i in range(6)]
    first = product_groups(pairs).group_of
    second = product_groups(list(reversed(pairs))).group_of
    assert first == second


def test_component_cap_splits_but_keeps_component() -> None:
    # A chain of 7 records linked by positives (e.g. one wrong label chaining products).
    left = [_rec("A", str(i)) for i in range(4)]
    right = [_rec("B", str(i)) for i in range(3)]
    pairs = [Pair(left[i], right[i], 1) for i in range(3)] + [Pair(left[i + 1], right[i], 1) for i in range(3)]
    uncapped = product_groups(pairs, max_component_size=None)
    assert uncapped.n_groups == 1
    capped = product_groups(pairs, max_component_size=3)
    assert capped.split_components == 1
    assert all(len(keys) <= 3 for keys in capped.members.values())
    assert capped.n_groups == 3
    # All pieces remember their common component.
    assert len(set(capped.component_of.values())) == 1


def test_cluster_ids_used_when_they_agree_with_labels() -> None:
    a0, a1 = _rec("left", "1", "c1"), _rec("left", "2", "c2")
    b0, b1, b2 = _rec("right", "3", "c1"), _rec("right", "4", "c2"), _rec("right", "5", "c1")
    pairs = [Pair(a0, b0, 1), Pair(a1, b0, 0), Pair(a1, b1, 1), Pair(a1, b2, 0)]
    groups = product_groups(pairs)
    assert groups.source == "cluster_ids"
    # b2 is in no positive pair but shares a0's cluster: same product.
    assert groups.group_of["right:5"] == groups.group_of["left:1"]
    # Renumbered ids that contradict a label are ignored in favour of union-find.
    bad = [Pair(a0, b1, 1)]
    assert product_groups(bad).source == "pairs"


def test_known_non_matches_symmetric() -> None:
    a0, b0, b1 = _rec("A", "0"), _rec("B", "0"), _rec("B", "1")
    nm = known_non_matches([Pair(a0, b0, 0), Pair(a0, b1, 1)])
    assert nm == {"A:0": {"B:0"}, "B:0": {"A:0"}}


def test_identical_records_are_one_product() -> None:
    a0 = _rec("A", "0", title="Acme Camera X1")
    b5 = _rec("B", "5", title="acme  camera x1")  # the same offer listed in the other table
    b6 = _rec("B", "6", title="Acme Camera X2")
    a1 = _rec("A", "1", title="Acme Camera X2")
    pairs = [Pair(a0, b6, 0), Pair(a1, b5, 0)]
    merged = product_groups(pairs)
    assert merged.group_of["A:0"] == merged.group_of["B:5"] != merged.group_of["B:6"]
    separate = product_groups(pairs, merge_identical=False)
    assert separate.group_of["A:0"] != separate.group_of["B:5"]
    # Identical but labelled a non-match: the label wins.
    a2 = _rec("A", "2", title="Acme Camera X3")
    b7 = _rec("B", "7", title="Acme Camera X3")
    labelled = product_groups([Pair(a2, b7, 0)])
    assert labelled.group_of["A:2"] != labelled.group_of["B:7"]
    # Identical records of one table may be different products: not merged.
    b8, b9 = _rec("B", "8", title="generic range"), _rec("B", "9", title="generic range")
    same_table = product_groups([Pair(a0, b8, 1), Pair(a1, b9, 1)])
    assert same_table.group_of["B:8"] != same_table.group_of["B:9"]
