"""The match pipeline: embed -> retrieve -> load candidates -> score -> decide.

Each stage is a separate object so the trained LEA reranker can replace the zero-shot scorer
without touching retrieval or the decision rule.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from app.db import products as repo
from app.db.review_queue import queue_for_review
from app.db.tables import Product
from app.pipeline.calibration import calibration_of
from app.pipeline.encoder import Encoder
from app.pipeline.hybrid import LexicalRescorer
from app.pipeline.scoring import REVIEW, Decider, Scorer
from app.search.sync import IndexService
from models.product_text import embed_text, norm_key


@dataclass
class Candidate:
    product_id: int
    external_id: str
    title: str
    brand: str | None
    category: str | None
    price: float | None
    currency: str | None
    retrieval_score: float
    retrieval_rank: int  # 1-based place in the blocking stage's list, before the scorer reorders it
    score: float | None  # None: beyond the rerank depth, the scorer never read it
    lexical_score: float | None = None
    explanation: list[dict[str, Any]] | None = None


@dataclass
class MatchResult:
    decision: str
    candidates: list[Candidate]
    index_version: int
    model_versions: dict[str, str]
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def best(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None


@dataclass(frozen=True)
class MatchQuery:
    offer: dict[str, Any]
    k: int
    brand: str | None = None
    category: str | None = None
    explain: bool = False


class MatchPipeline:
    def __init__(
        self,
        encoder: Encoder,
        index: IndexService,
        factory: sessionmaker[Session],
        scorer: Scorer,
        decider: Decider,
        rescorer: LexicalRescorer | None = None,
        *,
        rerank_depth: int,  # no default: a pipeline built from settings must not drop RERANK_DEPTH
    ) -> None:
        if rerank_depth < 0:
            raise ValueError(f"rerank_depth must be >= 0 (0 scores every candidate), got {rerank_depth}")
        self.encoder = encoder
        self.index = index
        self.factory = factory
        self.scorer = scorer
        self.decider = decider
        # Hybrid blocking: BM25 re-scores a deeper dense pool before the cut to k (None = dense only).
        self.rescorer = rescorer
        # Only blocking's first rerank_depth candidates are scored (0: all of them); the rest follow
        # in blocking order, unscored. The scorer is the request's largest cost, and the right
        # product is rarely deep in the list (docs/benchmarks.md, "How deep must the reranker look?").
        self.rerank_depth = rerank_depth

    def with_decider(self, decider: Decider) -> MatchPipeline:
        """The same pipeline deciding with other thresholds."""
        return type(self)(
            self.encoder, self.index, self.factory, self.scorer, decider, self.rescorer, rerank_depth=self.rerank_depth
        )

    def model_versions(self) -> dict[str, str]:
        versions = {"encoder": self.encoder.model_id, "scorer": self.scorer.name}
        if self.rescorer is not None:
            versions["blocking"] = self.rescorer.describe()
        calibration = calibration_of(self.decider)
        if calibration is not None:  # the catalogue calibration whose thresholds decided
            versions["calibration"] = str(calibration)
        return versions

    def match(self, queries: Sequence[MatchQuery]) -> list[MatchResult]:
        """Each query's scored candidates and decision; ``timings_ms`` holds the call's stages (ms):
        encode, dense_search, lexical (0 under dense blocking), load, rerank (the scorer), decide
        (candidates built, ordered and decided). The API adds parse, queue and respond."""
        t0 = time.perf_counter()
        texts = [embed_text(q.offer) for q in queries]
        vectors = self.encoder.encode(texts)
        t1 = time.perf_counter()

        # One consistent index state per call: queries sharing a filter share one search.
        hits: list[tuple[list[int], list[float]]] = [([], [])] * len(queries)
        version = self.index.index.version
        groups: dict[tuple[str | None, str | None, int], list[int]] = {}
        for i, q in enumerate(queries):
            groups.setdefault((norm_key(q.brand), norm_key(q.category), q.k), []).append(i)
        for (brand, category, k), members in groups.items():
            depth = self.rescorer.depth(k) if self.rescorer is not None else k
            result = self.index.index.search(vectors[np.asarray(members)], depth, brand=brand, category=category)
            version = result.version
            for j, i in enumerate(members):
                hits[i] = (result.ids[j], result.scores[j])
        t_dense = time.perf_counter()
        if self.rescorer is not None:
            filters = [(norm_key(q.brand), norm_key(q.category)) for q in queries]
            ks = [q.k for q in queries]
            hits = self.rescorer.narrow(texts, vectors, filters, hits, ks, version, self.index.model_id)
        t2 = time.perf_counter()

        wanted = sorted({pid for ids, _ in hits for pid in ids})
        rows = self._load(wanted)
        t3 = time.perf_counter()

        results: list[MatchResult] = []
        rerank_s = 0.0
        for query, (ids, cosines) in zip(queries, hits):
            present = [(pid, cos) for pid, cos in zip(ids, cosines) if pid in rows]
            depth = self.rerank_depth or len(present)
            head, tail = present[:depth], present[depth:]
            started = time.perf_counter()
            scored = self.scorer.score(
                query.offer,
                [product_mapping(rows[pid]) for pid, _ in head],
                [c for _, c in head],
                query.explain,
            )
            rerank_s += time.perf_counter() - started
            # place: in the blocking's order, before the sort below
            candidates = [
                _candidate(rows[pid], cos, place, s.score, s.lexical, s.explanation)
                for place, ((pid, cos), s) in enumerate(zip(head, scored), start=1)
            ]
            candidates.sort(key=_score_order)
            candidates += [
                _candidate(rows[pid], cos, place, None, None, None)
                for place, (pid, cos) in enumerate(tail, start=len(head) + 1)
            ]
            decision = self.decider.decide(candidates[0].score if candidates else None)
            results.append(MatchResult(decision, candidates, version, self.model_versions()))
        t4 = time.perf_counter()
        timings = {
            "encode": (t1 - t0) * 1000,
            "dense_search": (t_dense - t1) * 1000,
            "lexical": (t2 - t_dense) * 1000,
            "load": (t3 - t2) * 1000,
            "rerank": rerank_s * 1000,
            "decide": (t4 - t3 - rerank_s) * 1000,
        }
        for r in results:
            r.timings_ms = {k: round(v, 3) for k, v in timings.items()}
        return results

    def _load(self, ids: list[int]) -> dict[int, Product]:
        if not ids:
            return {}
        with self.factory() as session:
            return repo.products_by_ids(session, ids)


def _score_order(c: Candidate) -> tuple[float, float, int]:
    return (-c.score if c.score is not None else math.inf, -c.retrieval_score, c.product_id)


def _candidate(
    row: Product,
    cosine: float,
    place: int,
    score: float | None,
    lexical: float | None,
    explanation: list[dict[str, Any]] | None,
) -> Candidate:
    return Candidate(
        product_id=row.id,
        external_id=row.external_id,
        title=row.title,
        brand=row.brand,
        category=row.category,
        price=row.price,
        currency=row.currency,
        retrieval_score=round(float(cosine), 6),
        retrieval_rank=place,
        score=score,
        lexical_score=lexical,
        explanation=explanation,
    )


def queue_reviews(
    factory: sessionmaker[Session], offers: Sequence[dict[str, Any]], results: Sequence[MatchResult]
) -> int:
    """Every decision in the review band waits for a person, with its offer and candidates."""
    items = [
        {
            "offer": offer,
            "candidates": [
                {
                    "external_id": c.external_id,
                    "title": c.title,
                    "score": c.score,
                    "retrieval_score": c.retrieval_score,
                }
                for c in res.candidates
            ],
            "top_score": res.candidates[0].score if res.candidates else None,
            "model_versions": res.model_versions,
        }
        for offer, res in zip(offers, results)
        if res.decision == REVIEW
    ]
    return queue_for_review(factory, items)


def product_mapping(product: Product) -> dict[str, Any]:
    """A catalogue product as the scorers read it (also how calibration scores labelled pairs)."""
    return {
        "title": product.title,
        "name": product.title,
        "brand": product.brand,
        "manufacturer": product.brand,
        "category": product.category,
        "price": product.price,
        "currency": product.currency,
        "description": product.description,
        # Only the identifier attributes, from their own column: the pair signals read nothing else.
        "attributes": {"model": product.model_numbers} if product.model_numbers else {},
    }
