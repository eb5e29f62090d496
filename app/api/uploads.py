"""Files sent to job endpoints (ingestion, bulk matching): one set of checks for both.

A file arrives as a multipart upload or as a path below INGEST_ALLOWED_DIR; either way the job
gets a private copy under UPLOAD_DIR (jobs seek into it on resume, so it must not change), and
the copy is refused before a job exists when it is an archive, binary or over its size limit.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from fastapi import HTTPException, UploadFile, status

from app.jobs.ingest_files import UnreadableFile, UnsupportedFileType

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


def confined(base: Path, requested: str) -> Path:
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


def refuse_declared_archive(file: UploadFile | None) -> None:
    declared = (file.content_type or "").split(";")[0].strip().lower() if file is not None else ""
    if declared in REFUSED_CONTENT_TYPES:
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            f"file: content type {declared!r} is not accepted; send uncompressed UTF-8 CSV or JSON Lines",
        )


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
