"""Batch ingestion: upload a CSV / JSON Lines file (or name a server-side file); get a job id."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, UploadFile, status

from app.api.deps import ServicesDep
from app.api.params import FORM_TEXT_PATTERN, form_fields
from app.api.responses import COMMON, errors
from app.api.uploads import submit_file_job
from app.jobs.ingest_files import check_upload
from app.schemas.job import JobAccepted

router = APIRouter(prefix="/v1", tags=["ingest"], responses=COMMON)


@router.post(
    "/ingest",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobAccepted,
    responses=errors(403, 404, 415),
    dependencies=[Depends(form_fields("format", "path"))],
)
async def ingest(
    services: ServicesDep,
    file: Annotated[UploadFile | None, File(description="CSV with a header, or JSON Lines")] = None,
    format: Annotated[
        str | None, Form(max_length=16, pattern=FORM_TEXT_PATTERN, description="csv or jsonl; else taken from the name")
    ] = None,
    path: Annotated[
        str | None, Form(max_length=1024, pattern=FORM_TEXT_PATTERN, description="a file below INGEST_ALLOWED_DIR")
    ] = None,
):
    """Ingest a catalogue file (upload, or `path` below INGEST_ALLOWED_DIR); 202 with the job id.

    Unknown or blank form fields are refused (422)."""
    job = await submit_file_job(
        services,
        "ingest",
        file,
        path,
        format,
        services.settings.max_upload_bytes,
        check_upload,
        lambda _job_id, copy, fmt, name: {"path": str(copy), "format": fmt, "filename": name},
    )
    return JobAccepted(job_id=job.id, state=job.state, status_url=f"/v1/jobs/{job.id}")
