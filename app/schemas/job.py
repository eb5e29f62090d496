"""Job payloads."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from app.schemas.common import UtcDatetime


class RowErrorOut(BaseModel):
    row: int
    field: str | None = None
    message: str


class JobProgress(BaseModel):
    rows_done: int
    rows_total: int | None = None
    fraction: float | None = None


class JobOut(BaseModel):
    id: str
    kind: str
    state: str
    progress: JobProgress
    rows_ok: int
    rows_unchanged: int
    rows_failed: int
    errors: list[RowErrorOut]
    error_count: int
    errors_truncated: bool
    message: str | None = None
    stage: str | None = None
    result: dict[str, Any] | None = None
    attempts: int
    timings: dict[str, Any]
    created_at: UtcDatetime
    started_at: UtcDatetime | None = None
    finished_at: UtcDatetime | None = None


class JobAccepted(BaseModel):
    job_id: str
    state: str
    status_url: str
