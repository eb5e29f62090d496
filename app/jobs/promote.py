"""The promote and rollback jobs: a bi-encoder's vectors and index first, then activation.

Job handlers over the model registry (`app/registry`, which knows nothing of jobs). Serving
processes notice the new active version, load it, and swap their runtime in one assignment;
because the vectors and the index snapshot already exist, the swap is quick and the old model
serves every request until then.
"""

from __future__ import annotations

import logging

from app.db.models import Job
from app.jobs.context import JobContext, JobFailed
from app.jobs.reembed import reembed_all
from app.registry import store
from app.registry.encoder_provider import load_version_encoder
from app.search.sync import IndexService

logger = logging.getLogger(__name__)


def prepare_blocker(ctx: JobContext, version: str) -> dict:
    row = store.get(ctx.factory, version)
    if row.kind not in store.BLOCKER_KINDS:
        raise JobFailed(f"{version} is a {row.kind}, not a bi-encoder")
    encoder = load_version_encoder(ctx.settings, version, row.path)
    embedded = reembed_all(ctx.factory, encoder)
    index = IndexService.from_settings(ctx.factory, ctx.settings, version, encoder.dim)
    index.rebuild()
    index.catch_up()
    index.snapshot()
    return {"embedded": embedded, "indexed": len(index.index)}


def run_promote(ctx: JobContext, job: Job) -> str:
    version = job.payload["version"]
    try:
        row = store.get(ctx.factory, version)
        if row.kind in store.BLOCKER_KINDS:
            prepare_blocker(ctx, version)
        store.activate(ctx.factory, version)
    except store.RegistryError as exc:
        raise JobFailed(str(exc)) from exc
    logger.info("promoted %s", version)
    return "completed"


def run_rollback(ctx: JobContext, job: Job) -> str:
    kind = job.payload["kind"]
    if store.active(ctx.factory, kind) is None:
        # The API answers 409 before queueing; a job queued from elsewhere (CLI) or one that
        # raced another rollback fails here instead of "completing" without doing anything.
        raise JobFailed(f"nothing to roll back: no {kind} version is active")
    target = store.previous(ctx.factory, kind)
    if target is None:
        store.deactivate(ctx.factory, kind)  # back to the packaged zero-shot model
        return "completed"
    if kind in store.BLOCKER_KINDS:
        prepare_blocker(ctx, target.version)
    store.activate(ctx.factory, target.version)
    return "completed"
