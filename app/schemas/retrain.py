"""Body of POST /v1/admin/retrain."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, field_validator, model_validator

from app.schemas.common import RequestModel

SourceName = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]


class RetrainRequest(RequestModel):
    """What to train, on which data, and whether the result may replace the serving model."""

    target: Literal["blocker", "matcher", "both"] = Field(description="which model(s) to retrain")
    sources: list[SourceName] = Field(
        default_factory=lambda: ["feedback"],
        min_length=1,
        max_length=8,
        description="'feedback' (stored labels) and/or benchmark folders from the allowed list",
    )
    epochs: int = Field(default=3, ge=1, le=50)
    seed: int = Field(default=1, ge=0, le=2**31 - 1)
    arch: Literal["lea", "vanilla"] = Field(default="lea", description="matcher architecture")
    start: Literal["auto", "backbone", "active"] = Field(
        default="auto",
        description="matcher weights to start from: 'active' = the active matcher's (same arch), 'backbone' = "
        "RETRAIN_BACKBONE (the packaged MiniLM when unset), 'auto' = the serving default matcher's when one "
        "serves (shipped or trained with `productmatch train default`, arch lea), else the backbone",
    )
    augment: Literal["typo", "none"] = Field(default="typo", description="matcher typo augmentation")
    # The noise defaults are the best measured variant (docs/training.md, "Defaults";
    # docs/benchmarks/noise.md): beta-mixture detection after a 3-epoch warm-up, gated by the
    # model's disagreement, flagged pairs dropped, then a fresh model trained on the rest.
    noise: Literal["none", "bmm", "knn", "both", "signals"] = Field(
        default="bmm",
        description="label-noise detection on the training labels (matcher); 'signals' fits a label-noise "
        "model on label-free pair signals (the service's bi-encoder cosine and the pair signals) once before "
        "training, so noise_warmup, noise_gate and noise_restart do not apply to it",
    )
    noise_action: Literal["downweight", "relabel"] = "downweight"
    noise_warmup: int = Field(default=3, ge=1, le=50, description="epochs of plain training before detection")
    noise_gate: bool = Field(
        default=True, description="flag a label as noisy only when the model in training also disagrees with it"
    )
    noise_restart: bool = Field(
        default=True, description="after detection, train a fresh model for all epochs on the corrected labels"
    )
    noise_hard: bool = Field(
        default=True,
        description="drop (downweight) or fully relabel (relabel) flagged pairs instead of weighting them "
        "by their noise probability",
    )
    pseudo_labels: bool = Field(default=False, description="add pseudo-labelled unlabelled review candidates")
    promote: Literal["auto", "force", "never"] = Field(
        default="auto", description="auto: promote when at least as good as the serving model on held-out data"
    )

    @field_validator("sources")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("sources must not repeat")
        return value

    @model_validator(mode="after")
    def _detection_runs(self) -> RetrainRequest:
        # Without the restart, detection runs inside the epochs after the warm-up: none would be left.
        if self.noise not in ("none", "signals") and not self.noise_restart and self.noise_warmup >= self.epochs:
            raise ValueError(
                f"noise_warmup ({self.noise_warmup}) must be below epochs ({self.epochs}) without noise_restart, "
                "or detection never runs"
            )
        return self
