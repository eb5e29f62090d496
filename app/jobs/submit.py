"""Submitting a job from an API request: all or nothing.

When the queue (Redis) cannot take a job, the request is refused with 503 and nothing stays
behind: the queue is pinged before anything is stored, and if the push still fails (Redis went
away in between) the freshly created job row and its uploaded file are withdrawn. A client that
got a 503 can therefore simply retry; a client that got a 202 has a job that will run (a job
whose push is lost later, e.g. Redis restarted without persistence, is re-queued by the
workers' reaper from the database).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from app.db import jobs
from app.jobs.queue import JobQueue, QueueUnavailable

logger = logging.getLogger(__name__)


def ensure_queue(queue: JobQueue) -> None:
    """Raise QueueUnavailable (-> 503) before anything is stored when the queue is down."""
    if not queue.ping():
        raise QueueUnavailable("Redis does not answer")


def push_or_withdraw(
    factory: sessionmaker[Session],
    queue: JobQueue,
    job_id: str,
    created: bool = True,
    files: Iterable[Path] = (),
) -> None:
    """Push the job; on failure delete what this request created, then re-raise."""
    try:
        queue.push(job_id)
    except QueueUnavailable:
        if created:
            try:
                jobs.withdraw_job(factory, job_id)
            except Exception:  # noqa: BLE001 - the reaper re-queues a leftover queued job anyway
                logger.warning("could not withdraw job %s after a failed push", job_id, exc_info=True)
            for path in files:
                Path(path).unlink(missing_ok=True)
        raise
