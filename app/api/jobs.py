"""Job status."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status
from fastapi.concurrency import run_in_threadpool

from app.api.deps import ServicesDep
from app.api.responses import COMMON, errors
from app.db import jobs
from app.schemas.job import JobOut, JobProgress, RowErrorOut
from app.services import Services

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=COMMON)


def job_out(services: Services, job_id: str, error_limit: int) -> JobOut | None:
    job = jobs.get_job(services.factory, job_id)
    if job is None:
        return None
    errors = jobs.row_errors(services.factory, job_id, error_limit)
    total = job.rows_total
    stored = len(errors)
    return JobOut(
        id=job.id,
        kind=job.kind,
        state=job.state,
        progress=JobProgress(
            rows_done=job.rows_done, rows_total=total, fraction=(job.rows_done / total) if total else None
        ),
        rows_ok=job.rows_ok,
        rows_unchanged=job.rows_unchanged,
        rows_failed=job.rows_failed,
        errors=[RowErrorOut(row=e.row, field=e.field, message=e.message) for e in errors],
        error_count=job.rows_failed,
        errors_truncated=job.rows_failed > stored,
        message=job.message,
        stage=job.stage,
        result=job.result,
        attempts=job.attempts,
        timings=job.timings or {},
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


@router.get("/{job_id}", response_model=JobOut, responses=errors(404))
async def get_job(
    services: ServicesDep,
    job_id: Annotated[str, Path(max_length=36)],
    error_limit: Annotated[int, Query(ge=0, le=1000)] = 100,
):
    out = await run_in_threadpool(job_out, services, job_id, error_limit)
    if out is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job_id!r} not found")
    return out
