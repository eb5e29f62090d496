"""Batch ingestion: upload a CSV / JSON Lines file (or name a server-side file); get a job id."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, HTTPException, UploadFile, status
from fastapi.concurrency import run_in_threadpool

from app.api.deps import ServicesDep
from app.api.responses import COMMON, errors
from app.jobs import store
from app.jobs.ingest_files import UnreadableFile, UnsupportedFileType, check_upload, detect_format
from app.jobs.submit import ensure_queue, push_or_withdraw
from app.schemas.job import JobAccepted

router = APIRouter(prefix="/v1", tags=["ingest"], responses=COMMON)

# Declared part types that are never plain CSV / JSON Lines: archives and compressed files are
# refused before a byte is stored (their content is also sniffed, whatever they claim to be).
REFUSED_CONTENT_TYPES = (
    "application/zip",
    "application/gzip",
    "application/x-gzip",
    "application/x-zip-compressed",
    "application/x-bzip2",
    "application/x-xz",
    "application/x-7z-compressed",
    "application/x-tar",
    "application/zstd",
)


def _confined(base: Path, requested: str) -> Path:
    """Resolve a server-side path, refusing anything outside the allowed folder."""
    if "\x00" in requested:
        raise HTTPException(422, "path: must not contain NUL bytes")
    if Path(requested).is_absolute() or ".." in Path(requested).parts:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "path: must be relative to the ingest folder and must not contain '..'"
        )
    root = base.resolve()
    target = (root / requested).resolve()
    if root not in target.parents:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "path: must stay inside the ingest folder")
    if not target.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"path: no file {requested!r} in the ingest folder")
    return target


@router.post(
    "/ingest",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobAccepted,
    responses=errors(403, 404, 415),
)
async def ingest(
    services: ServicesDep,
    file: Annotated[UploadFile | None, File(description="CSV with a header, or JSON Lines")] = None,
    format: Annotated[
        str | None, Form(max_length=16, description="csv or jsonl; else taken from the name")
    ] = None,
    path: Annotated[str | None, Form(max_length=1024, description="a file below INGEST_ALLOWED_DIR")] = None,
):
    settings = services.settings
    if (file is None) == (path is None):
        raise HTTPException(422, "send exactly one of 'file' (upload) or 'path'")
    declared = (file.content_type or "").split(";")[0].strip().lower() if file is not None else ""
    if declared in REFUSED_CONTENT_TYPES:
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            f"file: content type {declared!r} is not accepted; send uncompressed UTF-8 CSV or JSON Lines",
        )
    job_id = str(uuid.uuid4())
    name = file.filename if file is not None else path
    source = _confined(Path(settings.ingest_allowed_dir), path) if path is not None else None  # type: ignore[arg-type]
    try:
        fmt = detect_format(name, format)
    except UnreadableFile as exc:
        raise HTTPException(422, str(exc)) from exc

    # Refuse (503) before storing anything when the job queue is down.
    await run_in_threadpool(ensure_queue, services.queue)
    target = Path(settings.upload_dir) / f"{job_id}.{fmt}"  # type: ignore[arg-type]

    def save() -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        if file is not None:
            with target.open("wb") as out:
                shutil.copyfileobj(file.file, out, length=1 << 20)
        else:
            assert source is not None
            if source.stat().st_size > settings.max_upload_bytes:
                raise HTTPException(
                    status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
                    f"file exceeds the limit of {settings.max_upload_bytes} bytes",
                )
            shutil.copyfile(source, target)
        try:
            check_upload(target, fmt)
        except UnreadableFile as exc:
            target.unlink(missing_ok=True)
            binary = isinstance(exc, UnsupportedFileType) or "binary" in str(exc)
            code = status.HTTP_415_UNSUPPORTED_MEDIA_TYPE if binary else 422
            raise HTTPException(code, str(exc)) from exc

    await run_in_threadpool(save)
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
