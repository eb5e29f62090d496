"""Job rows: creation, leases (at-least-once execution), progress and row errors."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from app.db.tables import Job, JobRowError

QUEUED, RUNNING = "queued", "running"
COMPLETED, COMPLETED_WITH_ERRORS, FAILED = "completed", "completed_with_errors", "failed"
ACTIVE_STATES = (QUEUED, RUNNING)
FINAL_STATES = (COMPLETED, COMPLETED_WITH_ERRORS, FAILED)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def create_job(
    factory: sessionmaker[Session],
    kind: str,
    payload: dict[str, Any],
    dedupe_key: str | None = None,
    job_id: str | None = None,
) -> tuple[Job, bool]:
    """Create a queued job; with a dedupe key an active duplicate is returned instead (created=False)."""
    with factory() as session:
        if dedupe_key:
            existing = session.scalar(select(Job).where(Job.dedupe_key == dedupe_key))
            if existing is not None:
                if existing.state in ACTIVE_STATES:
                    return existing, False
                # A finished job frees its key for a new run.
                existing.dedupe_key = None
                session.commit()
        job = Job(
            id=job_id or str(uuid.uuid4()),
            kind=kind,
            state=QUEUED,
            payload=payload,
            dedupe_key=dedupe_key,
            rows_done=0,
            rows_ok=0,
            rows_unchanged=0,
            rows_failed=0,
            checkpoint=0,
            timings={},
            attempts=0,
        )
        session.add(job)
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            existing = session.scalar(select(Job).where(Job.dedupe_key == dedupe_key))
            if existing is None:
                raise
            return existing, False
        return job, True


def get_job(factory: sessionmaker[Session], job_id: str) -> Job | None:
    with factory() as session:
        return session.get(Job, job_id)


def claim(factory: sessionmaker[Session], job_id: str, owner: str, lease_seconds: float) -> bool:
    """Take the job's lease if it is free or expired. Atomic: one claimant wins."""
    now = _now()
    with factory() as session, session.begin():
        result = session.execute(
            update(Job)
            .where(
                Job.id == job_id,
                Job.state.in_(ACTIVE_STATES),
                or_(Job.lease_expires_at.is_(None), Job.lease_expires_at < now, Job.lease_owner == owner),
            )
            .values(
                state=RUNNING,
                lease_owner=owner,
                lease_expires_at=now + timedelta(seconds=lease_seconds),
                attempts=Job.attempts + 1,
                started_at=func.coalesce(Job.started_at, now),
            )
        )
        return cast(CursorResult[Any], result).rowcount == 1


def heartbeat(factory: sessionmaker[Session], job_id: str, owner: str, lease_seconds: float) -> bool:
    with factory() as session, session.begin():
        result = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.lease_owner == owner, Job.state == RUNNING)
            .values(lease_expires_at=_now() + timedelta(seconds=lease_seconds))
        )
        return cast(CursorResult[Any], result).rowcount == 1


def release(factory: sessionmaker[Session], job_id: str, owner: str, message: str | None = None) -> None:
    """Give the lease back without finishing, so another worker retries the job."""
    with factory() as session, session.begin():
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.lease_owner == owner)
            .values(lease_owner=None, lease_expires_at=None, message=message)
        )


def finish(
    factory: sessionmaker[Session],
    job_id: str,
    owner: str | None,
    state: str,
    message: str | None = None,
    timings: dict[str, Any] | None = None,
) -> None:
    with factory() as session, session.begin():
        stmt = update(Job).where(Job.id == job_id)
        if owner is not None:
            stmt = stmt.where(Job.lease_owner == owner)
        values: dict[str, Any] = {
            "state": state,
            "message": message,
            "finished_at": _now(),
            "lease_owner": None,
            "lease_expires_at": None,
        }
        if timings is not None:
            values["timings"] = timings
        session.execute(stmt.values(**values))


