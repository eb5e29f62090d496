"""Admin operations (bearer token): index check, repair, rebuild and snapshot; model versions
(list, precision/recall curve, promote, roll back) and retraining."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path as PathLib
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from app.api.deps import AdminDep, ServicesDep
from app.api.responses import COMMON, errors
from app.db import jobs, model_versions
from app.db.tables import ModelVersion
from app.jobs.submit import ensure_queue, push_or_withdraw
from app.schemas.job import JobAccepted
from app.schemas.retrain import RetrainRequest
from app.search.sync import IndexService
from app.services import NotReady, Services
from models.artefacts import CALIBRATION_FILE, MATCHER_KIND

router = APIRouter(
    prefix="/v1/admin", tags=["admin"], dependencies=[AdminDep], responses={**COMMON, **errors(401, 403)}
)


def _index(services: Services) -> IndexService:
    if services.index is None:
        raise NotReady("the index is still loading")
    return services.index


@router.get("/index")
async def index_status(services: ServicesDep) -> dict:
    index = _index(services)
    report = await run_in_threadpool(index.verify, False)
    return {
        "stats": index.index.stats(),
        "consistent": report.consistent,
        "missing": len(report.missing),
        "orphans": len(report.orphans),
    }


@router.post("/index/repair")
async def index_repair(services: ServicesDep) -> dict:
    report = await run_in_threadpool(_index(services).verify, True)
    return {"repaired": report.repaired, "missing": len(report.missing), "orphans": len(report.orphans)}


@router.post("/index/rebuild")
async def index_rebuild(services: ServicesDep) -> dict:
    index = _index(services)
    await run_in_threadpool(index.rebuild)
    path = await run_in_threadpool(index.snapshot)
    return {"stats": index.index.stats(), "snapshot": str(path)}


def _version_out(row: ModelVersion) -> dict:
    return {
        "version": row.version,
        "kind": row.kind,
        "status": row.status,
        "metrics": row.metrics,
        "created_at": row.created_at,
        "promoted_at": row.promoted_at,
        "manifest": row.manifest,
    }


@router.get("/models")
async def list_models(services: ServicesDep, kind: Annotated[str | None, Query(max_length=32)] = None) -> dict:
    rows = await run_in_threadpool(model_versions.list_versions, services.factory, kind)
    return {"versions": [_version_out(r) for r in rows]}


class PrPoint(BaseModel):
    threshold: float
    precision: float
    recall: float


class PrCurve(BaseModel):
    version: str
    points: list[PrPoint] = Field(description="precision and recall of `probability >= threshold`, ascending")
    threshold: float = Field(description="the version's decision threshold (best F1 on validation)")


def _read_pr_curve(row: ModelVersion) -> PrCurve:
    path = PathLib(row.path) / CALIBRATION_FILE
    try:
        calibration = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        msg = f"{row.version} has no readable {CALIBRATION_FILE}: no precision/recall curve"
        raise HTTPException(404, msg) from exc
    if not isinstance(calibration, dict):
        calibration = {}
    points = (calibration.get("valid") or {}).get("pr_curve")
    if not points or calibration.get("threshold") is None:
        raise HTTPException(
            404,
            f"{row.version} has no precision/recall curve: its {CALIBRATION_FILE} predates pr_curve"
            " (retrain the matcher to record one)",
        )
    return PrCurve(version=row.version, points=points, threshold=calibration["threshold"])


@router.get("/models/{version}/pr-curve", response_model=PrCurve, responses=errors(404, 409))
async def pr_curve(version: Annotated[str, Path(max_length=128)], services: ServicesDep) -> PrCurve:
    """Precision and recall against the decision threshold on the matcher's validation split."""
    try:
        row = await run_in_threadpool(model_versions.get, services.factory, version)
    except model_versions.RegistryError as exc:
        raise HTTPException(404, str(exc)) from exc
    if row.kind != MATCHER_KIND:
        raise HTTPException(409, f"{version} is a {row.kind} model: only a {MATCHER_KIND} has a precision/recall curve")
    return await run_in_threadpool(_read_pr_curve, row)


