"""Per-catalogue calibration (admin token): refit the serving scorer's thresholds on the
catalogue's own labelled pairs, read the active calibration, revert to the scorer's own."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from fastapi.concurrency import run_in_threadpool

from app.api.deps import AdminDep, ServicesDep
from app.api.responses import COMMON, errors
from app.registry.calibration import CalibrationRefused, RefitOptions, current, refit, revert
from app.schemas.calibration import CalibrationOut, CalibrationRequest, CalibrationReverted
from app.services import Services

router = APIRouter(
    prefix="/v1/admin/calibration",
    tags=["admin"],
    dependencies=[AdminDep],
    responses={**COMMON, **errors(401, 403)},
)


def _refit(services: Services, body: CalibrationRequest) -> CalibrationOut:
    runtime = services.require_runtime()
    pipeline = runtime.pipeline
    options = RefitOptions.from_settings(
        services.settings,
        target_precision=body.target_precision,
        review_probability=body.review_probability,
        method=body.method,
    )
    try:
        row = refit(services.settings, services.factory, pipeline.scorer, runtime.encoder, pipeline.decider, options)
    except CalibrationRefused as exc:
        raise HTTPException(409, str(exc)) from exc
    # This process decides with it from the next request; the others pick it up like a promotion.
    services.refresh_decider()
    return CalibrationOut.model_validate(row)


@router.post("", response_model=CalibrationOut, responses=errors(409))
async def refit_calibration(services: ServicesDep, body: CalibrationRequest | None = None) -> CalibrationOut:
    """Refit the serving scorer's thresholds on the catalogue's labelled pairs (review labels,
    `POST /v1/feedback`, CSV imports) and make them decide.

    Every labelled pair whose product is still in the catalogue is scored by the serving scorer
    (the latest label of each pair, newest `CALIBRATION_MAX_LABELS`); the match threshold is the
    lowest cut whose precision on them reaches `target_precision` on the monotone precision
    envelope, with the Wilson interval of that precision; the review band starts where the
    refitted match probability reaches `review_probability`. Synchronous: a few hundred pairs
    take seconds. 409 when fewer than `CALIBRATION_MIN_LABELS` labels can be used or they are all
    of one class.
    """
    return await run_in_threadpool(_refit, services, body or CalibrationRequest())


def _current(services: Services) -> CalibrationOut:
    runtime = services.require_runtime()
    scorer = runtime.pipeline.scorer
    row = current(services.factory, scorer, runtime.encoder.model_id)
    if row is None:
        raise HTTPException(
            404,
            f"no catalogue calibration for the serving scorer {scorer.name!r}: its own thresholds decide"
            " (POST /v1/admin/calibration fits one from the labelled pairs)",
        )
    return CalibrationOut.model_validate(row)


@router.get("", response_model=CalibrationOut, responses=errors(404))
async def get_calibration(services: ServicesDep) -> CalibrationOut:
    """The serving scorer's active calibration; 404 while the scorer's own thresholds decide."""
    return await run_in_threadpool(_current, services)


def _revert(services: Services) -> CalibrationReverted:
    runtime = services.require_runtime()
    retired = revert(services.factory, runtime.pipeline.scorer, runtime.encoder.model_id)
    services.refresh_decider()
    decider = services.require_pipeline().decider
    return CalibrationReverted(
        retired=retired, thresholds={"match": decider.match_threshold, "review": decider.review_threshold}
    )


@router.delete("", response_model=CalibrationReverted)
async def delete_calibration(services: ServicesDep) -> CalibrationReverted:
    """Retire the serving scorer's calibration: its own thresholds decide again (kept as history;
    `retired` is 0 when there was none)."""
    return await run_in_threadpool(_revert, services)
