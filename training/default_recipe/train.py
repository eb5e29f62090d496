"""``train_default``: the default matcher recipe end to end, resumable.

1. Read every active source with its reader, as service products (``sources``); mine hard
   negatives with the bi-encoder where the clusters allow it (``mining``); plan the balanced
   per-epoch mixture (``mixture``) and the pooled validation set.
2. Choose ``max_length`` from the token lengths of the serialised pairs (``lengths``).
3. Train the LEA cross-encoder (``training.train_matcher.build_model`` / ``make_optimizer``):
   every epoch a fresh balanced sample, attribute dropout and typo noise on each side, bf16
   autocast, class-balanced BCE; pooled validation after every epoch; a checkpoint after every
   epoch in the work folder, so the same command continues an interrupted run.
4. Round the kept weights to bf16 (the saved precision), score the pooled validation with them,
   fit the cross-encoder's temperature calibration and the head (``head``), rank every source's
   validation offers like the service does and choose the head's match cuts on their top
   candidates (``ranked``, ``decide``), and write the artefact folder (``artefact``).

Every epoch's randomness (sample, dropout, typos, torch's RNG) is derived from
``(seed, epoch)``, so a resumed run trains on exactly what the uninterrupted one would have.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm
from transformers import AutoTokenizer, get_linear_schedule_with_warmup

from models.artefacts import fingerprint
from models.backbones import backbone_path
from models.bi_encoder import BiEncoder
from models.calibration import threshold_for_best_f1
from models.lea import LeaCrossEncoder
from models.lexical import EncodedPair
from models.match_head import (
    BASE_FEATURES,
    MARGIN_FEATURES,
    MatchHead,
    SignalFn,
    candidate_margins,
    feature_matrix,
    signal_rows,
    signal_set,
)
from models.matcher_io import load_matcher
from models.precision import autocast, default_threads, resolve_precision
from models.product_text import embed_text, serialize_product
from training.checkpoint import load_checkpoint, remove_checkpoint, save_checkpoint
from training.data.typos import TypoAugmenter
from training.default_recipe.artefact import save_default_matcher
from training.default_recipe.config import RecipeConfig
from training.default_recipe.decide import fit_head_and_cuts, ranked_features
from training.default_recipe.dropout import drop_attributes
from training.default_recipe.head import per_source_metrics
from training.default_recipe.lengths import choose_max_length
from training.default_recipe.mining import mine_hard_negatives
from training.default_recipe.mixture import Mixture, pooled_validation
from training.default_recipe.ranked import ranked_validation
from training.default_recipe.sources import ProductPair, SourceData, load_sources
from training.length_grouping import length_grouped_order, padding_share
from training.metrics import pr_auc
from training.progress_log import Heartbeat
from training.train_matcher import build_model, make_optimizer, pos_weight_for

logger = logging.getLogger(__name__)

EpochHook = Callable[[int, dict[str, Any]], None]


@dataclass
class RecipeData:
    """What the run trains and validates on, fixed before the first step."""

    sources: list[SourceData]
    mixture: Mixture
    valid: list[ProductPair]
    mined: dict[str, int]
    max_length: int
    lengths: dict[str, Any] = field(default_factory=dict)


def _signals(
    config: RecipeConfig, given: tuple[SignalFn, Sequence[str]] | None
) -> tuple[str, SignalFn | None, tuple[str, ...]]:
    """The head's signal set: the caller's function, else the named built-in one."""
    if given is not None:
        return config.signals, given[0], tuple(given[1])
    try:
        fn, names = signal_set(config.signals)
    except ImportError:
        # models/pair_signals.py is written by another change; until it lands the head has none.
        logger.warning("signals %r are not available in this checkout: the head uses none", config.signals)
        return "none", None, ()
    return config.signals, fn, names


def prepare_data(
    config: RecipeConfig, encoder: BiEncoder, tokenizer: Any, root: str | Path | None = None
) -> RecipeData:
    """Sources, mined negatives, mixture, pooled validation and the chosen max length."""
    sources = load_sources(config.active_sources(), root)
    mined_pairs = {
        s.name: mine_hard_negatives(s, encoder, config.mining_k, config.negatives_per_record, config.eval_batch_size)
        for s in sources
    }
    mixture = Mixture.build(
        sources,
        mined_pairs,
        config.pairs_per_epoch,
        config.alpha,
        config.max_share,
        config.max_repeats,
        config.hard_negative_share,
        config.seed,
    )
    valid = pooled_validation(sources, config.valid_per_source, seed=config.seed)
    report: dict[str, Any] = {}
    if config.max_length is None:
        length, report = choose_max_length(
            tokenizer,
            [p for s in sources for p in s.train],
            config.fields,
            quantile=config.length_quantile,
            description_tokens=config.description_tokens,
            cap=config.max_length_cap,
            seed=config.seed,
        )
    else:
        length = config.max_length
    return RecipeData(sources, mixture, valid, {k: len(v) for k, v in mined_pairs.items()}, length, report)


def _texts(pairs: Sequence[ProductPair], fields: Sequence[str]) -> list[tuple[str, str]]:
    names = list(fields)
    return [(serialize_product(p.left, names), serialize_product(p.right, names)) for p in pairs]


def _epoch_seed(seed: int, epoch: int, what: str) -> int:
    return int(np.random.default_rng([seed, epoch, sum(map(ord, what))]).integers(0, 2**62))


def epoch_texts(data: RecipeData, config: RecipeConfig, epoch: int) -> tuple[list[tuple[str, str]], list[int]]:
    """The serialised, attribute-dropped, typo-noised training pairs of ``epoch`` and their labels."""
    pairs = data.mixture.epoch(epoch)
    rng = random.Random(_epoch_seed(config.seed, epoch, "dropout"))
    typos = TypoAugmenter(_epoch_seed(config.seed, epoch, "typo"), p_side=config.typo_p_side)
    fields = list(config.fields)
    texts = []
    for p in pairs:
        left = serialize_product(drop_attributes(p.left, config.dropout, rng), fields)
        right = serialize_product(drop_attributes(p.right, config.dropout, rng), fields)
        texts.append(typos.pair(left, right))
    return texts, [p.label for p in pairs]


def _validate(
    model: LeaCrossEncoder, valid_enc: list[EncodedPair], data: RecipeData, batch: int
) -> tuple[dict[str, Any], np.ndarray]:
    logits = model.predict_encoded(valid_enc, batch_size=batch).astype(np.float64)
    labels = np.asarray([p.label for p in data.valid])
    best = threshold_for_best_f1(logits, labels)
    per_source = per_source_metrics(logits, labels, [p.source for p in data.valid], best.threshold)
    return {
        "valid_f1": best.f1,
        "valid_precision": best.precision,
        "valid_recall": best.recall,
        "valid_pr_auc": pr_auc(logits, labels),
        "valid_per_source_oracle_f1": {k: v.get("oracle_f1") for k, v in per_source.items()},
    }, logits


def start_from_release(model: LeaCrossEncoder, folder: str | Path) -> dict[str, Any]:
    """Copy the cross-encoder of a trained default-matcher folder into ``model``.

    Returns the folder, its manifest's ``created_at`` and the SHA-256 of its weight files, which
    name the starting point in the checkpoint key and the new manifest (the folder itself may be
    overwritten by the release trained from it). The folder is read as the service reads a
    matcher (:func:`models.matcher_io.load_matcher`: manifest kind, no pickles) and must hold the
    same architecture: ``load_state_dict`` is strict.
    """
    folder = Path(folder)
    start, _, _, manifest = load_matcher(folder)
    if (start.lex is None) != (model.lex is None):
        raise ValueError(f"--init {folder}: its cross-encoder and the recipe's arch differ in the LEA bias")
    model.load_state_dict(start.state_dict(), strict=True)
    weights = sorted(folder.glob("*.safetensors"))
    return {
        "path": str(folder),
        "created_at": manifest.created_at,
        "weights_sha256": fingerprint(*(p.read_bytes() for p in weights)),
    }


def _round_to_bf16(model: LeaCrossEncoder) -> None:
    """Round the transformer's weights to bf16 in place (kept fp32): what the folder will hold."""
    with torch.no_grad():
        for tensor in list(model.model.parameters()) + list(model.model.buffers()):
            if tensor.is_floating_point():
                tensor.copy_(tensor.to(torch.bfloat16).to(tensor.dtype))


