"""The promote and rollback jobs: a bi-encoder's vectors and index first, then activation.

Job handlers over the model registry (`app/registry`, which knows nothing of jobs). Serving
processes notice the new active version, load it, and swap their runtime in one assignment;
because the vectors and the index snapshot already exist, the swap is quick and the old model
serves every request until then.
"""

from __future__ import annotations

import logging

from app.db import model_versions
from app.db.tables import Job
from app.jobs.context import JobContext, JobFailed
from app.jobs.reembed import reembed_all
from app.registry.encoder_provider import load_version_encoder
from app.search.sync import IndexService

logger = logging.getLogger(__name__)


def prepare_blocker(ctx: JobContext, version: str) -> dict:
    row = model_versions.get(ctx.factory, version)
    if row.kind not in model_versions.BLOCKER_KINDS:
        raise JobFailed(f"{version} is a {row.kind}, not a bi-encoder")
    encoder = load_version_encoder(ctx.settings, version, row.path)
    embedded = reembed_all(ctx.factory, encoder)
    # Keyed by the encoder's model id (version + precision tag), the id serving looks up.
    index = IndexService.from_settings(ctx.factory, ctx.settings, encoder.model_id, encoder.dim)
    index.rebuild()
    index.catch_up()
    index.snapshot()
    return {"embedded": embedded, "indexed": len(index.index)}


def run_promote(ctx: JobContext, job: Job) -> str:
    version = job.payload["version"]
    try:
        row = model_versions.get(ctx.factory, version)
        if row.kind in model_versions.BLOCKER_KINDS:
            prepare_blocker(ctx, version)
        model_versions.activate(ctx.factory, version)
    except model_versions.RegistryError as exc:
        raise JobFailed(str(exc)) from exc
    logger.info("promoted %s", version)
    return "completed"


def run_rollback(ctx: JobContext, job: Job) -> str:
    kind = job.payload["kind"]
    if model_versions.active(ctx.factory, kind) is None:
        # The API answers 409 before queueing; a job queued from elsewhere (CLI) or one that
        # raced another rollback fails here instead of "completing" without doing anything.
        raise JobFailed(f"nothing to roll back: no {kind} version is active")
    target = model_versions.previous(ctx.factory, kind)
    if target is None:
        model_versions.deactivate(ctx.factory, kind)  # back to the packaged zero-shot model
        return "completed"
    if kind in model_versions.BLOCKER_KINDS:
        prepare_blocker(ctx, target.version)
    model_versions.activate(ctx.factory, target.version)
    return "completed"
