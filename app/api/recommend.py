"""POST /v1/recommend and /v1/recommend/batch: related catalogue products for a query."""

from __future__ import annotations

import threading
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool

from app.api.deps import ServicesDep
from app.api.responses import errors
from app.recommend.images import ImageRejected, ImageSource
from app.recommend.service import Query, RecommenderUnavailable, RecommendService, Result, UnknownProduct
from app.schemas.recommend import (
    RecommendationOut,
    RecommendBatchRequest,
    RecommendBatchResponse,
    RecommendRequest,
    RecommendResponse,
)

router = APIRouter(prefix="/v1/recommend", tags=["recommend"], responses=errors(404, 413, 422, 503))
_create_lock = threading.Lock()


def get_recommender(request: Request, services: ServicesDep) -> RecommendService:
    """One recommender per app, created on first use (it reads the settings and the serving encoder)."""
    existing = getattr(request.app.state, "recommender", None)
    if existing is not None:
        return existing
    with _create_lock:
        existing = getattr(request.app.state, "recommender", None)
        if existing is None:
            existing = RecommendService(services.settings, services.factory, services.require_encoder)
            request.app.state.recommender = existing
    return existing


RecommenderDep = Annotated[RecommendService, Depends(get_recommender)]


def _query(req: RecommendRequest) -> Query:
    images = tuple(ImageSource(im.data_base64, im.path, im.url) for im in req.query.images)
    return Query(text=req.query.text, product_id=req.query.product_id, k=req.top_k, images=images)


def _response(result: Result, target: float) -> RecommendResponse:
    return RecommendResponse(
        items=[
            RecommendationOut(
                external_id=it.row.external_id,
                title=it.row.title,
                brand=it.row.brand,
                category=it.row.category,
                score=it.score,
                prototype=it.prototype,
                automated=result.automated and n == 0,
            )
            for n, it in enumerate(result.items)
        ],
        automated=result.automated,
        automation_score=result.automation_score,
        threshold=result.threshold,
        target_precision=target,
        model=result.model,
        images_used=result.images_used,
        catalogue_version=result.catalogue_version,
        timings_ms=result.timings_ms,
    )


async def _run(recommender: RecommendService, queries: list[Query]) -> list[Result]:
    try:
        return await run_in_threadpool(recommender.recommend, queries)
    except UnknownProduct as exc:
        raise HTTPException(404, str(exc)) from None
    except ImageRejected as exc:
        raise HTTPException(422, str(exc)) from None
    except RecommenderUnavailable as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": "30"}) from None


@router.post("", response_model=RecommendResponse)
async def recommend(body: RecommendRequest, recommender: RecommenderDep):
    """Top-k related catalogue products for an offer title or an existing product, and an ``automated`` flag."""
    results = await _run(recommender, [_query(body)])
    return _response(results[0], recommender.settings.recommend_target_precision)


@router.post("/batch", response_model=RecommendBatchResponse)
async def recommend_batch(body: RecommendBatchRequest, recommender: RecommenderDep):
    """Several queries in one call (at most ``RECOMMEND_MAX_BATCH_ITEMS``)."""
    cap = recommender.settings.recommend_max_batch_items
    if len(body.items) > cap:
        raise HTTPException(422, f"items: at most {cap} queries per batch, got {len(body.items)}")
    results = await _run(recommender, [_query(item) for item in body.items])
    target = recommender.settings.recommend_target_precision
    return RecommendBatchResponse(results=[_response(r, target) for r in results])