@router.post("/models/{version}/promote", status_code=202, response_model=JobAccepted, responses=errors(404))
async def promote(version: Annotated[str, Path(max_length=128)], services: ServicesDep):
    """Embed the catalogue with the version (bi-encoder), build its index, then activate it."""
    try:
        await run_in_threadpool(model_versions.get, services.factory, version)
    except model_versions.RegistryError as exc:
        raise HTTPException(404, str(exc)) from exc
    await run_in_threadpool(ensure_queue, services.queue)
    job, created = await run_in_threadpool(
        jobs.create_job, services.factory, "promote", {"version": version}, f"promote:{version}"
    )
    await run_in_threadpool(push_or_withdraw, services.factory, services.queue, job.id, created)
    return JobAccepted(job_id=job.id, state=job.state, status_url=f"/v1/jobs/{job.id}")


@router.post("/models/rollback", status_code=202, response_model=JobAccepted, responses=errors(409))
async def rollback(services: ServicesDep, kind: Annotated[str, Query(pattern="^(bi-encoder|matcher)$")] = "bi-encoder"):
    """Take the active version of a kind out of service: the previously promoted version (or the
    packaged zero-shot model) returns. 409 when no version of the kind is active."""
    await run_in_threadpool(ensure_queue, services.queue)
    if await run_in_threadpool(model_versions.active, services.factory, kind) is None:
        raise HTTPException(
            409, f"nothing to roll back: no {kind} version is active (the packaged zero-shot model is serving)"
        )
    job, created = await run_in_threadpool(
        jobs.create_job, services.factory, "rollback", {"kind": kind}, f"rollback:{kind}"
    )
    await run_in_threadpool(push_or_withdraw, services.factory, services.queue, job.id, created)
    return JobAccepted(job_id=job.id, state=job.state, status_url=f"/v1/jobs/{job.id}")


@router.post("/models/{version}/rollback", status_code=202, response_model=JobAccepted, responses=errors(404, 409))
async def rollback_version(version: Annotated[str, Path(max_length=128)], services: ServicesDep):
    """Take the active `version` out of service: its kind's previous version (or zero-shot) returns."""
    try:
        row = await run_in_threadpool(model_versions.get, services.factory, version)
    except model_versions.RegistryError as exc:
        raise HTTPException(404, str(exc)) from exc
    if row.status != model_versions.ACTIVE:
        raise HTTPException(409, f"{version} is {row.status}, not active: there is nothing to roll back")
    await run_in_threadpool(ensure_queue, services.queue)
    job, created = await run_in_threadpool(
        jobs.create_job, services.factory, "rollback", {"kind": row.kind}, f"rollback:{row.kind}"
    )
    await run_in_threadpool(push_or_withdraw, services.factory, services.queue, job.id, created)
    return JobAccepted(job_id=job.id, state=job.state, status_url=f"/v1/jobs/{job.id}")


@router.post("/retrain", status_code=202, response_model=JobAccepted, responses=errors(422))
async def retrain(body: RetrainRequest, services: ServicesDep):
    """Train a blocker and/or a matcher on stored feedback and allowed benchmark folders.

    The job detects noisy labels, trains, evaluates on a held-out split, registers the version
    and promotes it when it is at least as good as the serving model (or when forced). The
    same request sent again while its job is queued or running returns that job.
    """
    allowed = ["feedback", *services.settings.retrain_benchmarks]
    unknown = [s for s in body.sources if s not in allowed]
    if unknown:
        raise HTTPException(422, f"sources: unknown {unknown}; allowed: {allowed}")
    payload = body.model_dump()
    key = "retrain:" + hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:40]
    await run_in_threadpool(ensure_queue, services.queue)
    job, created = await run_in_threadpool(jobs.create_job, services.factory, "retrain", payload, key)
    if created:
        await run_in_threadpool(push_or_withdraw, services.factory, services.queue, job.id)
    return JobAccepted(job_id=job.id, state=job.state, status_url=f"/v1/jobs/{job.id}")