def train_default(
    out_dir: str | Path,
    config: RecipeConfig | None = None,
    *,
    data_root: str | Path | None = None,
    work_dir: str | Path | None = None,
    bi_encoder: BiEncoder | None = None,
    signals: tuple[SignalFn, Sequence[str]] | None = None,
    progress: bool = True,
    on_epoch: EpochHook | None = None,
) -> dict[str, Any]:
    """Train the default matcher into ``out_dir``; returns the run's summary.

    ``work_dir`` (default ``<out_dir>.work``) holds the per-epoch checkpoint, outside the model
    folder (which must stay pickle-free); rerunning with the same arguments continues from it.
    ``bi_encoder``: the encoder for mining and the head's cosine (default: ``config.bi_encoder``,
    loaded); one passed in is saved into the folder. ``signals``: a pair-signal function and its
    feature names, instead of the set ``config.signals`` names. ``on_epoch(epoch, row)`` is
    called after every epoch's checkpoint.
    """
    cfg = config or RecipeConfig()
    out = Path(out_dir)
    work = Path(work_dir) if work_dir is not None else out.with_name(out.name + ".work")
    torch.set_num_threads(int(cfg.threads) if cfg.threads is not None else default_threads())
    started = time.perf_counter()
    encoder_given = bi_encoder is not None
    encoder = bi_encoder if bi_encoder is not None else BiEncoder.from_pretrained(cfg.bi_encoder)
    precision = resolve_precision(cfg.precision, encoder.device)
    encoder.precision = precision  # mining and the head's cosines in the precision that serves
    tokenizer = AutoTokenizer.from_pretrained(backbone_path(cfg.backbone))
    data = prepare_data(cfg, encoder, tokenizer, data_root)
    signal_name, signal_fn, signal_names = _signals(cfg, signals)

    torch.manual_seed(cfg.seed)
    model = build_model(cfg.arch, cfg.backbone, data.max_length, cfg.tiny_config)
    init = start_from_release(model, cfg.init) if cfg.init is not None else None
    if init is not None:
        logger.info("starting from the cross-encoder of %s (weights %s)", cfg.init, init["weights_sha256"][:12])
    model.precision = precision
    valid_enc = model.collator.encode(_texts(data.valid, cfg.fields))
    steps_per_epoch = math.ceil(data.mixture.pairs_per_epoch / cfg.batch_size)
    optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay, 1.0)
    total = cfg.epochs * steps_per_epoch
    scheduler = get_linear_schedule_with_warmup(optimizer, round(cfg.warmup_ratio * total), total)
    key = {
        # Thread count changes nothing a checkpoint depends on: resuming with other --threads is fine.
        "config": {k: v for k, v in cfg.to_dict().items() if k != "threads"},
        "max_length": data.max_length,
        "precision": precision,
        "data": {s.name: s.fingerprint for s in data.sources},
        "mined": data.mined,
        "init": None if init is None else init["weights_sha256"],
    }
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"f1": -1.0, "epoch": 0, "state": None}
    first = 1
    ckpt = load_checkpoint(work, key)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        history, best, first = ckpt["history"], ckpt["best"], int(ckpt["epoch"]) + 1
        logger.info("resumed from %s after epoch %d", work, first - 1)
    logger.info(
        "default recipe: %d sources (%s excluded), %d pairs/epoch x %d epochs = %d steps, max_length %d, %s",
        len(data.sources),
        sorted(cfg.excluded()) or "none",
        data.mixture.pairs_per_epoch,
        cfg.epochs,
        total,
        data.max_length,
        precision,
    )
    for epoch in range(first, cfg.epochs + 1):
        row = _train_epoch(model, optimizer, scheduler, data, cfg, epoch, precision, progress)
        metrics, _ = _validate(model, valid_enc, data, cfg.eval_batch_size)
        row.update(metrics)
        history.append(row)
        if cfg.select_epoch == "best-valid" and row["valid_f1"] > best["f1"]:
            state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            best = {"f1": row["valid_f1"], "epoch": epoch, "state": state}
        logger.info(
            "epoch %d/%d: loss %.4f, pooled valid F1 %.4f PR-AUC %.4f, %.0f pairs/s",
            epoch,
            cfg.epochs,
            row["loss"],
            row["valid_f1"],
            row["valid_pr_auc"],
            row["pairs_per_s"],
        )
        if epoch < cfg.epochs:
            save_checkpoint(work, key, {
                "epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "history": history, "best": best,
            })  # fmt: skip
        if on_epoch is not None:
            on_epoch(epoch, row)
    kept_epoch = cfg.epochs
    if cfg.select_epoch == "best-valid" and best["state"] is not None:
        model.load_state_dict(best["state"])
        kept_epoch = int(best["epoch"])
    _round_to_bf16(model)
    summary = _finish(out, model, encoder, encoder_given, data, cfg, precision, history, kept_epoch,
                      (signal_name, signal_fn, signal_names), time.perf_counter() - started, init)  # fmt: skip
    remove_checkpoint(work)
    return summary


