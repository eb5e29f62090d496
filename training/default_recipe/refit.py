"""``productmatch train default-head``: refit the head and its cuts of a trained default matcher.

The cross-encoder stays as it is; the head is fitted again on the folder's own training sources
(the manifest says which were left out) with the current head recipe: pooled validation pairs
and ranked candidate lists, top-1 cuts from leave-one-source-out scores (``decide.py``). Minutes,
not hours: it is how a folder trained before a head change gets the change, and how a new head
setting is tried on a finished leave-one-out model.

    productmatch train default-head --model artefacts/default-matcher --out /tmp/refit
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from models.artefacts import write_manifest
from models.default_matcher import MODEL_CARD, load_default_matcher
from models.match_head import HEAD_FILE, signal_set
from models.precision import default_threads
from training.default_recipe.artefact import git_commit
from training.default_recipe.config import DEFAULT_SOURCES, RecipeConfig, SourceSpec
from training.default_recipe.mixture import pooled_validation
from training.default_recipe.model_card import model_card
from training.default_recipe.sources import load_sources

logger = logging.getLogger(__name__)

#: Recipe settings a folder's manifest carries that decide which validation data its head sees.
_STORED = ("exclude", "fields", "valid_per_source", "seed", "signals", "margin", "head_folds", "head_l2")


def stored_sources(stored: list[dict[str, Any]]) -> tuple[SourceSpec, ...]:
    """The manifest's source specs; a field added since (``unique_products``) comes from today's
    spec of the same name, else its default."""
    today = {s.name: s for s in DEFAULT_SOURCES}
    fields = {f.name for f in dataclasses.fields(SourceSpec)}
    out = []
    for raw in stored:
        base = today.get(str(raw.get("name")))
        merged = {**(dataclasses.asdict(base) if base is not None else {}), **raw}
        out.append(SourceSpec(**{k: v for k, v in merged.items() if k in fields}))
    return tuple(out)


def config_from_manifest(settings: dict[str, Any], **overrides: Any) -> RecipeConfig:
    """The recipe config of a folder: its sources and exclusions, seed and head settings."""
    stored = settings.get("config") or {}
    known: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in stored.items() if k in _STORED}
    if stored.get("sources"):
        known["sources"] = stored_sources(stored["sources"])
    return RecipeConfig().with_overrides(**known).with_overrides(**overrides)


def refit_head(
    folder: str | Path,
    out: str | Path | None = None,
    *,
    data_root: str | Path | None = None,
    threads: int | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Refit the head of ``folder`` into ``out`` (a copy; default: in place). ``overrides``:
    recipe fields such as ``head_fit``, ``margin``, ``ranked_offers``, ``ranked_k``, ``signals``."""
    from training.default_recipe.train import fit_recipe_head

    torch.set_num_threads(int(threads) if threads else default_threads())
    src = Path(folder)
    dst = Path(out) if out is not None else src
    matcher = load_default_matcher(src)
    if matcher.bi_encoder is None:
        raise ValueError(f"{src}: no bi-encoder to rank the validation offers with")
    cfg = config_from_manifest(matcher.manifest.settings, **{k: v for k, v in overrides.items() if v is not None})
    sources = load_sources(cfg.active_sources(), data_root)
    valid = pooled_validation(sources, cfg.valid_per_source, seed=cfg.seed)
    if cfg.signals == matcher.head.signals:
        names = tuple(matcher.head.feature_names[2 : 2 + matcher.head.n_signals])
        signals = (matcher.head.signals, matcher.signals, names)
    else:  # another built-in signal set (a new head feature needs no retraining of the cross-encoder)
        fn, names = signal_set(cfg.signals)
        signals = (cfg.signals, fn, names)
    matcher.model.eval()
    head, _ = fit_recipe_head(matcher.model, matcher.bi_encoder, sources, valid, cfg, signals, matcher.head.bi_encoder)
    if dst != src:
        if dst.exists():
            raise FileExistsError(f"{dst} exists; refit into a new folder or in place")
        shutil.copytree(src, dst)
    (dst / HEAD_FILE).write_text(json.dumps(head.to_dict(), indent=2, sort_keys=True), encoding="utf-8")
    manifest = matcher.manifest
    settings = dict(manifest.settings)
    settings["head_features"] = list(head.feature_names)
    settings["config"] = {**(settings.get("config") or {}), **_head_settings(cfg)}
    refits = list(settings.get("head_refits") or [])
    refits.append({"at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "git_commit": git_commit()})
    settings["head_refits"] = refits
    metrics = {**manifest.metrics, "valid_pooled": head.valid, "threshold": head.threshold,
               "thresholds_for_precision": head.thresholds_for_precision}  # fmt: skip
    manifest = replace(manifest, settings=settings, metrics=metrics,
                       created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))  # fmt: skip
    write_manifest(dst, manifest)
    (dst / MODEL_CARD).write_text(model_card(manifest), encoding="utf-8")
    logger.info("refitted the head of %s into %s", src, dst)
    return {"out_dir": str(dst), "head": head.to_dict()}


def _head_settings(cfg: RecipeConfig) -> dict[str, Any]:
    return {
        "signals": cfg.signals,
        "margin": cfg.margin,
        "head_fit": cfg.head_fit,
        "ranked_offers": cfg.ranked_offers,
        "ranked_k": cfg.ranked_k,
        "ranked_absent_share": cfg.ranked_absent_share,
    }


__all__ = ["config_from_manifest", "refit_head", "stored_sources"]
