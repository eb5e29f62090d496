"""Body and answer of /v1/admin/calibration (per-catalogue calibration of the serving scorer)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.schemas.common import RequestModel, UtcDatetime


class CalibrationRequest(RequestModel):
    """Every field is optional: ``{}`` (or no body) refits with the settings' defaults."""

    target_precision: float | None = Field(
        default=None,
        ge=0.5,
        le=1.0,
        description="precision the automatic matches must reach on the labelled pairs (default MATCH_PRECISION)",
    )
    review_probability: float | None = Field(
        default=None,
        gt=0.0,
        lt=1.0,
        description="the review band starts where the refitted match probability reaches this"
        " (default CALIBRATION_REVIEW_PROBABILITY)",
    )
    method: Literal["auto", "temperature", "isotonic"] = Field(
        default="auto",
        description="calibrator: temperature (Platt scaling of the score's logit), isotonic, or auto"
        " (isotonic from 200 labels with 40 of each class, else temperature)",
    )


class CalibrationOut(BaseModel):
    """A stored calibration: the thresholds that decide for its scorer, and what backs them."""

    model_config = ConfigDict(from_attributes=True)

    id: int = Field(description="named as model_versions.calibration in match answers it decides")
    scorer: str = Field(description="the scorer it was fitted for (a matcher version or the zero-shot scorer)")
    scorer_key: str = Field(description="the scorer's identity: matcher version, or zero-shot name + settings hash")
    status: Literal["active", "retired"]
    method: str = Field(description="temperature (Platt) or isotonic")
    match_threshold: float = Field(description="match when the top score is at least this")
    review_threshold: float = Field(description="review when the top score is at least this (below: no_match)")
    own_match_threshold: float = Field(description="the scorer's own match threshold, which a revert restores")
    own_review_threshold: float
    target_precision: float
    target_reached: bool = Field(
        description="false when no cut reached the target on the labels: matches then start above every labelled pair"
    )
    review_probability: float
    match_probability: float | None = Field(description="the refitted match probability at the match threshold")
    n_labels: int = Field(description="labelled pairs of catalogue products the fit used (latest label per pair)")
    n_positive: int = Field(description="of which labelled match")
    n_negative: int = Field(description="of which labelled no_match")
    n_skipped: int = Field(description="labels left out because their product is no longer in the catalogue")
    n_accepted: int = Field(description="labelled pairs at or above the match threshold")
    precision: float | None = Field(description="precision of the labelled pairs at or above the match threshold")
    precision_low: float | None = Field(description="Wilson 95 % interval of that precision: lower end")
    precision_high: float | None = Field(description="Wilson 95 % interval of that precision: upper end")
    recall: float | None = Field(description="share of the labelled matches at or above the match threshold")
    calibrator: dict[str, Any] = Field(description="the fitted calibrator of logit(score) (models/calibration.py)")
    labels_through: int = Field(description="the newest label id the fit saw")
    fitted_at: UtcDatetime
    retired_at: UtcDatetime | None = None


class CalibrationReverted(BaseModel):
    retired: int = Field(description="calibrations retired (0 when the scorer had none)")
    thresholds: dict[str, float] = Field(description="the thresholds deciding now: the scorer's own")
