"""Transfer to Walmart-Amazon pairs nobody trained on: ProMap (EN) with the default matcher (issue 15).

ProMap (``../shared/data/promap-en``, SOURCES.md) holds hand-labelled Walmart-Amazon, -Sears and
-Target pairs with close and medium non-matches. None of the default recipe's sources contains
them, so the shipped default matcher and the zero-shot scorer are both judged on catalogues they
never saw: pairwise, at their own serving cuts (nothing is chosen on these labels) and, labelled
oracle, at the best cut on these labels, with PR-AUC beside.

The records carry key/value specifications ("Manufacturer Part Number", "Item model number",
...). A user ingesting such a catalogue sends them as ``attributes``; the pair signals read the
model-number keys among them (``models.pair_signals.IDENTIFIER_KEYS``). Each scorer runs twice,
with the specifications as attributes and without them, on the same pairs.

    .venv/bin/python benchmarks/bench_promap.py                      # every *test_data.csv found
    .venv/bin/python benchmarks/bench_promap.py --data DIR --model artefacts/default-matcher

Any folder of CSV files with ProMap's columns (``name1``, ``name2``, ``match``, and optionally
``short_description*``, ``long_description*``, ``specification*``, ``price*``, ``id*``) works.
Result: ``benchmarks/results/promap_transfer.json`` (and each pair's scores under
``benchmarks/results/promap_scores/``).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import re
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks.bench_default_loo import pct  # noqa: E402
from benchmarks.common import RESULTS, git_rev, machine  # noqa: E402
from benchmarks.e2e_metrics import Benchmark, Offer, bounded_attributes, offer_key, record_fields  # noqa: E402
from training.default_recipe.sources import ProductPair  # noqa: E402

logger = logging.getLogger("bench_promap")

_PRICE = re.compile(r"\d+(?:\.\d+)?")
# Specification keys that name the brand; the first present wins.
_BRAND_KEYS = ("brand", "brand name", "manufacturer")
# ProMap's CSV cells hold whole product pages; the field limits of app/schemas/product.py.
_DESCRIPTION_CHARS = 20_000


def _price(text: str | None) -> float | None:
    match = _PRICE.search((text or "").replace(",", ""))
    if match is None:
        return None
    value = float(match.group())
    return value if math.isfinite(value) and value > 0 else None


def _specification(text: str | None) -> dict[str, str]:
    """ProMap's specification, a JSON list of ``{"key", "value"}``, as attributes (first key wins)."""
    try:
        items = json.loads(text or "[]")
    except json.JSONDecodeError:
        return {}
    out: dict[str, str] = {}
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and item.get("key") and item.get("value") not in (None, ""):
            out.setdefault(str(item["key"]).strip(), str(item["value"]).strip())
    return out


def record(row: dict[str, str], side: str, attributes: bool) -> dict[str, Any]:
    """One side of a ProMap row as the service's product fields."""
    spec = _specification(row.get(f"specification{side}"))
    lowered = {k.casefold(): v for k, v in spec.items()}
    brand = next((lowered[k] for k in _BRAND_KEYS if lowered.get(k)), None)
    description = row.get(f"short_description{side}") or row.get(f"long_description{side}") or None
    out: dict[str, Any] = {"title": (row.get(f"name{side}") or "").strip()}
    if brand:
        out["brand"] = brand
    if description:
        out["description"] = description[:_DESCRIPTION_CHARS]
    price = _price(row.get(f"price{side}"))
    if price is not None:
        out["price"] = price
    if attributes and spec:
        out["attributes"] = spec
    return out


def read_promap_file(path: Path, attributes: bool) -> list[ProductPair]:
    """One ProMap CSV: its pairs with a title on both sides."""
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    pairs = []
    for i, row in enumerate(rows):
        left, right = record(row, "1", attributes), record(row, "2", attributes)
        if not left["title"] or not right["title"]:
            continue
        left_id = row.get("id1") or f"{path.stem}:{i}:1"
        right_id = row.get("id2") or f"{path.stem}:{i}:2"
        pairs.append(ProductPair(left, right, int(row["match"]), path.stem, left_id, right_id))
    return pairs


def read_promap(folder: Path, attributes: bool) -> dict[str, list[ProductPair]]:
    """Every ``*test_data.csv`` of ``folder``, by file stem."""
    files = sorted(folder.glob("*test_data.csv"))
    if not files:
        raise SystemExit(f"no *test_data.csv under {folder}")
    return {path.stem: read_promap_file(path, attributes) for path in files}


