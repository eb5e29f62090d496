"""Batch ingestion: upload a CSV / JSON Lines file (or name a server-side file); get a job id."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, HTTPException, UploadFile, status
from fastapi.concurrency import run_in_threadpool

from app.api.deps import ServicesDep
from app.api.responses import COMMON, errors
from app.api.uploads import confined, refuse_declared_archive, store_copy
from app.jobs import store
from app.jobs.ingest_files import UnreadableFile, check_upload, detect_format
from app.jobs.submit import ensure_queue, push_or_withdraw
from app.schemas.job import JobAccepted

router = APIRouter(prefix="/v1", tags=["ingest"], responses=COMMON)


@router.post(
    "/ingest",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobAccepted,
    responses=errors(403, 404, 415),
)
async def ingest(
    services: ServicesDep,
    file: Annotated[UploadFile | None, File(description="CSV with a header, or JSON Lines")] = None,
    format: Annotated[str | None, Form(max_length=16, description="csv or jsonl; else taken from the name")] = None,
    path: Annotated[str | None, Form(max_length=1024, description="a file below INGEST_ALLOWED_DIR")] = None,
):
    settings = services.settings
    if (file is None) == (path is None):
        raise HTTPException(422, "send exactly one of 'file' (upload) or 'path'")
    refuse_declared_archive(file)
    job_id = str(uuid.uuid4())
    name = file.filename if file is not None else path
    source = confined(Path(settings.ingest_allowed_dir), path) if path is not None else None  # type: ignore[arg-type]
    try:
        fmt = detect_format(name, format)
    except UnreadableFile as exc:
        raise HTTPException(422, str(exc)) from exc

    # Refuse (503) before storing anything when the job queue is down.
    await run_in_threadpool(ensure_queue, services.queue)
    target = Path(settings.upload_dir) / f"{job_id}.{fmt}"  # type: ignore[arg-type]

    await run_in_threadpool(
        store_copy, file, source, target, settings.max_upload_bytes, lambda path: check_upload(path, fmt)
    )
    try:
        job, _ = await run_in_threadpool(
            store.create_job,
            services.factory,
            "ingest",
            {"path": str(target), "format": fmt, "filename": name},
            None,
            job_id,
        )
    except Exception:
        target.unlink(missing_ok=True)  # e.g. the database is down (503): leave no stray upload
        raise
    await run_in_threadpool(push_or_withdraw, services.factory, services.queue, job.id, True, [target])
    return JobAccepted(job_id=job.id, state=job.state, status_url=f"/v1/jobs/{job.id}")
