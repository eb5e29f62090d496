"""Automatic calibration refits: every ``CALIBRATE_EVERY_LABELS`` new labels (0 = off), a job
refits the serving scorer's thresholds exactly as ``POST /v1/admin/calibration`` with ``{}``.

Queued after a feedback request stores labels; whichever process runs it, serving processes
pick the stored calibration up like a promotion (`app/services.py`, bulk match jobs when they
start). A refit the labels cannot support (one class) fails the job with the reason, and the
next one waits for as many new labels again.
"""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session, sessionmaker

from app.core.config import Settings
from app.db import calibrations, jobs
from app.db.tables import Job
from app.jobs.context import JobContext, JobFailed
from app.jobs.queue import JobQueue, QueueUnavailable
from app.jobs.submit import push_or_withdraw
from app.pipeline.scoring import Scorer
from app.registry.calibration import CalibrationRefused, RefitOptions, refit, scorer_key
from app.registry.scorers import serving_scorer

logger = logging.getLogger(__name__)

KIND = "calibrate"


def schedule_if_due(
    settings: Settings, factory: sessionmaker[Session], queue: JobQueue, scorer: Scorer, encoder_id: str
) -> str | None:
    """Queue a refit when enough labels arrived since the scorer's last fit (or last queued
    refit); returns the job id, or None when none is due or the queue cannot take it."""
    every = settings.calibrate_every_labels
    if every <= 0:
        return None
    key = scorer_key(scorer, encoder_id)
    since = max(calibrations.labels_through(factory, key), calibrations.last_scheduled(factory, KIND, key))
    if calibrations.labels_after(factory, since) < every:
        return None
    payload = {"scorer_key": key, "labels_through": calibrations.newest_label_id(factory)}
    job, created = jobs.create_job(factory, KIND, payload, dedupe_key=f"{KIND}:{key}"[:128])
    if not created:
        return job.id
    try:
        push_or_withdraw(factory, queue, job.id)
    except QueueUnavailable:
        # The labels are stored; the refit waits for the next label (or an explicit POST).
        logger.warning("could not queue the automatic calibration refit: the queue is down")
        return None
    logger.info("automatic calibration refit queued as job %s (%d labels since the last fit)", job.id, every)
    return job.id


def run_calibrate(ctx: JobContext, job: Job) -> str:
    settings = ctx.settings
    encoder = ctx.encoder
    scorer, decider = serving_scorer(settings, ctx.factory, encoder.model_id)
    try:
        row = refit(settings, ctx.factory, scorer, encoder, decider, RefitOptions.from_settings(settings))
    except CalibrationRefused as exc:
        raise JobFailed(str(exc)) from exc
    summary = {
        "calibration_id": row.id,
        "scorer": row.scorer,
        "match_threshold": row.match_threshold,
        "review_threshold": row.review_threshold,
        "n_labels": row.n_labels,
        "precision": row.precision,
        "target_reached": row.target_reached,
    }
    jobs.set_stage(ctx.factory, job.id, "calibrated", 1, 1, result=summary)
    return jobs.COMPLETED
