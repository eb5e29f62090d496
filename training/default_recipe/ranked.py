"""Ranked candidate lists: the validation offers of every source as the service sees them.

The service never decides on a lone pair: it retrieves an offer's top-k catalogue products with
hybrid blocking (dense cosine + BM25, :mod:`models.hybrid_blocking`), scores them and decides on
the *top* candidate. A cut read off labelled pairs is therefore the wrong cut: the top of a
ranked list is right more often than a pair above the same score, and its mistakes are siblings
the pair sets rarely hold. So the head's match cuts are fitted here on top-1 decisions over
ranked lists built like the service builds them:

* catalogue: every right-hand record of the source (all splits: test records only compete as
  distractors, no test label is read);
* offers: up to ``offers_per_source`` left records of the source's *validation* pairs;
* candidates: the offer's hybrid top-k (the service's pool, lexical candidates and weight);
* absent products: for ``absent_share`` of the offers of a fully judged source whose match is
  known, every known match is taken out of the offer's ranking, so the lists also hold offers
  whose product the catalogue lacks (a new catalogue never holds every offer's product; the
  benchmarks' validation offers mostly have their match, 70-100 %);
* labels, from the source's training and validation pairs (never its test pairs): a labelled
  match is 1, a labelled non-match 0; where the cluster ids of training and validation records
  tell every match (WDC Products), a shared cluster is 1 and another cluster 0; any other
  product of an offer whose match is known is 0 when the right table holds each product once
  (``SourceSpec.unique_products``: Abt-Buy, Amazon-Google); anything else is unknown (-1) and
  judges nothing (a crawl of offers holds the same product many times, mostly unlabelled).
  A source where every candidate is judged this way is *fully judged*: the cuts are chosen on
  those sources' decisions when there are any.

A top-1 decision is *correct* when its candidate is labelled 1, *wrong* when 0, unjudged
otherwise; an offer *has a match* when its validation pairs name one (retrieved or not), which
is the coverage's denominator, as in ``benchmarks/e2e_metrics.py``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.bm25 import BM25
from models.calibration import threshold_for_precision, wilson_interval
from models.hybrid_blocking import DEFAULT_LEXICAL_CANDIDATES, DEFAULT_LEXICAL_WEIGHT, DEFAULT_POOL
from models.product_text import embed_text
from training.default_recipe.mining import TextEncoder
from training.default_recipe.sources import Product, ProductPair, SourceData
from training.evaluate import hybrid_scores, ranked_from_scores

logger = logging.getLogger(__name__)

UNKNOWN = -1


@dataclass(frozen=True)
class RankedList:
    """One validation offer's retrieved candidates, best first."""

    source: str
    offer_id: str
    offer: Product
    candidate_ids: tuple[str, ...]
    candidates: tuple[Product, ...]
    cosines: tuple[float, ...]
    labels: tuple[int, ...]  # 1, 0 or UNKNOWN per candidate
    has_match: bool
    fully_judged: bool = False

    def pairs(self) -> list[ProductPair]:
        return [
            ProductPair(self.offer, c, max(0, y), self.source, self.offer_id, cid)
            for cid, c, y in zip(self.candidate_ids, self.candidates, self.labels, strict=True)
        ]


def _catalogue(source: SourceData) -> tuple[list[str], list[Product]]:
    products: dict[str, Product] = {}
    for pair in source.train + source.valid + source.test:
        products.setdefault(pair.right_id, pair.right)
    ids = sorted(products)
    return ids, [products[i] for i in ids]


def _offers(source: SourceData, limit: int, seed: int) -> list[tuple[str, Product, set[str], set[str]]]:
    """``(id, offer, labelled matches, labelled non-matches)`` of up to ``limit`` validation offers;
    their labels come from the training and validation pairs (never the test pairs)."""
    offers = {p.left_id: p.left for p in source.valid}
    ids = sorted(offers)
    if len(ids) > limit:
        ids = sorted(random.Random(f"{seed}:ranked:{source.name}").sample(ids, limit))
    labels: dict[str, tuple[set[str], set[str]]] = {i: (set(), set()) for i in ids}
    for pair in source.train + source.valid:
        if pair.left_id in labels:
            pos, neg = labels[pair.left_id]
            (pos if pair.label == 1 else neg).add(pair.right_id)
    return [(i, offers[i], *labels[i]) for i in ids]