def orphaned_jobs(factory: sessionmaker[Session], queued_grace_seconds: float = 30.0) -> list[str]:
    """Running jobs whose lease expired (their worker died) and long-queued jobs (lost pushes)."""
    now = _now()
    with factory() as session:
        rows = session.scalars(
            select(Job.id).where(
                or_(
                    (Job.state == RUNNING) & or_(Job.lease_expires_at.is_(None), Job.lease_expires_at < now),
                    (Job.state == QUEUED) & (Job.created_at < now - timedelta(seconds=queued_grace_seconds)),
                )
            )
        )
        return list(rows)


def counts_by_kind_and_state(factory: sessionmaker[Session]) -> list[tuple[str, str, int]]:
    """(kind, state, number of jobs) for every kind and state present."""
    with factory() as session:
        rows = session.execute(select(Job.kind, Job.state, func.count()).group_by(Job.kind, Job.state))
        return [(kind, state, int(count)) for kind, state, count in rows]


def set_rows_total(factory: sessionmaker[Session], job_id: str, total: int) -> None:
    with factory() as session, session.begin():
        session.execute(update(Job).where(Job.id == job_id).values(rows_total=total))


def set_timings(factory: sessionmaker[Session], job_id: str, timings: dict[str, Any]) -> None:
    with factory() as session, session.begin():
        session.execute(update(Job).where(Job.id == job_id).values(timings=timings))


def add_chunk_counts(session: Session, job_id: str, consumed: int, ok: int, unchanged: int, failed: int) -> None:
    """Move the checkpoint to `consumed` rows and add one chunk's counters (in the chunk's transaction)."""
    session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(
            checkpoint=consumed,
            rows_done=consumed,
            rows_ok=Job.rows_ok + ok,
            rows_unchanged=Job.rows_unchanged + unchanged,
            rows_failed=Job.rows_failed + failed,
        )
    )


def advance_checkpoint(
    session: Session,
    job_id: str,
    checkpoint: int,
    consumed: int,
    rows_ok: int,
    rows_failed: int,
    timings: dict[str, Any],
) -> bool:
    """Move the checkpoint from `checkpoint` to `consumed` with absolute counters; False when the
    job is no longer at `checkpoint` (another worker committed the chunk)."""
    done = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.checkpoint == checkpoint)
        .values(checkpoint=consumed, rows_done=consumed, rows_ok=rows_ok, rows_failed=rows_failed, timings=timings)
    )
    return cast(CursorResult[Any], done).rowcount == 1


def add_row_errors(session: Session, job_id: str, errors: list[tuple[int, str | None, str]], cap: int) -> None:
    """Store row errors up to `cap` per job; the total is counted on the job regardless."""
    stored = session.scalar(select(func.count(JobRowError.id)).where(JobRowError.job_id == job_id)) or 0
    room = max(0, cap - stored)
    session.add_all(JobRowError(job_id=job_id, row=r, field=f, message=m) for r, f, m in errors[:room])


def row_errors(factory: sessionmaker[Session], job_id: str, limit: int) -> list[JobRowError]:
    with factory() as session:
        return list(
            session.scalars(
                select(JobRowError).where(JobRowError.job_id == job_id).order_by(JobRowError.row).limit(limit)
            )
        )


def set_stage(
    factory: sessionmaker[Session],
    job_id: str,
    stage: str,
    done: int,
    total: int,
    result: dict[str, Any] | None = None,
) -> None:
    """Progress of a multi-stage job: the stage now running, stages done, what it produced so far."""
    with factory() as session, session.begin():
        job = session.get(Job, job_id)
        if job is None:
            return
        job.stage, job.rows_done, job.rows_total = stage[:64], done, total  # the column holds 64
        if result is not None:
            job.result = result


def withdraw_job(factory: sessionmaker[Session], job_id: str) -> bool:
    """Delete a job nobody has started (its submission failed); True when it was removed."""
    with factory() as session, session.begin():
        job = session.get(Job, job_id)
        if job is None or job.state != QUEUED or job.attempts:
            return False
        session.execute(delete(JobRowError).where(JobRowError.job_id == job_id))
        session.delete(job)
        return True
