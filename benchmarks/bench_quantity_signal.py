"""How the titles' quantity agreement (models/quantities.py) splits labelled pairs, per benchmark.

For every labelled pair (all splits of a DeepMatcher folder, every row of a ProMap CSV): the
agreement of the two titles (match / conflict / absent) against the label. Label-free signal,
no model: what it says on a catalogue is what it says on any.

    .venv/bin/python benchmarks/bench_quantity_signal.py ../shared/data/abt-buy ../shared/data/amazon-google \\
        ../shared/data/promap-en/promapen-test_data.csv

Result: ``benchmarks/results/quantity_signal.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import RESULTS, git_rev  # noqa: E402
from models.product_text import title_of  # noqa: E402
from models.quantities import quantity_agreement  # noqa: E402


def _deepmatcher_pairs(folder: Path) -> Iterator[tuple[str, str, int]]:
    tables = {}
    for side in ("A", "B"):
        with (folder / f"table{side}.csv").open(newline="", encoding="utf-8") as fh:
            tables[side] = {row["id"]: row for row in csv.DictReader(fh)}
    for split in ("train", "valid", "test"):
        path = folder / f"{split}.csv"
        if not path.is_file():
            continue
        with path.open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                left, right = tables["A"][row["ltable_id"]], tables["B"][row["rtable_id"]]
                yield title_of(left), title_of(right), int(row["label"])


def _promap_pairs(path: Path) -> Iterator[tuple[str, str, int]]:
    csv.field_size_limit(sys.maxsize)
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            yield row.get("name1") or "", row.get("name2") or "", int(row["match"])


def split_by_agreement(pairs: Iterator[tuple[str, str, int]]) -> dict[str, dict[str, int]]:
    """``{agreement: {"pairs", "matches"}}`` over the pairs."""
    counts: Counter[tuple[str, int]] = Counter()
    for left, right, label in pairs:
        counts[(quantity_agreement(left, right), label)] += 1
    return {
        agreement: {"pairs": counts[(agreement, 0)] + counts[(agreement, 1)], "matches": counts[(agreement, 1)]}
        for agreement in ("match", "conflict", "absent")
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", nargs="+", type=Path, help="DeepMatcher folders or ProMap CSV files")
    p.add_argument("--out", type=Path, default=RESULTS / "quantity_signal.json")
    args = p.parse_args(argv)
    result = {"git": git_rev(), "benchmarks": {}}
    for path in args.data:
        pairs = _deepmatcher_pairs(path) if path.is_dir() else _promap_pairs(path)
        split = split_by_agreement(pairs)
        result["benchmarks"][path.name] = split
        print(path.name, json.dumps(split))
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
