"""The worker loop: pop, run, ack; and a reaper that re-queues jobs of dead workers."""

from __future__ import annotations

import logging
import threading
import time

from app.db import jobs
from app.jobs.context import JobContext
from app.jobs.queue import JobQueue, QueueUnavailable, worker_name
from app.jobs.runner import run_job

logger = logging.getLogger(__name__)


class Worker:
    def __init__(self, ctx: JobContext, queue: JobQueue, owner: str | None = None) -> None:
        self.ctx = ctx
        self.queue = queue
        self.owner = owner or worker_name()
        self._stop = threading.Event()
        self._last_reap = 0.0
        self._thread: threading.Thread | None = None

    def reap(self) -> int:
        """Push every orphaned job again; the lease decides who actually runs it."""
        ids = jobs.orphaned_jobs(self.ctx.factory, queued_grace_seconds=self.ctx.settings.job_lease_seconds)
        for job_id in ids:
            self.queue.push(job_id)
        if ids:
            logger.info("re-queued %d orphaned job(s)", len(ids))
        return len(ids)

    def run_once(self, timeout: float = 1.0) -> str | None:
        now = time.monotonic()
        if now - self._last_reap >= max(0.5, self.ctx.settings.job_lease_seconds / 2):
            self._last_reap = now
            self.reap()
        job_id = self.queue.pop(timeout)
        if job_id is None:
            return None
        try:
            return run_job(self.ctx, job_id, self.owner)
        finally:
            self.queue.ack(job_id)

    def run_forever(self) -> None:
        logger.info("worker %s started", self.owner)
        while not self._stop.is_set():
            try:
                self.run_once()
            except QueueUnavailable as exc:
                logger.warning("%s; retrying in 2 s", exc)
                self._stop.wait(2.0)
            except Exception:  # noqa: BLE001 - the loop must survive anything a job does
                logger.exception("worker loop error")
                self._stop.wait(1.0)

    def stop(self, wait_seconds: float = 0.0) -> bool:
        """Stop taking jobs; with ``wait_seconds``, let the job in hand finish for that long.

        Returns False when a job was still running at the deadline: its lease lapses and the
        reaper of another (or the next) worker hands it out again, so nothing is lost, but it
        is not left writing into a database the caller is about to close.
        """
        self._stop.set()
        thread = self._thread
        if wait_seconds <= 0 or thread is None or thread is threading.current_thread():
            return True
        thread.join(wait_seconds)
        if thread.is_alive():
            logger.warning("worker %s still busy after %.0f s; its job will be redelivered", self.owner, wait_seconds)
            return False
        return True

    def start_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.run_forever, name="job-worker", daemon=True)
        self._thread = thread
        thread.start()
        return thread
