"""Run one job under a lease with a heartbeat; dispatch on its kind."""

from __future__ import annotations

import logging
import threading

from app.db import jobs
from app.jobs.calibrate import KIND as CALIBRATE
from app.jobs.calibrate import run_calibrate
from app.jobs.context import Handler, JobContext, JobFailed
from app.jobs.ingest import run_ingest
from app.jobs.match_feed.review import run_match_feed_job
from app.jobs.match_feed.runner import KIND as MATCH_FEED
from app.jobs.promote import run_promote, run_rollback

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 5

#: The job kinds of this package. Kinds implemented above it (retrain) come with the context
#: (`JobContext.handlers`), so that nothing here imports `app/retrain`.
HANDLERS: dict[str, Handler] = {
    "ingest": run_ingest,
    "promote": run_promote,
    "rollback": run_rollback,
    MATCH_FEED: run_match_feed_job,
    CALIBRATE: run_calibrate,
}


def handler_for(ctx: JobContext, kind: str) -> Handler | None:
    """The handler of ``kind``: the context's own first, then this package's."""
    return ctx.handlers.get(kind) or HANDLERS.get(kind)


class _Heartbeat:
    def __init__(self, ctx: JobContext, job_id: str, owner: str) -> None:
        self.ctx, self.job_id, self.owner = ctx, job_id, owner
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job_id[:8]}", daemon=True)

    def _run(self) -> None:
        lease = self.ctx.settings.job_lease_seconds
        while not self._stop.wait(max(0.2, lease / 3)):
            try:
                jobs.heartbeat(self.ctx.factory, self.job_id, self.owner, lease)
            except Exception:  # noqa: BLE001 - a missed beat only risks a redelivery
                logger.warning("heartbeat for job %s failed", self.job_id, exc_info=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def run_job(ctx: JobContext, job_id: str, owner: str) -> str | None:
    """Claim and run a job. Returns its final state, or None when someone else holds it."""
    if not jobs.claim(ctx.factory, job_id, owner, ctx.settings.job_lease_seconds):
        return None
    job = jobs.get_job(ctx.factory, job_id)
    if job is None:
        return None
    handler = handler_for(ctx, job.kind)
    if handler is None:
        jobs.finish(ctx.factory, job_id, owner, jobs.FAILED, f"unknown job kind {job.kind!r}")
        return jobs.FAILED
    logger.info("job %s (%s) started by %s, attempt %d", job_id, job.kind, owner, job.attempts)
    try:
        with _Heartbeat(ctx, job_id, owner):
            state = handler(ctx, job)
    except JobFailed as exc:
        jobs.finish(ctx.factory, job_id, owner, jobs.FAILED, str(exc))
        return jobs.FAILED
    except Exception as exc:  # noqa: BLE001 - retried, then reported on the job
        logger.exception("job %s raised", job_id)
        if job.attempts >= MAX_ATTEMPTS:
            jobs.finish(ctx.factory, job_id, owner, jobs.FAILED, f"failed after {job.attempts} attempts: {exc}")
            return jobs.FAILED
        jobs.release(ctx.factory, job_id, owner, f"attempt {job.attempts} failed: {exc}; will retry")
        return None
    jobs.finish(ctx.factory, job_id, owner, state)
    logger.info("job %s finished: %s", job_id, state)
    return state