def _train_epoch(
    model: LeaCrossEncoder,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    data: RecipeData,
    cfg: RecipeConfig,
    epoch: int,
    precision: str,
    progress: bool,
) -> dict[str, Any]:
    torch.manual_seed(_epoch_seed(cfg.seed, epoch, "torch"))  # dropout masks: reproducible on resume
    texts, labels = epoch_texts(data, cfg, epoch)
    pos_weight = torch.tensor(pos_weight_for(labels), dtype=torch.float32)
    collator = model.collator
    start = time.perf_counter()
    # Once per epoch: attribute dropout and typos give every epoch new texts.
    encoded = collator.encode(texts)
    lengths = [len(item) for item in encoded]
    if cfg.length_grouping:
        rng = np.random.default_rng(_epoch_seed(cfg.seed, epoch, "order"))
        order = length_grouped_order(lengths, cfg.batch_size, rng)
    else:
        order = np.arange(len(encoded))
    model.train()
    losses: list[float] = []
    bar = tqdm(range(0, len(order), cfg.batch_size), desc=f"default epoch {epoch}/{cfg.epochs}", unit="batch",
               disable=not progress, leave=False)  # fmt: skip
    beat = Heartbeat(logger, f"default epoch {epoch}/{cfg.epochs}", len(bar), enabled=not progress)
    for step, i in enumerate(bar):
        chunk = order[i : i + cfg.batch_size]
        batch = collator.pad([encoded[k] for k in chunk], [float(labels[k]) for k in chunk])
        assert batch.labels is not None
        with autocast(precision, model.device):
            logits = model.batch_forward(batch)
        loss = F.binary_cross_entropy_with_logits(logits.float(), batch.labels.to(logits.device), pos_weight=pos_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm, foreach=True)
        optimizer.step()
        scheduler.step()
        losses.append(float(loss.detach()))
        if step % 10 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
        beat.tick(step + 1, loss=float(np.mean(losses[-50:])))
    bar.close()
    seconds = time.perf_counter() - start
    return {
        "epoch": epoch,
        "loss": float(np.mean(losses)) if losses else float("nan"),
        "pairs": len(texts),
        "positives": int(sum(labels)),
        "pos_weight": float(pos_weight),
        "train_seconds": seconds,
        "pairs_per_s": len(texts) / max(seconds, 1e-9),
        "length_grouping": cfg.length_grouping,
        "padding_share": padding_share(lengths, order, cfg.batch_size),
    }


