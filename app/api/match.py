"""POST /v1/match and /v1/match/batch."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from fastapi.concurrency import run_in_threadpool

from app.api.deps import PipelineDep, ServicesDep
from app.api.responses import COMMON
from app.pipeline.match import MatchPipeline, MatchQuery, MatchResult, queue_reviews
from app.pipeline.scoring import MATCH
from app.schemas.match import CandidateOut, MatchBatchRequest, MatchBatchResponse, MatchRequest, MatchResponse
from app.services import Services

router = APIRouter(prefix="/v1/match", tags=["match"], responses=COMMON)


def _query(req: MatchRequest) -> MatchQuery:
    filters = req.filters
    return MatchQuery(
        offer=req.offer.model_dump(),
        k=req.top_k,
        brand=filters.brand if filters else None,
        category=filters.category if filters else None,
        explain=req.explain,
    )


def _response(result: MatchResult, thresholds: dict[str, float]) -> MatchResponse:
    candidates = [
        CandidateOut(
            external_id=c.external_id,
            title=c.title,
            brand=c.brand,
            category=c.category,
            price=c.price,
            currency=c.currency,
            score=c.score,
            retrieval_score=c.retrieval_score,
            lexical_score=c.lexical_score,
            explanation=c.explanation,  # type: ignore[arg-type]  # dicts, which pydantic validates into WordPairOut
        )
        for c in result.candidates
    ]
    return MatchResponse(
        decision=result.decision,
        match=candidates[0] if result.decision == MATCH and candidates else None,
        candidates=candidates,
        index_version=result.index_version,
        model_versions=result.model_versions,
        thresholds=thresholds,
        timings_ms=result.timings_ms,
    )


def _thresholds(pipeline: MatchPipeline) -> dict[str, float]:
    """The thresholds of the scorer that answered (a trained matcher brings its own)."""
    return {"match": pipeline.decider.match_threshold, "review": pipeline.decider.review_threshold}


def _queue_reviews(services: Services, requests: list[MatchRequest], results: list[MatchResult]) -> None:
    queue_reviews(services.factory, [req.offer.model_dump() for req in requests], results)


@router.post("", response_model=MatchResponse)
async def match(body: MatchRequest, pipeline: PipelineDep, services: ServicesDep):
    """Top-k catalogue candidates for one offer, each scored, and a decision."""
    results = await run_in_threadpool(pipeline.match, [_query(body)])
    await run_in_threadpool(_queue_reviews, services, [body], results)
    return _response(results[0], _thresholds(pipeline))


@router.post("/batch", response_model=MatchBatchResponse)
async def match_batch(body: MatchBatchRequest, pipeline: PipelineDep, services: ServicesDep):
    cap = services.settings.max_batch_items
    if len(body.items) > cap:
        raise HTTPException(422, f"items: at most {cap} offers per batch, got {len(body.items)}")
    results = await run_in_threadpool(pipeline.match, [_query(item) for item in body.items])
    await run_in_threadpool(_queue_reviews, services, body.items, results)
    thresholds = _thresholds(pipeline)
    return MatchBatchResponse(results=[_response(r, thresholds) for r in results])