def _judge(source: SourceData, offer_id: str, pos: set[str], neg: set[str], candidate: str) -> int:
    """1, 0 or UNKNOWN for a retrieved candidate (module docstring)."""
    if candidate in pos:
        return 1
    if candidate in neg:
        return 0
    left, right = source.judge_left_clusters, source.judge_right_clusters
    if left is not None and right is not None and offer_id in left and candidate in right:
        return int(left[offer_id] == right[candidate])
    return 0 if (pos and source.spec.unique_products) else UNKNOWN


def _removed_matches(
    source: SourceData,
    offers: Sequence[tuple[str, Product, set[str], set[str]]],
    cat_ids: Sequence[str],
    share: float,
    seed: int,
) -> list[set[int]]:
    """Per offer, the catalogue rows taken out of its ranking: for ``share`` of the fully judged
    offers with a known match, every known match (its labelled matches and, with cluster ids, its
    cluster), so the offer meets the catalogue as one that does not hold its product."""
    if not share or not fully_judged(source):
        return [set() for _ in offers]
    rng = random.Random(f"{seed}:absent:{source.name}")
    row = {c: i for i, c in enumerate(cat_ids)}
    left, right = source.judge_left_clusters or {}, source.judge_right_clusters or {}
    members: dict[str, set[int]] = {}
    for c, i in row.items():
        if c in right:
            members.setdefault(right[c], set()).add(i)
    out = []
    for offer_id, _, pos, _ in offers:
        matches = {row[c] for c in pos if c in row} | members.get(left.get(offer_id, "\0"), set())
        out.append(matches if matches and rng.random() < share else set())
    return out


def fully_judged(source: SourceData) -> bool:
    """Whether every retrieved candidate of an offer with a known match gets a label: a catalogue
    of unique products, or cluster ids that tell every match."""
    return source.spec.unique_products or source.judge_left_clusters is not None


def ranked_lists_of(
    source: SourceData,
    encoder: TextEncoder,
    *,
    k: int = 10,
    offers_per_source: int = 300,
    absent_share: float = 0.0,
    seed: int = 0,
    pool: int = DEFAULT_POOL,
    lexical_candidates: int = DEFAULT_LEXICAL_CANDIDATES,
    lexical_weight: float = DEFAULT_LEXICAL_WEIGHT,
    batch_size: int = 128,
) -> list[RankedList]:
    """One source's ranked validation lists (see the module docstring)."""
    cat_ids, products = _catalogue(source)
    offers = _offers(source, offers_per_source, seed)
    if not offers or not products:
        return []
    corpus_text = [embed_text(p) for p in products]
    query_text = [embed_text(o[1]) for o in offers]
    corpus = encoder.encode(corpus_text, batch_size=batch_size)
    queries = encoder.encode(query_text, batch_size=batch_size)
    lexical = BM25(corpus_text).scores(query_text)
    left, right = source.judge_left_clusters or {}, source.judge_right_clusters or {}
    removed = _removed_matches(source, offers, cat_ids, absent_share, seed)
    fused = hybrid_scores(queries, corpus, lexical, pool, lexical_weight, removed, lexical_candidates)
    top = ranked_from_scores(fused, k)
    out: list[RankedList] = []
    judged = fully_judged(source)
    catalogue_clusters = {right[i] for i in cat_ids if i in right}
    for row, (offer_id, offer, pos, neg) in enumerate(offers):
        gone = bool(removed[row])
        has_match = not gone and (bool(pos) or left.get(offer_id, "\0") in catalogue_clusters)
        idx = [int(j) for j in top[row] if j >= 0]
        ids = tuple(cat_ids[j] for j in idx)
        labels = tuple(_judge(source, offer_id, pos, neg, c) for c in ids)  # a removed match was known: 0s
        cosines = tuple(float(v) for v in (corpus[idx] @ queries[row]))
        out.append(
            RankedList(
                source.name, offer_id, offer, ids, tuple(products[j] for j in idx), cosines, labels, has_match, judged
            )
        )
    return out


def ranked_validation(sources: Sequence[SourceData], encoder: TextEncoder, **kwargs: Any) -> list[RankedList]:
    """Every source's ranked validation lists (keyword arguments: :func:`ranked_lists_of`)."""
    out: list[RankedList] = []
    for source in sources:
        lists = ranked_lists_of(source, encoder, **kwargs)
        found = sum(1 for r in lists if r.has_match and 1 in r.labels)
        with_match = sum(1 for r in lists if r.has_match)
        logger.info(
            "ranked validation %s: %d offers, %d with a match in the catalogue, %d of them retrieved",
            source.name,
            len(lists),
            with_match,
            found,
        )
        out += lists
    return out


