"""Application factory: create_app(settings) -> FastAPI."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI
from prometheus_client import CollectorRegistry

from app.api import admin, calibration, feedback, health, ingest, jobs, match, match_jobs, products
from app.api import recommend as recommend_api
from app.api.docs import install_docs
from app.api.errors import install_error_handlers
from app.api.metrics_collector import ServiceCollector
from app.api.middleware import AdminAuthMiddleware, BodyLimitMiddleware, JsonBodyMiddleware, MetricsMiddleware
from app.api.params import install_closed_forms, no_nul_in_params, no_repeated_query_params
from app.core.config import Settings, get_settings
from app.core.logging import configure_logging
from app.db import products as product_repo
from app.db.jobs import create_job
from app.demo import write_demo_file
from app.pipeline.encoder import Encoder
from app.services import Services
from app.ui import routes as ui_routes

logger = logging.getLogger(__name__)

DEMO_JOB_KEY = "demo-catalogue"


def load_demo_catalogue(services: Services) -> str | None:
    """Queue the demo catalogue on first start (empty catalogue, never loaded before)."""
    with services.factory() as session:
        if product_repo.count_products(session) > 0:
            return None
    path = write_demo_file(Path(services.settings.upload_dir) / "demo-catalogue.jsonl")  # type: ignore[arg-type]  # never None: Settings fills it in its validator
    job, created = create_job(
        services.factory, "ingest", {"path": str(path), "format": "jsonl", "filename": "demo"}, DEMO_JOB_KEY
    )
    if created:
        services.queue.push(job.id)
        logger.info("demo catalogue queued as job %s", job.id)
    return job.id


def _start(services: Services, background: bool, encoder: Encoder | None) -> None:
    def run() -> None:
        services.load(encoder)
        if services.ready.is_set() and services.settings.load_demo_catalogue:
            try:
                load_demo_catalogue(services)
            except Exception:  # noqa: BLE001 - the demo is a convenience, never fatal
                logger.exception("could not queue the demo catalogue")

    if background:
        threading.Thread(target=run, name="startup", daemon=True).start()
    else:
        run()


def create_app(
    settings: Settings | None = None, encoder: Encoder | None = None, background_load: bool = True
) -> FastAPI:
    """Build the app; `encoder` overrides the configured one (tests pass a tiny model)."""
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    registry = CollectorRegistry()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc = Services.create(settings)
        app.state.services = svc
        registry.register(ServiceCollector(svc))
        _start(svc, background_load, encoder)
        try:
            yield
        finally:
            svc.close()

    app = FastAPI(
        title="productmatch",
        version="0.1.0",
        description="Which catalogue product is this offer? FAISS blocking, scoring, calibrated decisions.",
        lifespan=lifespan,
        # /docs and /redoc are installed below with local assets (FastAPI's load from a CDN).
        docs_url=None,
        redoc_url=None,
        # NUL in a path or query parameter (PostgreSQL text cannot hold NUL), or a single-valued
        # query parameter given twice (`?kind=a&kind=b`): 422 naming it.
        dependencies=[Depends(no_nul_in_params), Depends(no_repeated_query_params)],
    )
    app.state.metrics_registry = registry
    app.state.unhandled_errors = 0
    routers = (
        health.router,
        products.router,
        ingest.router,
        jobs.router,
        match.router,
        match_jobs.router,
        recommend_api.router,
        feedback.router,
        admin.router,
        calibration.router,
    )
    for router in routers:
        app.include_router(router)
    app.include_router(ui_routes.router, include_in_schema=False)  # the web UI under /ui
    install_docs(app)
    install_closed_forms(app)
    install_error_handlers(app)
    # Innermost first: JSON checks see a body the limit already bounds; the admin token is
    # checked before any body is read; the metrics count every answer, 401s and 413s too.
    app.add_middleware(JsonBodyMiddleware, max_depth=settings.max_json_depth, max_bytes=settings.max_body_bytes)
    app.add_middleware(
        BodyLimitMiddleware,
        default_limit=settings.max_body_bytes,
        upload_limit=settings.max_upload_bytes,
        upload_paths=("/v1/ingest", "/v1/match/jobs"),
        path_limits={"/v1/feedback/import": settings.feedback_import_max_bytes},
    )
    app.add_middleware(AdminAuthMiddleware, token=settings.admin_token)
    app.add_middleware(MetricsMiddleware, registry=registry)  # outermost
    return app


def app_factory() -> FastAPI:
    """Entry point for `uvicorn --factory app.main:app_factory`."""
    return create_app()
