"""The retrain job: data -> (noise-aware) training -> held-out evaluation -> register -> gate -> promote.

Runs on a worker like any job (lease + heartbeat). The stage and the partial result are
written to the job row as it goes, so `GET /v1/jobs/{id}` shows where it is.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from app.db import jobs, model_versions
from app.db.tables import Job, ModelVersion
from app.jobs.context import JobContext, JobFailed
from app.jobs.promote import prepare_blocker
from app.registry import folders
from app.registry.scorers import is_default_matcher_folder, serving_matcher
from app.retrain.data import BLOCKER_FIELDS, MATCHER_FIELDS, RetrainData, RetrainDataError, build_retrain_data
from app.retrain.gate import blocker_quality, compare, matcher_quality, serving_blocker, serving_matcher_quality
from app.schemas.retrain import RetrainRequest
from models.bi_encoder import BiEncoder
from training.data.readers import data_root

logger = logging.getLogger(__name__)


def allowed_benchmarks(settings: Any) -> dict[str, tuple[Path, str]]:
    root = Path(settings.retrain_data_root or data_root())
    return {name: (root / name, fmt) for name, fmt in settings.retrain_benchmarks.items()}


class _Progress:
    def __init__(self, ctx: JobContext, job_id: str, total: int) -> None:
        self.ctx, self.job_id, self.total, self.done = ctx, job_id, total, 0
        self.result: dict[str, Any] = {}

    def stage(self, name: str) -> None:
        logger.info("retrain %s: %s", self.job_id[:8], name)
        jobs.set_stage(self.ctx.factory, self.job_id, name, self.done, self.total, self.result)
        self.done += 1

    def finish(self) -> None:
        jobs.set_stage(self.ctx.factory, self.job_id, "done", self.total, self.total, self.result)


def _backbone(ctx: JobContext) -> str:
    return ctx.settings.retrain_backbone or "minilm"


def _arch_of(row: ModelVersion) -> str | None:
    settings = (row.manifest or {}).get("settings") or {}
    arch = settings.get("arch")
    return str(arch) if arch else None


def matcher_start(ctx: JobContext, req: RetrainRequest) -> str:
    """The weights a matcher retrain starts from: a backbone name/folder or a matcher folder.

    A saved matcher folder passed as the backbone is loaded with its trained weights (and its
    own LEA options and maximum length), so fine-tuning continues from it.
    """
    if req.start == "backbone":
        return _backbone(ctx)
    if req.start == "active":
        row = model_versions.active(ctx.factory, "matcher")
        if row is None:
            raise JobFailed("start='active' but no matcher is active: promote one, or use start='backbone'")
        if _arch_of(row) != req.arch:
            raise JobFailed(
                f"start='active': the active matcher {row.version} is {_arch_of(row)!r}, not arch={req.arch!r}"
            )
        return row.path
    row = serving_matcher(ctx.settings, ctx.factory)
    if row is not None and is_default_matcher_folder(row.path) and _arch_of(row) == req.arch:
        logger.info("retraining the matcher from the serving default matcher %s", row.version)
        return row.path
    return _backbone(ctx)


def _decide(req: RetrainRequest, gate: dict[str, Any]) -> bool:
    if req.promote == "never":
        return False
    return req.promote == "force" or bool(gate["passed"])


def retrain_key(req: RetrainRequest, data: RetrainData, kind: str, backbone: str) -> str:
    """Training-data fingerprint + the settings that shape the model: equal keys, equal model."""
    # ``start`` is resolved into ``backbone``: the weights trained from, not the rule that chose them.
    config = req.model_dump(exclude={"promote", "target", "start"}) | {"kind": kind, "backbone": backbone}
    text = data.dataset.fingerprint() + json.dumps(config, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _already_trained(ctx: JobContext, kind: str, key: str) -> str | None:
    # A retrain repeated on unchanged data with the same settings reuses its version instead of
    # registering a second copy of the same model (RELIABILITY R6).
    for row in model_versions.list_versions(ctx.factory, kind):
        if (row.metrics or {}).get("retrain_key") == key and Path(row.path).is_dir():
            return row.version
    return None


def _register(ctx: JobContext, folder: Path, key: str, held_out: dict[str, Any], gate: dict[str, Any]) -> str:
    row = folders.register(ctx.factory, folder, ctx.settings.model_dir)  # type: ignore[arg-type]  # never None: Settings fills it in its validator
    model_versions.add_metrics(ctx.factory, row.version, {"held_out": held_out, "gate": gate, "retrain_key": key})
    return row.version


def _train_blocker(ctx: JobContext, req: RetrainRequest, data: RetrainData, work: Path, p: _Progress) -> None:
    from training.train_blocker import train_blocker

    key = retrain_key(req, data, "bi-encoder", _backbone(ctx))
    existing = _already_trained(ctx, "bi-encoder", key)
    p.stage("training blocker" if existing is None else "reusing the blocker trained on the same data")
    folder = work / "blocker" if existing is None else Path(model_versions.get(ctx.factory, existing).path)
    if existing is None:
        train_blocker(
            data.dataset,
            folder,
            backbone=_backbone(ctx),
            epochs=req.epochs,
            seed=req.seed,
            fields=BLOCKER_FIELDS,
            max_length=ctx.settings.encoder_max_length,
            progress=False,
            num_threads=ctx.settings.torch_threads,
        )
    p.stage("evaluating blocker")
    new = blocker_quality(
        BiEncoder.from_pretrained(str(folder), max_length=ctx.settings.encoder_max_length), data.dataset
    )
    current_version, current_model = serving_blocker(ctx.settings, ctx.factory)
    gate = compare(new, blocker_quality(current_model, data.dataset)) | {"against": current_version}
    version = existing or _register(ctx, folder, key, new, gate)
    promoted = _decide(req, gate) and current_version != version
    p.result["blocker"] = {"version": version, "reused": existing is not None, "gate": gate, "promoted": promoted}
    if promoted:
        p.stage("promoting blocker (re-embedding the catalogue)")
        prepare_blocker(ctx, version)
        model_versions.activate(ctx.factory, version)


def _train_matcher(ctx: JobContext, req: RetrainRequest, data: RetrainData, work: Path, p: _Progress) -> None:
    start = matcher_start(ctx, req)
    key = retrain_key(req, data, "matcher", start)
    existing = _already_trained(ctx, "matcher", key)
    if existing is not None:
        p.stage("reusing the matcher trained on the same data")
        folder = Path(model_versions.get(ctx.factory, existing).path)
        summary: dict[str, Any] = model_versions.get(ctx.factory, existing).metrics or {}
    else:
        p.stage("training matcher")
        folder = work / "matcher"
        summary = _fit_matcher(ctx, req, data, folder, start)
    p.stage("evaluating matcher")
    new = matcher_quality(str(folder), data.dataset)
    current_version, current = serving_matcher_quality(ctx.settings, ctx.factory, data.dataset)
    gate = compare(new, current) | {"against": current_version}
    version = existing or _register(ctx, folder, key, new, gate)
    promoted = _decide(req, gate) and current_version != version
    p.result["matcher"] = {
        "version": version,
        "reused": existing is not None,
        "gate": gate,
        "promoted": promoted,
        "valid_f1": summary.get("valid_f1"),
        "noise": summary.get("noise"),
        "pseudo_labels": summary.get("pseudo_labels"),
        "started_from": start,
    }
    if promoted:
        model_versions.activate(ctx.factory, version)


def _fit_matcher(ctx: JobContext, req: RetrainRequest, data: RetrainData, folder: Path, start: str) -> dict[str, Any]:
    from training.train_matcher import train_matcher

    options: dict[str, Any] = {}
    if req.noise != "none":
        noise_options: dict[str, Any]
        if req.noise == "signals":
            # Detected once before training on the serving bi-encoder's cosines: no warm-up, gate or restart.
            noise_options = {"hard_flags": req.noise_hard, "signals_encoder": ctx.settings.encoder}
        else:
            noise_options = {
                "warmup_epochs": req.noise_warmup,
                "require_disagreement": req.noise_gate,
                "restart": req.noise_restart,
                "hard_flags": req.noise_hard,
            }
        options |= {"noise": req.noise, "noise_action": req.noise_action, "noise_options": noise_options}
    if req.pseudo_labels and data.unlabelled:
        options |= {"unlabelled_pairs": data.unlabelled, "pseudo_label": True}
    return train_matcher(
        data.dataset,
        folder,
        arch=req.arch,
        backbone=start,
        augment=None if req.augment == "none" else req.augment,
        fields=MATCHER_FIELDS,
        epochs=req.epochs,
        seed=req.seed,
        threads=ctx.settings.torch_threads,
        progress=False,
        **options,
    )


def run_retrain(ctx: JobContext, job: Job) -> str:
    req = RetrainRequest.model_validate(job.payload)
    targets = ["blocker", "matcher"] if req.target == "both" else [req.target]
    p = _Progress(ctx, job.id, total=1 + 3 * len(targets))
    p.stage("loading data")
    s = ctx.settings
    try:
        data = build_retrain_data(
            ctx.factory,
            req.sources,
            allowed_benchmarks(s),
            seed=req.seed,
            min_labels=s.retrain_min_labels,
            corpus_limit=s.retrain_corpus_limit,
            unlabelled_limit=s.retrain_unlabelled_limit if req.pseudo_labels else 0,
        )
    except RetrainDataError as exc:
        raise JobFailed(str(exc)) from exc
    p.result["data"] = data.describe()
    work = Path(s.model_dir) / "retrain" / job.id  # type: ignore[arg-type]  # never None: Settings fills it in its validator
    shutil.rmtree(work, ignore_errors=True)  # a redelivered job starts its training again
    try:
        if "blocker" in targets:
            _train_blocker(ctx, req, data, work, p)
        if "matcher" in targets:
            _train_matcher(ctx, req, data, work, p)
    except model_versions.RegistryError as exc:
        raise JobFailed(str(exc)) from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)  # registered versions live in their own copy
    p.finish()
    return "completed"
