"""benchmarks/bench_quantity_signal.py: agreement against label, on hand-made pairs."""

from __future__ import annotations

from benchmarks.bench_quantity_signal import split_by_agreement


def test_split_by_agreement_counts_pairs_and_matches() -> None:
    pairs = iter([("Senna 200 Count", "Senna 500 Count", 0), ("API 16 oz", "API 16-Ounce", 1), ("Sony", "Sony", 1)])
    assert split_by_agreement(pairs) == {
        "match": {"pairs": 1, "matches": 1},
        "conflict": {"pairs": 1, "matches": 0},
        "absent": {"pairs": 1, "matches": 1},
    }
