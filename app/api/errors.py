"""Exception handlers: known failures become clear 4xx/503 answers, never a bare 500."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from app.jobs.queue import QueueUnavailable
from app.services import NotReady

logger = logging.getLogger(__name__)


def _safe_errors(exc: RequestValidationError) -> list[dict[str, object]]:
    """Validation errors without the offending input: it may be huge, or NaN (not JSON)."""
    out: list[dict[str, object]] = []
    for err in exc.errors():
        loc = [str(p) if not isinstance(p, (int, str)) else p for p in err.get("loc", ())]
        msg = str(err.get("msg", ""))
        ctx = err.get("ctx") or {}
        if err.get("type") == "json_invalid" and ctx.get("error"):
            # FastAPI's "JSON decode error" alone does not say what is wrong; loc has the offset.
            msg = f"{msg}: {ctx['error']}"
        out.append({"loc": loc, "msg": msg, "type": str(err.get("type", ""))})
    return out


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _safe_errors(exc)}, status_code=422)

    @app.exception_handler(NotReady)
    async def _not_ready(_: Request, exc: NotReady) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(QueueUnavailable)
    async def _queue_down(_: Request, exc: QueueUnavailable) -> JSONResponse:
        return JSONResponse(
            {"detail": f"the job queue is unavailable, the job was not submitted; try again later ({exc})"},
            status_code=503,
            headers={"Retry-After": "5"},
        )

    def _db_unavailable() -> JSONResponse:
        return JSONResponse(
            {"detail": "the database is unavailable, try again later"},
            status_code=503,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(OperationalError)
    async def _db_down(_: Request, exc: OperationalError) -> JSONResponse:
        logger.warning("database unavailable: %s", exc.orig)
        return _db_unavailable()

    @app.exception_handler(DBAPIError)
    async def _db_error(request: Request, exc: DBAPIError) -> JSONResponse:
        # A connection lost mid-request (server restart, network) is an outage, not a bug;
        # pool_pre_ping replaces the dead connections on the next checkout.
        if exc.connection_invalidated or isinstance(exc, InterfaceError):
            logger.warning("database connection lost: %s", exc.orig)
            return _db_unavailable()
        return await _unexpected(request, exc)

    @app.exception_handler(PoolTimeout)
    async def _pool_exhausted(_: Request, exc: PoolTimeout) -> JSONResponse:
        logger.warning("no database connection available: %s", exc)
        return _db_unavailable()

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Reaching this handler is a bug: tests assert it is never hit.
        request.app.state.unhandled_errors += 1
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error"}, status_code=500)
