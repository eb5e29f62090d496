"""Files sent to job endpoints (ingestion, bulk matching): one set of checks for both.

A file arrives as a multipart upload or as a path below INGEST_ALLOWED_DIR; either way the job
gets a private copy under UPLOAD_DIR (jobs seek into it on resume, so it must not change), and
the copy is refused before a job exists when it is an archive, binary or over its size limit.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import HTTPException, UploadFile, status
from fastapi.concurrency import run_in_threadpool

from app.db import jobs
from app.db.tables import Job
from app.jobs.ingest_files import (
    ARCHIVE_SUFFIXES,
    COMPRESSED_MAGIC,
    UnreadableFile,
    UnsupportedFileType,
    archive_message,
    detect_format,
)
from app.jobs.submit import ensure_queue, push_or_withdraw

# Declared part types that are never plain CSV / JSON Lines: archives and compressed files are
# refused before a byte is stored (their content is also sniffed, whatever they claim to be).
# Whichever check finds an archive (type, name, leading bytes), the answer is the same 415 with
# `archive_message`.
ARCHIVE_CONTENT_TYPES = {
    "application/zip": "zip",
    "application/x-zip-compressed": "zip",
    "application/gzip": "gzip",
    "application/x-gzip": "gzip",
    "application/x-bzip2": "bzip2",
    "application/x-xz": "xz",
    "application/x-7z-compressed": "7z",
    "application/x-tar": "tar",
    "application/zstd": "zstd",
}


def confined(base: Path, requested: str, shown_folder: str | None = None) -> Path:
    """Resolve a server-side path, refusing anything outside the allowed folder.

    ``shown_folder`` is the folder as configured (e.g. ``var/import``), named in the 404 so a
    user knows where to put the file; resolved paths are never shown.
    """
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
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"path: no file {requested!r} in the ingest folder; put server-side files below INGEST_ALLOWED_DIR"
            f"{f' ({shown_folder})' if shown_folder else ''} and give their path relative to it",
        )
    return target


def refuse_declared_archive(file: UploadFile | None) -> None:
    declared = (file.content_type or "").split(";")[0].strip().lower() if file is not None else ""
    kind = ARCHIVE_CONTENT_TYPES.get(declared)
    if kind is not None:
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, archive_message(kind))


def refuse_archive(file: UploadFile, head: bytes) -> None:
    """An upload that is an archive or compressed file by its declared type, its name or its
    leading bytes ``head``: 415 with the same message as the job endpoints give."""
    refuse_declared_archive(file)
    name = (file.filename or "").lower()
    kind = next((k for suffix, k in ARCHIVE_SUFFIXES.items() if name.endswith(suffix)), None)
    kind = kind or next((k for magic, k in COMPRESSED_MAGIC.items() if head.startswith(magic)), None)
    if kind is not None:
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, archive_message(kind))


def store_copy(
    file: UploadFile | None,
    source: Path | None,
    target: Path,
    max_source_bytes: int,
    check: Callable[[Path], None],
) -> None:
    """Copy the upload (or the confined server-side file) to ``target``, then ``check`` it.

    Runs in a worker thread. A file that ``check`` finds unreadable is removed and answered
    with 415 (binary, archive) or 422 (anything else the check names).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    if file is not None:
        with target.open("wb") as out:
            shutil.copyfileobj(file.file, out, length=1 << 20)
    else:
        assert source is not None
        if source.stat().st_size > max_source_bytes:
            raise HTTPException(
                status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, f"file exceeds the limit of {max_source_bytes} bytes"
            )
        shutil.copyfile(source, target)
    try:
        check(target)
    except UnreadableFile as exc:
        target.unlink(missing_ok=True)
        binary = isinstance(exc, UnsupportedFileType) or "binary" in str(exc)
        code = status.HTTP_415_UNSUPPORTED_MEDIA_TYPE if binary else 422
        raise HTTPException(code, str(exc)) from exc


async def submit_file_job(
    services: Any,
    kind: str,
    file: UploadFile | None,
    path: str | None,
    declared_format: str | None,
    max_source_bytes: int,
    check: Callable[[Path, str], None],
    payload: Callable[[str, Path, str, str | None], dict[str, Any]],
) -> Job:
    """Validate, copy and queue a file job, all or nothing.

    ``check(copy, fmt)`` refuses unreadable files; ``payload(job_id, copy, fmt, name)`` is the
    job's payload. Nothing is stored when the queue is down (503), and the copy is removed when
    the job cannot be created or pushed.
    """
    settings = services.settings
    if (file is None) == (path is None):
        raise HTTPException(422, "send exactly one of 'file' (upload) or 'path'")
    refuse_declared_archive(file)
    job_id = str(uuid.uuid4())
    name = file.filename if file is not None else path
    allowed = Path(settings.ingest_allowed_dir)
    # A relative folder (the default var/import) is named in the 404; an absolute one is not shown.
    shown = None if allowed.is_absolute() else allowed.as_posix()
    source = confined(allowed, path, shown) if path is not None else None
    try:
        fmt = detect_format(name, declared_format)
    except UnreadableFile as exc:
        # An archive's name (catalogue.zip) gets the 415 its content type or bytes would get.
        code = status.HTTP_415_UNSUPPORTED_MEDIA_TYPE if isinstance(exc, UnsupportedFileType) else 422
        raise HTTPException(code, str(exc)) from exc
    await run_in_threadpool(ensure_queue, services.queue)
    target = Path(settings.upload_dir) / f"{job_id}.{fmt}"
    await run_in_threadpool(store_copy, file, source, target, max_source_bytes, lambda copy: check(copy, fmt))
    try:
        job, _ = await run_in_threadpool(
            jobs.create_job, services.factory, kind, payload(job_id, target, fmt, name), None, job_id
        )
    except Exception:
        target.unlink(missing_ok=True)  # e.g. the database is down (503): leave no stray copy
        raise
    await run_in_threadpool(push_or_withdraw, services.factory, services.queue, job.id, True, [target])
    return job
