"""Job payloads."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel


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
    attempts: int
    timings: dict[str, Any]
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None


class JobAccepted(BaseModel):
    job_id: str
    state: str
    status_url: str