def head_inputs(
    model: LeaCrossEncoder,
    encoder: BiEncoder,
    pairs: Sequence[ProductPair],
    fields: Sequence[str],
    signal_fn: SignalFn | None,
    n_signals: int,
    margin: bool,
    batch_size: int = 128,
) -> tuple[np.ndarray, np.ndarray]:
    """The head's feature rows for ``pairs`` and the cross-encoder logits (as serving computes them)."""
    logits = model.predict_logits(_texts(pairs, fields), batch_size=batch_size).astype(np.float64)
    left = encoder.encode([embed_text(p.left) for p in pairs], batch_size=batch_size)
    right = encoder.encode([embed_text(p.right) for p in pairs], batch_size=batch_size)
    cosines = np.einsum("ij,ij->i", left, right).astype(np.float64)
    rows = signal_rows(signal_fn, [p.left for p in pairs], [p.right for p in pairs], n_signals)
    margins = candidate_margins(logits, [(p.source, p.left_id) for p in pairs]) if margin else None
    return feature_matrix(logits, cosines, rows, margins), logits


def fit_recipe_head(
    model: LeaCrossEncoder,
    encoder: BiEncoder,
    sources: Sequence[SourceData],
    valid: Sequence[ProductPair],
    cfg: RecipeConfig,
    signal_set_: tuple[str, SignalFn | None, tuple[str, ...]],
    encoder_ref: str,
) -> tuple[MatchHead, np.ndarray]:
    """The head and its cuts for a trained cross-encoder (pooled validation pairs, ranked lists),
    and the cross-encoder's logits of the pooled pairs."""
    signal_name, signal_fn, signal_names = signal_set_
    n_signals = len(signal_names)
    pair_x, logits = head_inputs(model, encoder, valid, cfg.fields, signal_fn, n_signals, cfg.margin,
                                 cfg.eval_batch_size)  # fmt: skip
    ranked = {"offers_per_source": cfg.ranked_offers, "k": cfg.ranked_k, "absent_share": cfg.ranked_absent_share,
              "seed": cfg.seed}  # fmt: skip
    lists = []
    if cfg.ranked_offers:
        lists = ranked_validation(sources, encoder, k=cfg.ranked_k, offers_per_source=cfg.ranked_offers,
                                  absent_share=cfg.ranked_absent_share, seed=cfg.seed)  # fmt: skip
    ranked_x = ranked_features(model, lists, cfg.fields, signal_fn, n_signals, cfg.margin, cfg.eval_batch_size)
    names = BASE_FEATURES + signal_names + (MARGIN_FEATURES if cfg.margin else ())
    head = fit_head_and_cuts(
        pair_x,
        np.asarray([p.label for p in valid]),
        [p.source for p in valid],
        lists,
        ranked_x,
        names,
        fit=cfg.head_fit,
        signals=signal_name,
        margin=cfg.margin,
        folds=cfg.head_folds,
        l2=cfg.head_l2,
        seed=cfg.seed,
        bi_encoder=encoder_ref,
        bi_encoder_max_length=encoder.max_length,
        ranked_settings=ranked,
    )
    return head, logits


def _finish(
    out: Path,
    model: LeaCrossEncoder,
    encoder: BiEncoder,
    encoder_given: bool,
    data: RecipeData,
    cfg: RecipeConfig,
    precision: str,
    history: list[dict[str, Any]],
    kept_epoch: int,
    signal_set_: tuple[str, SignalFn | None, tuple[str, ...]],
    elapsed: float,
    init: dict[str, Any] | None,
) -> dict[str, Any]:
    model.eval()
    labels = np.asarray([p.label for p in data.valid])
    sources = [p.source for p in data.valid]
    head, logits = fit_recipe_head(model, encoder, data.sources, data.valid, cfg, signal_set_,
                                   "bi_encoder" if encoder_given else cfg.bi_encoder)  # fmt: skip
    return save_default_matcher(
        out,
        model,
        head,
        valid_logits=logits,
        valid_labels=labels,
        valid_sources=sources,
        config=cfg,
        precision=precision,
        history=history,
        kept_epoch=kept_epoch,
        data=data,
        bi_encoder=encoder if encoder_given else None,
        train_seconds=elapsed,
        init=init,
    )


__all__ = ["RecipeData", "epoch_texts", "fit_recipe_head", "head_inputs", "prepare_data", "train_default"]