def e2e_benchmark(path: Path) -> Benchmark:
    """One ProMap CSV as an end-to-end benchmark for ``bench_e2e.py``.

    Its distinct right records (by ``id2``) are the catalogue, its distinct left records the
    offers, and its pairs the labelled test pairs. The catalogue thus holds each offer's hand-picked
    close and medium non-matches beside its match (if it has one), and a left record whose pairs are
    all non-matches is an offer whose product the catalogue lacks. The specifications go along as
    attributes within the service's bounds, as a user would send them.
    """
    bench = Benchmark(path.name.removesuffix(".csv").removesuffix("-test_data"), [], [], [])
    product_of: dict[str, str] = {}
    offers: dict[str, Offer] = {}
    for pair in read_promap_file(path, attributes=True):
        right, left = _bounded(pair.right), _bounded(pair.left)
        if right is None or left is None:
            bench.pairs_skipped += 1
            continue
        if pair.right_id not in product_of:
            # ProMap's ids are page URLs, which an external id may not be (no "/").
            product_of[pair.right_id] = f"r{len(product_of) + 1:05d}"
            bench.products.append({"external_id": product_of[pair.right_id], **right})
        key = offer_key(left)
        offer = offers.setdefault(key, Offer(key, left, ()))
        if pair.left_id not in offer.left_ids:
            offers[key] = Offer(key, offer.fields, (*offer.left_ids, pair.left_id))
        bench.pairs.append((key, product_of[pair.right_id], pair.label))
    bench.offers = list(offers.values())
    bench.known = list(bench.pairs)
    return bench


def _bounded(fields: dict[str, Any]) -> dict[str, Any] | None:
    """The record as the service accepts it: schema text limits, bounded attributes."""
    row = {name: fields.get(name) for name in ("title", "brand", "description")}
    row["price"] = None if fields.get("price") is None else str(fields["price"])
    out = record_fields(row)
    if out is not None and (attributes := bounded_attributes(fields.get("attributes") or {})):
        out["attributes"] = attributes
    return out


def judge_file(matcher: Any, pairs: list[ProductPair]) -> dict[str, Any]:
    from app.core.config import Settings
    from benchmarks.bench_default_loo import zero_shot_scores
    from training.default_recipe.loo import binary_metrics, evaluate_default_matcher, score_default_matcher

    labels = np.asarray([p.label for p in pairs])
    scores = score_default_matcher(matcher, pairs)
    zs, cuts = zero_shot_scores(pairs, int(Settings.model_fields["encoder_max_length"].default))
    return {
        "pairs": len(pairs),
        "positives": int(labels.sum()),
        "default": evaluate_default_matcher(matcher, pairs, scores),
        "zero_shot": binary_metrics(np.asarray(zs), labels, cuts["match_threshold"]),
        "scores": {
            "label": labels.tolist(),
            "default": [round(float(x), 6) for x in scores.probabilities],
            "zero_shot": [round(float(x), 6) for x in zs],
        },
    }


def table(result: dict[str, Any]) -> str:
    lines = [
        "| file | attributes | pairs (pos) | default F1 @ own cut (P / R) | default oracle F1 | default PR-AUC "
        "| zero-shot F1 @ match cut (P / R) | zero-shot oracle F1 | zero-shot PR-AUC |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, runs in result["files"].items():
        for setting, r in runs.items():
            d, z = r["default"]["head"], r["zero_shot"]
            lines.append(
                f"| {name} | {setting} | {r['pairs']} ({r['positives']}) "
                f"| {pct(d['f1'])} ({pct(d['precision'])} / {pct(d['recall'])}) | {pct(d['oracle_f1'])} "
                f"| {pct(d['pr_auc'])} | {pct(z['f1'])} ({pct(z['precision'])} / {pct(z['recall'])}) "
                f"| {pct(z['oracle_f1'])} | {pct(z['pr_auc'])} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from models.default_matcher import load_default_matcher
    from training.data.readers import data_root

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--data", type=Path, default=None, help="a folder of ProMap CSVs (default: ../shared/data/promap-en)"
    )
    p.add_argument("--model", type=Path, default=ROOT / "artefacts" / "default-matcher")
    p.add_argument("--out", type=Path, default=RESULTS / "promap_transfer.json")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    folder = args.data or data_root() / "promap-en"
    matcher = load_default_matcher(args.model)
    files: dict[str, dict[str, Any]] = {}
    scores: dict[str, dict[str, Any]] = {}
    t0 = time.perf_counter()
    for setting, attributes in (("specification", True), ("none", False)):
        for name, pairs in read_promap(folder, attributes).items():
            r = judge_file(matcher, pairs)
            scores.setdefault(name, {})[setting] = r.pop("scores")
            files.setdefault(name, {})[setting] = r
            logger.info("%s (%s): default F1 %.3f oracle %.3f | zero-shot F1 %.3f oracle %.3f", name, setting,
                        r["default"]["head"]["f1"], r["default"]["head"]["oracle_f1"], r["zero_shot"]["f1"],
                        r["zero_shot"]["oracle_f1"])  # fmt: skip
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git": git_rev(),
        "machine": machine(),
        "settings": {"data": str(folder), "model": str(args.model), "model_created": matcher.manifest.created_at},
        "seconds": round(time.perf_counter() - t0, 1),
        "files": files,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    sidecar = args.out.parent / "promap_scores" / args.out.name
    sidecar.parent.mkdir(parents=True, exist_ok=True)
    sidecar.write_text(json.dumps(scores, separators=(",", ":")) + "\n", encoding="utf-8")
    print(table(result))
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
