"""The pure half of `bench_e2e.py`: a DeepMatcher folder as a catalogue, offers and labelled pairs,
and the matching metrics computed from the service's decisions.

No HTTP and no service here, so the metrics are testable on hand-made decisions.

* The right table (`tableB.csv`) is the catalogue; its ids are the products' external ids.
* The offers are the distinct left records (`tableA.csv`) of the test pairs. Two left ids with
  identical content are one offer to the service, so they share one decision.
* Columns beyond the service's fields (a model number, a currency) are sent as ``attributes``,
  as a user would send them; ids and cluster ids are not.
* A test pair ``(offer, product, label)`` is predicted positive iff the offer's decision is
  ``match`` and its top candidate is that product (:func:`evaluate`).
* Whether an automatic ``match`` is right, and what a reviewer who knows the truth answers, is
  judged on every labelled pair of the offer (train, valid and test splits): most offers appear in
  the test split with negatives only, their true match being labelled in another split.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MATCH, REVIEW, NO_MATCH = "match", "review", "no_match"
DECISIONS = (MATCH, REVIEW, NO_MATCH)

# Service field <- benchmark columns, first present wins (Abt-Buy says name, Amazon-Google manufacturer).
FIELD_COLUMNS: dict[str, tuple[str, ...]] = {
    "title": ("title", "name"),
    "brand": ("brand", "manufacturer"),
    "category": ("category",),
    "price": ("price",),
    "description": ("description",),
}
# The product schema's limits (app/schemas/product.py): longer text would fail the whole batch.
TEXT_LIMITS = {"title": 2_000, "brand": 255, "category": 255, "description": 20_000}
# Every other column goes along as an attribute ("modelno", "pricecurrency"), as a user would send
# it, except the ones that identify a record or its cluster: the id, and labels in disguise.
NOT_ATTRIBUTES = frozenset({"id", "cluster_id", "page_url", "ltable_id", "rtable_id", "label"})
ATTRIBUTE_CHARS = 1_000
MAX_ATTRIBUTES = 50
ATTRIBUTES_JSON_CHARS = 15_000  # the schema allows 20,000
_FIELD_SOURCES = frozenset(c for columns in FIELD_COLUMNS.values() for c in columns)
_HAS_WORD = re.compile(r"\w", re.UNICODE)
_PRICE_JUNK = re.compile(r"[^0-9.eE+-]")


@dataclass(frozen=True)
class Offer:
    """One distinct offer: the fields sent to `/v1/match` and the left ids that share them."""

    key: str
    fields: dict[str, Any]
    left_ids: tuple[str, ...]


@dataclass(frozen=True)
class OfferResult:
    """What the service answered for one offer: its decision and candidate ids, best first."""

    decision: str
    candidates: tuple[str, ...] = ()
    top_score: float | None = None
    # every candidate's score, as ``candidates``; None beyond the service's RERANK_DEPTH (unscored)
    scores: tuple[float | None, ...] = ()
    retrieval_ranks: tuple[int, ...] = ()  # every candidate's place in the blocking list (1 = first)

    @property
    def top(self) -> str | None:
        return self.candidates[0] if self.candidates else None


def redecide(results: Mapping[str, OfferResult], match_at: float, review_at: float) -> dict[str, OfferResult]:
    """The same answers decided at other cuts by the service's own rule
    (:class:`app.pipeline.scoring.Decider`); the ranking does not depend on the cuts."""
    from app.pipeline.scoring import Decider

    decider = Decider(match_at, review_at)
    return {k: dataclasses.replace(r, decision=decider.decide(r.top_score)) for k, r in results.items()}


# An offer the service could not be asked about (no usable title): nobody matched it.
UNSENT = OfferResult(NO_MATCH, ())


@dataclass
class Benchmark:
    """``pairs`` are the test pairs; ``known`` every labelled pair (any split) of the test offers."""

    name: str
    products: list[dict[str, Any]]
    offers: list[Offer]
    pairs: list[tuple[str, str, int]]
    known: list[tuple[str, str, int]] = field(default_factory=list)
    unsendable: list[str] = field(default_factory=list)
    products_skipped: int = 0
    pairs_skipped: int = 0


@dataclass(frozen=True)
class Truth:
    positives: frozenset[str]
    negatives: frozenset[str]


# --------------------------------------------------------------------------- reading


def _text(value: str | None, limit: int) -> str | None:
    if value is None:
        return None
    value = value.replace("\x00", "").strip()[:limit].strip()
    return value or None


def _price(value: str | None) -> float | None:
    if not value:
        return None
    try:
        price = float(_PRICE_JUNK.sub("", value))
    except ValueError:
        return None
    return price if math.isfinite(price) and price >= 0 else None


def bounded_attributes(row: Mapping[str, str | None]) -> dict[str, str]:
    """The row's other columns (or a record's attributes), within the schema's bounds on count and serialised size."""
    out: dict[str, str] = {}
    size = 2
    for column, raw in row.items():
        if not column or column in _FIELD_SOURCES or column.casefold() in NOT_ATTRIBUTES:
            continue
        value = _text(raw, ATTRIBUTE_CHARS)
        if value is None:
            continue
        size += len(json.dumps({column: value})) - 1
        if len(out) == MAX_ATTRIBUTES or size > ATTRIBUTES_JSON_CHARS:
            break
        out[column] = value
    return out


