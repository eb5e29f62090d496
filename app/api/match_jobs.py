"""Bulk matching: submit a whole feed (upload or server-side path), download the results."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, HTTPException, UploadFile, status
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

from app.api.deps import ServicesDep
from app.api.params import FORM_TEXT_PATTERN, form_fields
from app.api.responses import COMMON, errors
from app.api.uploads import submit_file_job
from app.db import jobs
from app.jobs.match_feed.reader import check_feed
from app.jobs.match_feed.runner import KIND, make_payload
from app.jobs.match_feed.writer import MEDIA_TYPES
from app.schemas.match import MAX_TOP_K
from app.schemas.match_job import Engine, MatchJobAccepted, OutputFormat
from app.schemas.product import MAX_SHORT_CHARS

router = APIRouter(prefix="/v1/match/jobs", tags=["match"], responses=COMMON)


FORM_FIELDS = ("path", "format", "output", "top_k", "brand", "category", "engine", "review")


def ray_cluster_address() -> str | None:
    """The Ray cluster the API may hand jobs to; the API never starts a Ray runtime of its own."""
    return (os.environ.get("RAY_ADDRESS") or "").strip() or None


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=MatchJobAccepted,
    responses=errors(403, 404, 415),
    dependencies=[Depends(form_fields(*FORM_FIELDS))],
)
async def submit_match_job(
    services: ServicesDep,
    file: Annotated[UploadFile | None, File(description="offers: CSV with a header, or JSON Lines")] = None,
    path: Annotated[
        str | None,
        Form(max_length=1024, pattern=FORM_TEXT_PATTERN, description="a feed below INGEST_ALLOWED_DIR"),
    ] = None,
    format: Annotated[
        str | None,
        Form(
            max_length=16, pattern=FORM_TEXT_PATTERN, description="feed format csv or jsonl; else taken from the name"
        ),
    ] = None,
    output: Annotated[OutputFormat, Form(description="result file format")] = "csv",
    top_k: Annotated[int | None, Form(ge=1, le=MAX_TOP_K, description="candidates per offer")] = None,
    brand: Annotated[
        str | None, Form(max_length=MAX_SHORT_CHARS, pattern=FORM_TEXT_PATTERN, description="only this brand")
    ] = None,
    category: Annotated[
        str | None, Form(max_length=MAX_SHORT_CHARS, pattern=FORM_TEXT_PATTERN, description="only this category")
    ] = None,
    engine: Annotated[
        Engine | None,
        Form(description="local, or ray (needs RAY_ADDRESS; the default when RAY_ADDRESS is set)"),
    ] = None,
    review: Annotated[
        bool,
        Form(description="queue the job's review-band decisions for a person (default false: the file has them)"),
    ] = False,
):
    """Match every offer of a feed in the background; 202 with the job id.

    Each feed row needs an id (`offer_id`, `id` or `external_id`) and a `title`; the other
    offer fields of `/v1/match` are optional. Bad rows are reported on the job, never fatal.
    Unknown or blank form fields are refused (422). `engine=ray` needs a Ray cluster named by
    `RAY_ADDRESS` (422 otherwise): the API never starts a Ray runtime itself. With
    `review=true` the job's `review` decisions join the review queue (`GET /v1/review`), one
    open item per offer and candidate set, as for `/v1/match`.
    """
    settings = services.settings
    k = top_k if top_k is not None else settings.default_top_k
    if k > settings.max_top_k:
        raise HTTPException(422, f"top_k: at most {settings.max_top_k}")
    if engine == "ray" and ray_cluster_address() is None:
        raise HTTPException(
            422, "engine: no Ray cluster configured (set RAY_ADDRESS); the API never starts a Ray runtime itself"
        )
    if engine == "ray" and importlib.util.find_spec("ray") is None:
        raise HTTPException(422, "engine: ray is not installed on this server (pip install 'productmatch[ray]')")
    # The job seeks to chunk offsets on resume, so it works on its own copy of the feed.
    job = await submit_file_job(
        services,
        KIND,
        file,
        path,
        format,
        settings.match_feed_max_bytes,
        check_feed,
        lambda job_id, copy, fmt, name: {
            **make_payload(settings, job_id, copy, fmt, output, k, brand, category, engine, name),
            "review": review,
        },
    )
    return MatchJobAccepted(
        job_id=job.id,
        state=job.state,
        status_url=f"/v1/jobs/{job.id}",
        results_url=f"/v1/match/jobs/{job.id}/results",
    )


@router.get(
    "/{job_id}/results",
    response_class=FileResponse,
    responses={
        200: {
            "description": "the result file (CSV or Parquet, as requested)",
            "content": {media: {} for media in MEDIA_TYPES.values()},
        },
        **errors(404, 409),
    },
)
async def match_job_results(services: ServicesDep, job_id: Annotated[str, PathParam(max_length=36)]):
    """The result file of a completed bulk-match job: 409 while it runs or if it failed."""
    job = await run_in_threadpool(jobs.get_job, services.factory, job_id)
    if job is None or job.kind != KIND:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"match job {job_id!r} not found")
    if job.state in jobs.ACTIVE_STATES:
        total = job.rows_total if job.rows_total is not None else "?"
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"job {job_id} is {job.state} ({job.rows_done}/{total} rows); try later"
        )
    if job.state == jobs.FAILED:
        raise HTTPException(status.HTTP_409_CONFLICT, f"job {job_id} failed: {job.message}")
    payload = job.payload or {}
    out = Path(payload.get("output_path") or "")
    fmt = payload.get("output")
    if fmt not in MEDIA_TYPES or not out.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"the result file of job {job_id} is no longer available")
    return FileResponse(out, media_type=MEDIA_TYPES[fmt], filename=f"match-results-{job_id}.{fmt}")