@dataclass(frozen=True)
class TopDecisions:
    """Each offer's top candidate by the head: its probability and whether it is right."""

    scores: np.ndarray  # (offers,) probability of the top candidate
    correct: np.ndarray  # (offers,) 1 right, 0 wrong, UNKNOWN unjudged
    has_match: np.ndarray  # (offers,) bool
    sources: tuple[str, ...]


def top_decisions(lists: Sequence[RankedList], probabilities: np.ndarray) -> TopDecisions:
    """``probabilities``: one per candidate, the lists' candidates flattened in order."""
    return top_of_lists(
        [len(r.candidates) for r in lists],
        np.asarray([y for r in lists for y in r.labels], dtype=np.int64),
        np.asarray([r.has_match for r in lists], dtype=bool),
        [r.source for r in lists],
        probabilities,
    )


def top_of_lists(
    sizes: Sequence[int], labels: np.ndarray, has_match: np.ndarray, sources: Sequence[str], probabilities: np.ndarray
) -> TopDecisions:
    """Top-1 decisions of flattened lists: ``sizes`` candidates each, their ``labels`` and
    ``probabilities`` in list order. An empty list of an offer with a match is a wrong decision."""
    if int(np.sum(sizes)) != len(probabilities) or len(labels) != len(probabilities):
        total = int(np.sum(sizes))
        raise ValueError(f"{len(probabilities)} probabilities and {len(labels)} labels for {total} candidates")
    scores = np.zeros(len(sizes), dtype=np.float64)
    correct = np.where(np.asarray(has_match, dtype=bool), 0, UNKNOWN).astype(np.int64)
    at = 0
    for i, n in enumerate(int(v) for v in sizes):
        if n:
            best = at + int(np.argmax(probabilities[at : at + n]))
            scores[i] = float(probabilities[best])
            correct[i] = int(labels[best])
        at += n
    return TopDecisions(scores, correct, np.asarray(has_match, dtype=bool).copy(), tuple(str(s) for s in sources))


def subset(top: TopDecisions, keep: np.ndarray) -> TopDecisions:
    """The decisions of the offers where ``keep`` is true."""
    names = np.asarray(top.sources)
    return TopDecisions(top.scores[keep], top.correct[keep], top.has_match[keep], tuple(names[keep]))


def decision_stats(top: TopDecisions, cut: float) -> dict[str, Any]:
    """What matching every top candidate at ``cut`` does: judged precision (Wilson 95 %),
    coverage of the offers with a match, and the offer-level F1 of the two."""
    matched = top.scores >= cut
    right = int((matched & (top.correct == 1)).sum())
    wrong = int((matched & (top.correct == 0)).sum())
    with_match = int(top.has_match.sum())
    precision = right / (right + wrong) if right + wrong else 0.0
    coverage = int((matched & (top.correct == 1) & top.has_match).sum()) / with_match if with_match else 0.0
    low, high = wilson_interval(right, right + wrong)
    f1 = 2 * precision * coverage / (precision + coverage) if precision + coverage else 0.0
    return {
        "threshold": float(cut),
        "precision": precision,
        "precision_ci95": [low, high],
        "coverage": coverage,
        "f1": f1,
        "matched": int(matched.sum()),
        "right": right,
        "wrong": wrong,
        "unjudged": int(matched.sum()) - right - wrong,
        "offers": int(top.scores.size),
        "offers_with_match": with_match,
    }


def top1_cuts(top: TopDecisions, targets: Sequence[float]) -> tuple[dict[str, Any], dict[str, dict[str, Any] | None]]:
    """The best offer-F1 cut and, per precision target, the lowest cut whose monotone precision
    envelope over the judged top-1 decisions reaches it (None if none does)."""
    judged = top.correct != UNKNOWN
    candidates = np.unique(top.scores)
    best = max((decision_stats(top, float(c)) for c in candidates), key=lambda s: (s["f1"], s["threshold"]))
    table: dict[str, dict[str, Any] | None] = {}
    for target in targets:
        choice = threshold_for_precision(top.scores[judged], top.correct[judged], target, curve="envelope")
        table[str(target)] = None if choice is None else decision_stats(top, choice.threshold)
    return best, table


def per_source_stats(top: TopDecisions, cut: float) -> dict[str, dict[str, Any]]:
    names = np.asarray(top.sources)
    return {name: decision_stats(subset(top, names == name), cut) for name in sorted(set(top.sources))}


__all__ = [
    "UNKNOWN",
    "RankedList",
    "TopDecisions",
    "decision_stats",
    "fully_judged",
    "per_source_stats",
    "ranked_lists_of",
    "ranked_validation",
    "subset",
    "top1_cuts",
    "top_decisions",
    "top_of_lists",
]
