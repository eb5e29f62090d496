"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.api.deps import ServicesDep
from app.api.responses import errors

router = APIRouter(tags=["operations"], responses=errors(413))


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: touches neither the database nor the models."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "not ready"}})
async def readyz(services: ServicesDep) -> JSONResponse:
    """Readiness: 200 once the encoder, the index and the database are available."""
    checks = {
        "models": services.encoder is not None,
        "index": services.index is not None and services.ready.is_set(),
        "database": await run_in_threadpool(services.database_ok),
        "queue": await run_in_threadpool(services.queue.ping),
    }
    ready = checks["models"] and checks["index"] and checks["database"]
    body: dict[str, Any] = {"status": "ready" if ready else "not ready", "checks": checks}
    if services.load_error:
        body["error"] = services.load_error
    if services.index is not None:
        body["index"] = {"version": services.index.index.version, "size": len(services.index.index)}
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", response_class=PlainTextResponse, responses={200: {"content": {"text/plain": {}}}})
async def metrics(request: Request) -> Response:
    registry = request.app.state.metrics_registry
    data = await run_in_threadpool(generate_latest, registry)
    return Response(data, media_type=CONTENT_TYPE_LATEST)
