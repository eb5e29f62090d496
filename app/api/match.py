"""POST /v1/match and /v1/match/batch."""

from __future__ import annotations

import time

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool

from app.api.deps import PipelineDep, ServicesDep
from app.api.responses import COMMON
from app.api.timing import TimedRoute, mark_returned, ms_since_received
from app.pipeline.match import MatchPipeline, MatchQuery, MatchResult, queue_reviews
from app.pipeline.scoring import MATCH
from app.schemas.match import CandidateOut, MatchBatchRequest, MatchBatchResponse, MatchRequest, MatchResponse
from app.services import Services

# TimedRoute: parse time in timings_ms, serialisation and the route's total in Server-Timing.
router = APIRouter(prefix="/v1/match", tags=["match"], responses=COMMON, route_class=TimedRoute)


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
            retrieval_rank=c.retrieval_rank,
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


def _queue_timed(services: Services, requests: list[MatchRequest], results: list[MatchResult]) -> float:
    started = time.perf_counter()
    _queue_reviews(services, requests, results)
    return (time.perf_counter() - started) * 1000


def _with_route_timings(responses: list[MatchResponse], parse_ms: float, queue_ms: float, started: float) -> None:
    """Stamp the route's own stages: parse, queue (the review queue write), respond (building the responses)."""
    respond_ms = (time.perf_counter() - started) * 1000
    for response in responses:
        response.timings_ms.update(parse=round(parse_ms, 3), queue=round(queue_ms, 3), respond=round(respond_ms, 3))


@router.post("", response_model=MatchResponse)
async def match(body: MatchRequest, pipeline: PipelineDep, services: ServicesDep, request: Request):
    """Top-k catalogue candidates for one offer, each scored, and a decision."""
    parse_ms = ms_since_received(request)
    results = await run_in_threadpool(pipeline.match, [_query(body)])
    queue_ms = await run_in_threadpool(_queue_timed, services, [body], results)
    started = time.perf_counter()
    response = _response(results[0], _thresholds(pipeline))
    _with_route_timings([response], parse_ms, queue_ms, started)
    mark_returned(request)
    return response


@router.post("/batch", response_model=MatchBatchResponse)
async def match_batch(body: MatchBatchRequest, pipeline: PipelineDep, services: ServicesDep, request: Request):
    parse_ms = ms_since_received(request)
    cap = services.settings.max_batch_items
    if len(body.items) > cap:
        raise HTTPException(422, f"items: at most {cap} offers per batch, got {len(body.items)}")
    results = await run_in_threadpool(pipeline.match, [_query(item) for item in body.items])
    queue_ms = await run_in_threadpool(_queue_timed, services, body.items, results)
    started = time.perf_counter()
    thresholds = _thresholds(pipeline)
    responses = [_response(r, thresholds) for r in results]
    _with_route_timings(responses, parse_ms, queue_ms, started)
    mark_returned(request)
    return MatchBatchResponse(results=responses)