def record_fields(row: Mapping[str, str | None]) -> dict[str, Any] | None:
    """The service fields of one benchmark row (only the present ones), or None without a usable title."""
    out: dict[str, Any] = {}
    for name, columns in FIELD_COLUMNS.items():
        raw = next((row[c] for c in columns if row.get(c) not in (None, "")), None)
        value = _price(raw) if name == "price" else _text(raw, TEXT_LIMITS[name])
        if value is not None:
            out[name] = value
    attributes = bounded_attributes(row)
    if attributes:
        out["attributes"] = attributes
    title = out.get("title")
    return out if title and _HAS_WORD.search(title) else None


def offer_key(fields: Mapping[str, Any]) -> str:
    """Identity of an offer as the service stores it: its non-empty matchable fields.

    A review item carries the offer as the service dumped it (every field, nulls included); the
    key of that dump equals the key of what was sent, which maps queue items back to offers.
    """
    kept = {name: fields.get(name) for name in FIELD_COLUMNS if fields.get(name) not in (None, "")}
    return json.dumps(kept, sort_keys=True, ensure_ascii=False)


def _read_table(path: Path) -> dict[str, dict[str, str | None]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return {str(row["id"]).strip(): row for row in csv.DictReader(fh)}


def _read_pairs(path: Path) -> list[tuple[str, str, int]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return [(r["ltable_id"].strip(), r["rtable_id"].strip(), int(r["label"])) for r in csv.DictReader(fh)]


def _left_key(left_id: str, row: Mapping[str, str | None]) -> tuple[str, dict[str, Any] | None]:
    fields = record_fields(row)
    return (offer_key(fields) if fields is not None else f"unsendable:{left_id}"), fields


def load_benchmark(folder: str | Path, split: str = "test") -> Benchmark:
    """Catalogue = the right table; offers = the distinct left records of ``split``'s pairs."""
    folder = Path(folder)
    right = _read_table(folder / "tableB.csv")
    left = _read_table(folder / "tableA.csv")
    products = [{"external_id": i, **f} for i, row in right.items() if (f := record_fields(row)) is not None]
    bench = Benchmark(folder.name, products, [], [], products_skipped=len(right) - len(products))
    by_key: dict[str, list[str]] = {}
    fields_of: dict[str, dict[str, Any]] = {}
    for left_id, right_id, label in _read_pairs(folder / f"{split}.csv"):
        if left_id not in left or right_id not in right:
            bench.pairs_skipped += 1
            continue
        key, fields = _left_key(left_id, left[left_id])
        if fields is None and key not in by_key:
            bench.unsendable.append(key)
        if fields is not None:
            fields_of.setdefault(key, fields)
        ids = by_key.setdefault(key, [])
        if left_id not in ids:
            ids.append(left_id)
        bench.pairs.append((key, right_id, label))
    bench.offers = [Offer(k, fields_of[k], tuple(ids)) for k, ids in by_key.items() if k in fields_of]
    bench.known = _known_pairs(folder, left, by_key.keys())
    return bench


def _known_pairs(
    folder: Path, left: Mapping[str, Mapping[str, str | None]], keys: Collection[str]
) -> list[tuple[str, str, int]]:
    """Every split's labelled pairs whose left record is one of the offers ``keys``."""
    known: list[tuple[str, str, int]] = []
    for split in ("train", "valid", "test"):
        path = folder / f"{split}.csv"
        if not path.is_file():
            continue
        for left_id, right_id, label in _read_pairs(path):
            if left_id in left and (key := _left_key(left_id, left[left_id])[0]) in keys:
                known.append((key, right_id, label))
    return known


# --------------------------------------------------------------------------- metrics


def truths(pairs: Iterable[tuple[str, str, int]]) -> dict[str, Truth]:
    pos: dict[str, set[str]] = {}
    neg: dict[str, set[str]] = {}
    for key, product, label in pairs:
        (pos if label else neg).setdefault(key, set()).add(product)
        pos.setdefault(key, set())
        neg.setdefault(key, set())
    return {k: Truth(frozenset(pos[k]), frozenset(neg[k])) for k in pos}


def restrict(pairs: Iterable[tuple[str, str, int]], keys: Collection[str]) -> list[tuple[str, str, int]]:
    return [p for p in pairs if p[0] in keys]


def prf(tp: int, fp: int, fn: int) -> dict[str, float | int]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn}


def pair_prf(
    results: Mapping[str, OfferResult], pairs: Sequence[tuple[str, str, int]], positive: Collection[str]
) -> dict[str, float | int]:
    """P/R/F1 over labelled pairs: positive iff the decision is in ``positive`` and the top is the product."""
    tp = fp = fn = 0
    for key, product, label in pairs:
        res = results.get(key, UNSENT)
        predicted = res.decision in positive and res.top == product
        tp += int(predicted and label == 1)
        fp += int(predicted and label == 0)
        fn += int(not predicted and label == 1)
    return prf(tp, fp, fn)


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def offer_metrics(
    results: Mapping[str, OfferResult],
    offers: Mapping[str, Truth],
    truth: Mapping[str, Truth] | None = None,
    ks: Sequence[int] = (1, 10),
) -> dict[str, Any]:
    """Per-offer figures over the offers of ``offers`` (their test truth).

    ``truth`` (default ``offers``) judges the candidates: a ``match`` is correct when its top is a
    labelled match, and known to be wrong when its top is a labelled non-match or the offer's
    labelled match is another product; otherwise it is unjudged (counted as wrong in
    ``auto_match_precision``, left out of ``auto_match_precision_judged``). An offer "has a true
    match" when a test pair says so.
    """
    truth = offers if truth is None else truth
    counts = dict.fromkeys(DECISIONS, 0)
    auto = correct = wrong = with_match = covered = 0
    hits = dict.fromkeys(ks, 0)
    for key, test in offers.items():
        res, known = results.get(key, UNSENT), truth.get(key, test)
        counts[res.decision] = counts.get(res.decision, 0) + 1
        is_match = res.decision == MATCH
        right = is_match and res.top in known.positives
        auto += int(is_match)
        correct += int(right)
        wrong += int(is_match and not right and (res.top in known.negatives or bool(known.positives)))
        if test.positives:
            with_match += 1
            covered += int(right)
            for k in ks:
                hits[k] += int(any(c in known.positives for c in res.candidates[:k]))
    n = len(offers)
    out: dict[str, Any] = {
        "offers": n,
        "offers_with_match": with_match,
        "decisions": counts,
        "auto_share": _share(counts[MATCH] + counts[NO_MATCH], n),
        "auto_matches": auto,
        "auto_matches_unjudged": auto - correct - wrong,
        "auto_match_precision": _share(correct, auto),
        "auto_match_precision_judged": _share(correct, correct + wrong),
        "coverage": _share(covered, with_match),
    }
    out.update({f"recall_at_{k}": _share(hits[k], with_match) for k in ks})
    return out


def evaluate(
    results: Mapping[str, OfferResult],
    pairs: Sequence[tuple[str, str, int]],
    known: Sequence[tuple[str, str, int]] | None = None,
) -> dict[str, Any]:
    """Every reported metric for the offers of the test ``pairs``; ``known`` judges candidates."""
    out = offer_metrics(results, truths(pairs), truths(known) if known is not None else None)
    out["pairs"] = len(pairs)
    out["positive_pairs"] = sum(1 for p in pairs if p[2] == 1)
    out["pairwise"] = pair_prf(results, pairs, {MATCH})
    out["pairwise_review_as_match"] = pair_prf(results, pairs, {MATCH, REVIEW})
    return out


def reviewer_label(product: str, truth: Truth | None) -> str | None:
    """A reviewer who knows the truth answers (offer, product): match, no_match, or None (skip).

    An unlabelled pair is a no_match only when the offer's true match is another product;
    otherwise nobody knows, and the item is skipped.
    """
    if truth is None:
        return None
    if product in truth.positives:
        return MATCH
    if product in truth.negatives or truth.positives:
        return NO_MATCH
    return None
