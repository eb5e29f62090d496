"""Fine-tune a pair matcher (vanilla or LEA cross-encoder), calibrate it and save the folder.

Recipe (METHODS §9.4, §2.6): one-logit ``AutoModelForSequenceClassification`` head, BCE with
``pos_weight = sqrt(#neg / #pos)``, AdamW (lr 5e-5, weight decay 0.01, none on biases and
LayerNorm weights), linear one-cycle schedule with 10 % warm-up, gradient-norm clip 1.0 (the
Hugging Face Trainer default), the model's own dropout, batch 32, max length 64. Typo DA
(METHODS §1.4) noises each side of a training pair with probability 0.5 from one seeded stream
consumed in batch order, *before* the collator, so LEA's word similarities see the typos.

After every epoch the clean validation split is scored; the epoch with the best validation F1
(at its own best threshold, METHODS §0) is kept in memory. Its validation logits then fit the
calibrator, and the decision thresholds are chosen on the *calibrated* validation probabilities:
best F1, and the lowest threshold reaching precision 0.9 / 0.95 / 0.98 (``null`` if none does).

Everything stochastic is seeded from ``seed`` (weight init of the head, batch order, dropout,
typo stream), so a run is reproducible on the same machine and thread count.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from models.artefacts import Manifest, write_manifest
from models.calibration import Calibrator, threshold_for_best_f1, threshold_for_precision
from models.lea import LeaCrossEncoder
from models.lexical import EncodedPair, LeaCollator
from models.matcher_io import CALIBRATION_FILE, MATCHER_KIND, PRECISION_TARGETS
from models.precision import autocast, default_threads, resolve_precision
from models.product_text import FieldSpec, serialize
from training.checkpoint import load_checkpoint, remove_checkpoint, save_checkpoint
from training.data.records import Pair, PairDataset
from training.data.typos import P_SIDE, TYPO_VERSION, TypoAugmenter
from training.metrics import pr_auc, pr_curve
from training.noise import (
    NOISE_METHODS,
    NoiseConfig,
    NoiseReport,
    bce_losses,
    bi_encoder_features,
    corrected_targets,
    detect_noisy_pairs,
    noisy_batch_targets,
    pos_weight_for_targets,
    prior_penalty,
    score_training_pairs,
)
from training.pseudo_labels import (
    PseudoLabelConfig,
    confident_mask,
    entropy_penalty,
    labelled_per_batch,
    plan_batches,
    soft_pseudo_labels,
)

logger = logging.getLogger(__name__)

ARCHS = ("lea", "vanilla")
AUGMENTS = ("typo",)
# Parameters that get no weight decay (as in the Hugging Face Trainer).
_NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight")

TextPair = tuple[str, str, int]


def serialize_pairs(pairs: Sequence[Pair], fields: FieldSpec) -> list[TextPair]:
    """``(left text, right text, label)`` for every pair, with the same serialiser as serving."""
    return [(serialize(p.left, fields), serialize(p.right, fields), int(p.label)) for p in pairs]


def subsample(pairs: list[TextPair], n: int | None, seed: int = 0) -> list[TextPair]:
    """At most ``n`` pairs, stratified by label, in their original order.

    Fixed seed (not the training seed) so that runs with different training seeds see the same
    subset and seed spread measures training variance only.
    """
    if n is None or n >= len(pairs):
        return pairs
    return [pairs[i] for i in subsample_indices([p[2] for p in pairs], n, seed)]


def subsample_indices(labels: Sequence[int], n: int | None, seed: int = 0) -> list[int]:
    """Sorted indices of the pairs :func:`subsample` keeps (all indices when ``n`` is None)."""
    if n is None or n >= len(labels):
        return list(range(len(labels)))
    rng = random.Random(seed)
    pos = [i for i, y in enumerate(labels) if y == 1]
    neg = [i for i, y in enumerate(labels) if y != 1]
    n_pos = min(len(pos), max(1, round(n * len(pos) / len(labels)))) if pos else 0
    keep = set(rng.sample(pos, n_pos)) | set(rng.sample(neg, min(len(neg), n - n_pos)))
    return sorted(keep)


def pos_weight_for(labels: Sequence[int]) -> float:
    """``sqrt(#neg / #pos)`` (METHODS §9.4); 1.0 when a class is absent."""
    n_pos = sum(1 for y in labels if y == 1)
    n_neg = len(labels) - n_pos
    return math.sqrt(n_neg / n_pos) if n_pos and n_neg else 1.0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_model(
    arch: str,
    backbone: str,
    max_length: int,
    tiny_config: dict[str, Any] | None = None,
    lea_options: dict[str, Any] | None = None,
) -> LeaCrossEncoder:
    """A fresh cross-encoder: packaged backbone / folder, or a tiny random model from a config."""
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")
    lea = arch == "lea"
    options = dict(lea_options or {})
    if tiny_config is not None:
        return LeaCrossEncoder.from_config(
            tiny_config, lea=lea, tokenizer_from=backbone, max_length=max_length, **options
        )
    return LeaCrossEncoder.from_pretrained(backbone, lea=lea, max_length=max_length, **options)


def make_optimizer(model: LeaCrossEncoder, lr: float, weight_decay: float, lea_lr_mult: float) -> torch.optim.AdamW:
    """AdamW with three groups: decayed backbone weights, undecayed biases/norms, LEA parameters."""
    lea_ids = {id(p) for p in model.lea_parameters()}
    decay, no_decay = [], []
    for name, param in model.model.named_parameters():
        if not param.requires_grad or id(param) in lea_ids:
            continue
        (no_decay if any(key in name for key in _NO_DECAY) else decay).append(param)
    groups: list[dict[str, Any]] = [
        {"params": decay, "weight_decay": weight_decay, "lr": lr},
        {"params": no_decay, "weight_decay": 0.0, "lr": lr},
    ]
    lea_params = [p for p in model.lea_parameters() if p.requires_grad]
    if lea_params:
        groups.append({"params": lea_params, "weight_decay": weight_decay, "lr": lr * lea_lr_mult})
    # The fused kernel does the same update in one pass over the parameters: on a 2-core CPU it
    # took a MiniLM step's optimiser time from 143 ms (foreach) to 56 ms.
    fused = next(model.model.parameters()).device.type in ("cpu", "cuda")
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, fused=fused)


def _encode_missing(
    collator: LeaCollator, texts: Sequence[tuple[str, str]], cached: Sequence[EncodedPair | None]
) -> list[EncodedPair]:
    """``cached`` with every ``None`` replaced by the encoding of its text pair (one tokeniser call)."""
    missing = [k for k, c in enumerate(cached) if c is None]
    fresh = iter(collator.encode([texts[k] for k in missing])) if missing else iter(())
    return [c if c is not None else next(fresh) for c in cached]


def _jsonable_fields(fields: FieldSpec) -> str | list[str]:
    return fields if isinstance(fields, str) else list(fields)


def train_matcher(
    dataset: PairDataset,
    out_dir: str | Path,
    arch: str = "lea",
    backbone: str = "minilm",
    augment: str | None = None,
    fields: FieldSpec = "title",
    epochs: int = 8,
    batch_size: int = 32,
    lr: float = 5e-5,
    lea_lr_mult: float = 1.0,
    max_length: int = 64,
    seed: int = 1,
    calibration: str = "temperature",
    max_train_pairs: int | None = None,
    tiny_config: dict[str, Any] | None = None,
    *,
    weight_decay: float = 0.01,
    warmup_ratio: float = 0.1,
    max_grad_norm: float | None = 1.0,
    p_side: float = P_SIDE,
    lea_options: dict[str, Any] | None = None,
    threads: int | None = None,
    eval_batch_size: int = 128,
    progress: bool = True,
    sample_weights: Sequence[float] | None = None,
    noise: str = "none",
    noise_action: str = "downweight",
    noise_options: NoiseConfig | dict[str, Any] | None = None,
    unlabelled_pairs: Sequence[tuple[str, str]] | None = None,
    pseudo_label: PseudoLabelConfig | dict[str, Any] | bool | None = None,
    keep_noise_report: bool = False,
    precision: str = "auto",
    length_grouping: bool = True,
    checkpoint_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Train, select the best epoch on clean validation, calibrate, save; returns a summary dict.

    ``backbone``: ``"minilm"``, ``"mpnet"`` or a model folder; with ``tiny_config`` a random
    model of that config is built instead and ``backbone`` only supplies the tokenizer.
    ``threads``: ``torch.set_num_threads`` for this process (None: every core it may use).
    ``precision``: ``auto`` (bf16 where the hardware has native bf16 matmuls, else fp32),
    ``bf16`` or ``fp32``; bf16 autocasts the forward passes only, the weights, optimiser state,
    loss, calibration and saved model stay fp32, and validation runs in the same precision, so
    the calibration fits the logits of the precision that will serve (see models.precision).
    ``length_grouping``: batches of similar token length (training.length_grouping), padded to
    their own longest pair; every pair is tokenised and its LEA word similarities computed once.
    ``checkpoint_dir``: a work folder (not ``out_dir``) for a checkpoint after every epoch; a
    run with the same settings resumes from it, bit for bit, and removes it when done.

    Noise-aware training (METHODS §7, all keyword-only):

    * ``sample_weights``: one non-negative loss weight per pair of ``dataset.split("train")``
      (before ``max_train_pairs`` subsampling), e.g. from reviewers' confidence.
    * ``noise``: ``"none"`` | ``"bmm"`` (beta mixture on per-pair losses, §7.1) | ``"knn"`` (kNN
      label disagreement, §7.2) | ``"both"`` (mean of the two probabilities). After the warm-up
      epochs (``noise_options["warmup_epochs"]``, default 3/8 of ``epochs``, at least 1) and
      after every later epoch, one eval pass over the training pairs re-runs detection; the
      next epoch uses it. ``noise_action``: ``"downweight"`` (weight ``1 - p_noise``) or
      ``"relabel"`` (bootstrap towards the model's own prediction, ``p_noise``-weighted, plus
      the anti-collapse prior). ``noise_options``: the other :class:`NoiseConfig` fields.
    * ``unlabelled_pairs``: serialised ``(left, right)`` text pairs without labels (e.g. from
      :func:`training.pseudo_labels.unlabelled_candidates`); with ``pseudo_label`` (``True``, a
      dict of :class:`PseudoLabelConfig` fields, or a config) they are trained on with soft
      pseudo-labels after the pseudo-label warm-up, at least ``min_labelled_share`` of each
      batch being labelled (§8.2).
    * ``keep_noise_report``: add the last detection's per-pair probabilities and flags
      (:meth:`NoiseReport.to_dict`, plus ``train_indices`` into ``dataset.split("train")``).

    The summary holds ``out_dir``, ``valid_f1``, ``best_epoch``, ``threshold``,
    ``thresholds_for_precision``, ``history`` (per epoch), ``train_seconds``, ``noise`` (None
    or the warm-up and one summary per detection) and ``pseudo_labels`` (None or pool size and
    per-epoch use); the manifest records the same under ``settings`` / ``metrics``.
    """
    if augment not in (None, *AUGMENTS):
        raise ValueError(f"augment must be None or one of {AUGMENTS}, got {augment!r}")
    if epochs < 1 or batch_size < 1:
        raise ValueError("epochs and batch_size must be >= 1")
    if noise not in NOISE_METHODS:
        raise ValueError(f"noise must be one of {NOISE_METHODS}, got {noise!r}")
    noise_cfg = None if noise == "none" else NoiseConfig.build(noise, noise_action, noise_options)
    pseudo_cfg = PseudoLabelConfig.build(pseudo_label)
    if pseudo_cfg is not None and not unlabelled_pairs:
        logger.warning("pseudo_label is set but there are no unlabelled pairs: training on labels only")
    torch.set_num_threads(int(threads) if threads is not None else default_threads())
    out = Path(out_dir)
    train_pairs = dataset.split("train")
    train_idx = subsample_indices([int(p.label) for p in train_pairs], max_train_pairs)
    train = serialize_pairs([train_pairs[i] for i in train_idx], fields)
    weights = _train_weights(sample_weights, len(train_pairs), train_idx)
    valid = serialize_pairs(dataset.split("valid"), fields)
    valid_labels = np.asarray([y for _, _, y in valid], dtype=np.int64)
    if not train or not valid or valid_labels.sum() == 0:
        raise ValueError("training needs non-empty train and valid splits with at least one valid positive")
    train_labels = np.asarray([y for _, _, y in train], dtype=np.int64)
    pool = list(unlabelled_pairs or []) if pseudo_cfg is not None else []

    seed_everything(seed)
    model = build_model(arch, backbone, max_length, tiny_config, lea_options)
    collator = model.collator
    prec = resolve_precision(precision, model.device)
    model.precision = prec
    # Tokens and LEA word similarities of the clean pairs, computed once for every epoch.
    train_enc = collator.encode([(a, b) for a, b, _ in train])
    valid_enc = collator.encode([(a, b) for a, b, _ in valid])
    lengths = [len(e) for e in train_enc] if length_grouping else None
    pos_weight = pos_weight_for([y for _, _, y in train])
    pw_tensor = torch.tensor(pos_weight, dtype=torch.float32)
    offset = math.log(pos_weight)  # the logit shift of class-balanced BCE (see training.noise)
    noise_warmup = noise_cfg.warmup_for(epochs) if noise_cfg is not None else None
    pseudo_warmup = min(pseudo_cfg.warmup_epochs, epochs - 1) if pseudo_cfg is not None else None
    cap = pseudo_cfg.max_unlabelled if pseudo_cfg is not None else None
    if cap is not None and len(pool) > cap:
        keep = np.random.default_rng(seed).choice(len(pool), cap, replace=False)
        pool = [pool[i] for i in sorted(keep.tolist())]
    match_rate = float(train_labels.mean())  # the prior of the anti-collapse terms (§7.1 step 4, §8.2)
    if noise_cfg is not None and noise_cfg.prior_match_rate is not None:
        match_rate = noise_cfg.prior_match_rate
    # The warm-up of a restart is its own first stage, so it may be as long as the main run.
    restart = noise_cfg is not None and noise_cfg.restart and noise_warmup is not None
    # With ``restart`` the noisy run stops after the warm-up: one detection, then a fresh model from
    # the pretrained weights trains the full budget on the corrected labels (DRPL stage 2, MOIT+);
    # each further round detects again with the last model on the original labels and restarts.
    rounds = noise_cfg.restart_rounds if noise_cfg is not None else 0
    stages = [noise_warmup] + [epochs] * rounds if restart and noise_warmup is not None else [epochs]
    total_epochs = sum(stages)

    def optimizer_for(model: LeaCrossEncoder, n_epochs: int) -> tuple[torch.optim.AdamW, Any, int]:
        """AdamW, a linear schedule with warm-up over one stage of ``n_epochs`` epochs, its step count."""
        optimizer = make_optimizer(model, lr, weight_decay, lea_lr_mult)
        steps = sum(
            _steps_in_epoch(e, len(train), len(pool), batch_size, pseudo_cfg, pseudo_warmup)
            for e in range(1, n_epochs + 1)
        )
        return optimizer, get_linear_schedule_with_warmup(optimizer, round(warmup_ratio * steps), steps), steps

    optimizer, scheduler, total_steps = optimizer_for(model, stages[0])
    augmenter = TypoAugmenter(seed, p_side=p_side) if augment == "typo" else None
    order_rng = np.random.default_rng(seed)
    bi_features = _bi_encoder_features(noise_cfg, train, fields, eval_batch_size)
    logger.info(
        "training %s matcher (%s, augment=%s, noise=%s/%s, pseudo-labels=%s) on %d train / %d valid pairs "
        "(+%d unlabelled), %d epochs, %d steps, pos_weight %.3f, %d torch threads, %s, length grouping %s",
        arch,
        backbone,
        augment,
        noise,
        noise_action if noise_cfg is not None else "-",
        pseudo_cfg is not None and bool(pool),
        len(train),
        len(valid),
        len(pool),
        epochs,
        total_steps,
        pos_weight,
        torch.get_num_threads(),
        prec,
        length_grouping,
    )

    history: list[dict[str, Any]] = []
    detections: list[dict[str, Any]] = []
    pseudo_epochs: list[dict[str, Any]] = []
    report: NoiseReport | None = None
    best_f1, best_epoch = -1.0, 0
    best_state: dict[str, torch.Tensor] | None = None
    best_logits: np.ndarray | None = None
    collator.reset_timings()
    started = time.perf_counter()
    collate_seconds = 0.0
    targets_all = train_labels.astype(np.float64)
    last_report: NoiseReport | None = None
    base_weights = weights.copy()
    detector_pred: np.ndarray | None = None
    epoch = 0
    run_key = {
        "arch": arch, "backbone": backbone, "augment": augment, "fields": _jsonable_fields(fields),
        "epochs": epochs, "batch_size": batch_size, "lr": lr, "lea_lr_mult": lea_lr_mult, "seed": seed,
        "max_length": max_length, "max_train_pairs": max_train_pairs, "tiny_config": tiny_config,
        "weight_decay": weight_decay, "warmup_ratio": warmup_ratio, "p_side": p_side, "noise": noise,
        "noise_action": noise_action, "noise_options": None if noise_cfg is None else noise_cfg.to_dict(),
        "pseudo": None if pseudo_cfg is None else pseudo_cfg.to_dict(), "pool": len(pool),
        "precision": prec, "length_grouping": length_grouping, "data": dataset.fingerprint(),
        "lea_options": lea_options, "weights": None if sample_weights is None else _weights_summary(weights),
    }  # fmt: skip
    resume_epoch = 0
    ckpt = load_checkpoint(checkpoint_dir, run_key)
    if ckpt is not None:
        resume_epoch = int(ckpt["epoch"])
        if ckpt["stage"] > 1:  # the restarted model's schedule has its own length
            optimizer, scheduler, _ = optimizer_for(model, stages[ckpt["stage"] - 1])
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        order_rng.bit_generator.state = ckpt["order_rng"]
        if augmenter is not None:
            augmenter.setstate(ckpt["augmenter"])
        torch.set_rng_state(ckpt["torch_rng"])
        random.setstate(ckpt["python_rng"])
        np.random.set_state(ckpt["numpy_rng"])
        history, detections, pseudo_epochs = ckpt["history"], ckpt["detections"], ckpt["pseudo_epochs"]
        report, last_report, detector_pred = ckpt["report"], ckpt["last_report"], ckpt["detector_pred"]
        best_f1, best_epoch, best_state, best_logits = (
            ckpt["best_f1"],
            ckpt["best_epoch"],
            ckpt["best_state"],
            ckpt["best_logits"],
        )
        targets_all, weights = ckpt["targets_all"], ckpt["weights"]
        pos_weight, offset = ckpt["pos_weight"], ckpt["offset"]
        pw_tensor = torch.tensor(pos_weight, dtype=torch.float32)
        started -= ckpt["elapsed"]
        logger.info("resumed from %s after epoch %d", checkpoint_dir, resume_epoch)
    for stage, stage_epochs in enumerate(stages, start=1):
        if stage > 1 and epoch + 1 > resume_epoch:
            assert noise_cfg is not None and report is not None and detector_pred is not None
            flagged_pairs = int(report.flagged.sum())
            targets_all, weights = corrected_targets(
                train_labels, base_weights, report, noise_cfg.action, detector_pred
            )
            report = None
            collate_seconds += collator.timings.total
            pos_weight = pos_weight_for_targets(targets_all, weights)
            pw_tensor = torch.tensor(pos_weight, dtype=torch.float32)
            offset = math.log(pos_weight)
            seed_everything(seed)
            model = build_model(arch, backbone, max_length, tiny_config, lea_options)
            model.precision = prec
            collator = model.collator
            optimizer, scheduler, _ = optimizer_for(model, stage_epochs)
            logger.info(
                "restart after detection: fresh model, %d epochs on corrected labels (%d pairs flagged), "
                "pos_weight %.3f",
                stage_epochs,
                flagged_pairs,
                pos_weight,
            )
        for stage_epoch in range(1, stage_epochs + 1):
            epoch += 1
            if epoch <= resume_epoch:
                continue
            epoch_start = time.perf_counter()
            # Pseudo-labels from the model as it stands before this epoch (eval mode, §8.2 step 2).
            use_pool: list[tuple[str, str]] = []
            soft = np.zeros(0)
            if pseudo_cfg is not None and pool and pseudo_warmup is not None and stage_epoch > pseudo_warmup:
                use_pool, soft, stats = _pseudo_label_pool(model, pool, pseudo_cfg, offset, eval_batch_size, progress)
                pseudo_epochs.append({"epoch": epoch, **stats})
            p_noise = None if report is None else torch.as_tensor(report.p_noise, dtype=torch.float32)
            share = pseudo_cfg.min_labelled_share if pseudo_cfg is not None else 1.0
            plan = plan_batches(len(train), len(use_pool), batch_size, share, order_rng, lengths)
            model.train()
            losses: list[float] = []
            bar = tqdm(
                plan, desc=f"{arch} epoch {epoch}/{total_epochs}", unit="batch", disable=not progress, leave=False
            )
            for step, (lab_idx, unl_idx) in enumerate(bar):
                texts = [train[i][:2] for i in lab_idx] + [use_pool[j] for j in unl_idx]
                cached = [train_enc[i] for i in lab_idx] + [None] * len(unl_idx)
                if augmenter is not None:  # left then right side of each pair, in batch order
                    noised = [augmenter.pair(a, b) for a, b in texts]
                    cached = [c if new == old else None for c, new, old in zip(cached, noised, texts, strict=True)]
                    texts = noised
                items = _encode_missing(collator, texts, cached)
                targets = [float(targets_all[i]) for i in lab_idx] + [float(soft[j]) for j in unl_idx]
                batch = collator.pad(items, labels=targets)
                assert batch.labels is not None
                with autocast(prec, model.device):
                    logits = model.batch_forward(batch)
                logits = logits.float()  # the loss (and its pos_weight) in fp32
                loss = _batch_loss(
                    logits,
                    batch.labels.to(logits.device),
                    n_labelled=len(lab_idx),
                    weights=torch.as_tensor(weights[lab_idx], dtype=torch.float32),
                    p_noise=None if p_noise is None else p_noise[torch.as_tensor(lab_idx)],
                    noise_cfg=noise_cfg,
                    pseudo_cfg=pseudo_cfg if len(unl_idx) else None,
                    match_rate=match_rate,
                    pos_weight=pw_tensor,
                    offset=offset,
                )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
                optimizer.step()
                scheduler.step()
                losses.append(float(loss.detach()))
                if step % 10 == 0:
                    bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
            bar.close()
            train_time = time.perf_counter() - epoch_start
            logits_valid = model.predict_encoded(valid_enc, batch_size=eval_batch_size)
            choice = threshold_for_best_f1(logits_valid, valid_labels)
            row = {
                "epoch": epoch,
                "loss": float(np.mean(losses)),
                "valid_f1": choice.f1,
                "valid_precision": choice.precision,
                "valid_recall": choice.recall,
                "valid_pr_auc": pr_auc(logits_valid, valid_labels),
                "train_seconds": train_time,
                "valid_seconds": time.perf_counter() - epoch_start - train_time,
                "noise_weighted": p_noise is not None,
                "pseudo_labelled": len(use_pool),
            }
            if restart:
                row["stage"] = stage
            history.append(row)
            improved = choice.f1 > best_f1
            if improved:
                best_f1, best_epoch, best_logits = choice.f1, epoch, logits_valid
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            logger.info(
                "epoch %d/%d: loss %.4f, valid F1 %.4f (P %.3f R %.3f)%s, %.0fs",
                epoch,
                total_epochs,
                row["loss"],
                choice.f1,
                choice.precision,
                choice.recall,
                " best" if improved else "",
                row["train_seconds"] + row["valid_seconds"],
            )
            # Detection after the warm-up and after every later epoch, for the next epoch (§7.1 step 2).
            if restart:
                detect_now = stage < len(stages) and stage_epoch == stage_epochs
            else:
                detect_now = noise_cfg is not None and noise_warmup is not None and noise_warmup <= epoch < epochs
            if detect_now:
                assert noise_cfg is not None
                detect_start = time.perf_counter()
                report, train_logits = _detect(
                    model, train_enc, train_labels, noise_cfg, bi_features, epoch, eval_batch_size, progress
                )
                last_report = report
                # The detecting model's own hard decision, for relabelling after a restart.
                detector_pred = (train_logits - offset > 0).astype(np.float64)
                detections.append({**report.summary(), "seconds": time.perf_counter() - detect_start})
                row["detect_seconds"] = detections[-1]["seconds"]
            if checkpoint_dir is not None and epoch < total_epochs:
                save_checkpoint(
                    checkpoint_dir,
                    run_key,
                    {
                        "epoch": epoch, "stage": stage, "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                        "order_rng": order_rng.bit_generator.state,
                        "augmenter": None if augmenter is None else augmenter.getstate(),
                        "torch_rng": torch.get_rng_state(), "python_rng": random.getstate(),
                        "numpy_rng": np.random.get_state(), "history": history, "detections": detections,
                        "pseudo_epochs": pseudo_epochs, "report": report, "last_report": last_report,
                        "detector_pred": detector_pred, "best_f1": best_f1, "best_epoch": best_epoch,
                        "best_state": best_state, "best_logits": best_logits, "targets_all": targets_all,
                        "weights": weights, "pos_weight": pos_weight, "offset": offset,
                        "elapsed": time.perf_counter() - started,
                    },
                )  # fmt: skip
    train_seconds = time.perf_counter() - started
    collate_seconds += collator.timings.total
    assert best_state is not None and best_logits is not None
    model.load_state_dict(best_state)
    model.eval()

    calibrator = Calibrator.fit(best_logits, valid_labels, calibration)
    probs = calibrator.apply(best_logits)
    best = threshold_for_best_f1(probs, valid_labels)
    for_precision = {str(t): threshold_for_precision(probs, valid_labels, t) for t in PRECISION_TARGETS}
    calibration_json = {
        "calibrator": calibrator.to_dict(),
        "threshold": best.threshold,
        "thresholds_for_precision": {k: (None if v is None else v.threshold) for k, v in for_precision.items()},
        "fields": _jsonable_fields(fields),
        "max_length": model.max_length,
        "valid": {
            "best_f1": best.to_dict(),
            "for_precision": {k: (None if v is None else v.to_dict()) for k, v in for_precision.items()},
            "pr_curve": pr_curve(probs, valid_labels),
        },
    }
    noise_summary = None
    if noise_cfg is not None:
        if noise_warmup is not None and noise_warmup >= epochs and not restart:
            logger.warning("noise warm-up (%d epochs) >= epochs (%d): detection never ran", noise_warmup, epochs)
        noise_summary = {"warmup_epochs": noise_warmup, "restart": restart, "detections": detections}
    pseudo_summary = None
    if pseudo_cfg is not None:
        pseudo_summary = {"warmup_epochs": pseudo_warmup, "pool": len(pool), "epochs": pseudo_epochs}
    settings = {
        "arch": arch,
        "backbone": backbone if tiny_config is None else f"random-init ({backbone} tokenizer)",
        "tiny_config": tiny_config,
        "augment": augment,
        "typo_version": TYPO_VERSION if augment == "typo" else None,
        "p_side": p_side if augment == "typo" else None,
        "fields": _jsonable_fields(fields),
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "lea_lr_mult": lea_lr_mult,
        "weight_decay": weight_decay,
        "warmup_ratio": warmup_ratio,
        "max_grad_norm": max_grad_norm,
        "schedule": "linear one-cycle",
        "loss": "bce",
        "pos_weight": pos_weight,
        "seed": seed,
        "max_length": max_length,
        "calibration": calibration,
        "max_train_pairs": max_train_pairs,
        "train_pairs": len(train),
        "valid_pairs": len(valid),
        "dataset": dataset.name,
        "dataset_format": dataset.format,
        "lea_options": None if model.lex is None else _options_dict(model),
        "torch_threads": torch.get_num_threads(),
        "precision": prec,
        "length_grouping": length_grouping,
        "sample_weights": None if sample_weights is None else _weights_summary(weights),
        "noise": None if noise_cfg is None else noise_cfg.to_dict(),
        "pseudo_labels": None if pseudo_cfg is None else {**pseudo_cfg.to_dict(), "unlabelled_pairs": len(pool)},
    }
    metrics = {
        "valid_f1": best_f1,
        "valid_f1_calibrated": best.f1,
        "valid_pr_auc": history[best_epoch - 1]["valid_pr_auc"],
        "best_epoch": best_epoch,
        "train_seconds": train_seconds,
        "collate_seconds": collate_seconds,
        "threshold": best.threshold,
        "history": history,
        "noise": noise_summary,
        "pseudo_labels": pseudo_summary,
    }
    out.mkdir(parents=True, exist_ok=True)
    model.save(out)
    cal_text = json.dumps(calibration_json, indent=2, sort_keys=True)
    (out / CALIBRATION_FILE).write_text(cal_text, encoding="utf-8")
    write_manifest(
        out,
        Manifest(
            kind=MATCHER_KIND,
            backbone=settings["backbone"],
            training_data_sha256=dataset.fingerprint(),
            settings=settings,
            metrics=metrics,
        ),
    )
    logger.info(
        "saved matcher to %s: best epoch %d, valid F1 %.4f, threshold %.4f (%s)",
        out,
        best_epoch,
        best_f1,
        best.threshold,
        calibrator,
    )
    summary: dict[str, Any] = {
        "out_dir": str(out),
        "arch": arch,
        "augment": augment,
        "seed": seed,
        "valid_f1": best_f1,
        "valid_f1_calibrated": best.f1,
        "best_epoch": best_epoch,
        "threshold": best.threshold,
        "thresholds_for_precision": calibration_json["thresholds_for_precision"],
        "train_pairs": len(train),
        "train_seconds": train_seconds,
        "history": history,
        "noise": noise_summary,
        "pseudo_labels": pseudo_summary,
    }
    remove_checkpoint(checkpoint_dir)  # only once the model folder is complete
    if keep_noise_report:
        summary["noise_report"] = None if last_report is None else {**last_report.to_dict(), "train_indices": train_idx}
    return summary


# --------------------------------------------------------------------------------------------
# helpers of the noise-aware loop
# --------------------------------------------------------------------------------------------


def _train_weights(sample_weights: Sequence[float] | None, n_all: int, train_idx: list[int]) -> np.ndarray:
    """Per-pair loss weights of the (subsampled) training pairs; all ones by default."""
    if sample_weights is None:
        return np.ones(len(train_idx), dtype=np.float32)
    w = np.asarray(sample_weights, dtype=np.float32)
    if w.shape != (n_all,):
        raise ValueError(f"sample_weights has {w.size} values for {n_all} training pairs")
    if not np.all(np.isfinite(w)) or (w < 0).any():
        raise ValueError("sample_weights must be finite and non-negative")
    return w[train_idx]


def _weights_summary(weights: np.ndarray) -> dict[str, float]:
    return {
        "mean": float(weights.mean()),
        "min": float(weights.min()),
        "max": float(weights.max()),
        "zero": int((weights == 0).sum()),
    }


def _steps_in_epoch(
    epoch: int,
    n_labelled: int,
    n_pool: int,
    batch_size: int,
    pseudo_cfg: PseudoLabelConfig | None,
    pseudo_warmup: int | None,
) -> int:
    # For the LR schedule: pseudo-label epochs have more (smaller-labelled) batches. The pool
    # size before confidence filtering is used, which can only overestimate the steps.
    if pseudo_cfg is None or not n_pool or pseudo_warmup is None or epoch <= pseudo_warmup:
        return math.ceil(n_labelled / batch_size)
    per_batch = labelled_per_batch(n_labelled, n_pool, batch_size, pseudo_cfg.min_labelled_share)
    return math.ceil(n_labelled / per_batch)


def _batch_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    n_labelled: int,
    weights: torch.Tensor,
    p_noise: torch.Tensor | None,
    noise_cfg: NoiseConfig | None,
    pseudo_cfg: PseudoLabelConfig | None,
    match_rate: float,
    pos_weight: torch.Tensor,
    offset: float,
) -> torch.Tensor:
    """Class-balanced BCE over the batch with per-pair targets and weights, plus the extra terms.

    The first ``n_labelled`` rows are labelled (weights, noise handling); the rest are
    pseudo-labelled (soft targets, weight ``pseudo_cfg.weight``). Weights scale each pair's
    loss and the mean is over the batch, so uniform weights give the plain BCE.
    """
    lab_targets, lab_weights = targets[:n_labelled], weights.to(logits.device)
    relabel = False
    if p_noise is not None and noise_cfg is not None:
        lab_targets, noise_w = noisy_batch_targets(
            lab_targets, p_noise.to(logits.device), logits[:n_labelled], noise_cfg.action, offset
        )
        lab_weights = lab_weights * noise_w
        relabel = noise_cfg.action == "relabel"
    n_unl = logits.shape[0] - n_labelled
    all_targets = torch.cat([lab_targets, targets[n_labelled:]])
    unl_weight = pseudo_cfg.weight if pseudo_cfg is not None else 1.0
    all_weights = torch.cat([lab_weights, torch.full((n_unl,), unl_weight, device=logits.device)])
    per_pair = F.binary_cross_entropy_with_logits(
        logits, all_targets, pos_weight=pos_weight.to(logits.device), reduction="none"
    )
    loss = (per_pair * all_weights).mean()
    if relabel and noise_cfg is not None and noise_cfg.prior_weight:
        loss = loss + noise_cfg.prior_weight * prior_penalty(logits[:n_labelled], match_rate, offset)
    if pseudo_cfg is not None and n_unl:
        if pseudo_cfg.prior_weight:
            loss = loss + pseudo_cfg.prior_weight * prior_penalty(logits, match_rate, offset)
        if pseudo_cfg.entropy_weight:
            loss = loss + pseudo_cfg.entropy_weight * entropy_penalty(logits, offset)
    return loss


def _bi_encoder_features(
    cfg: NoiseConfig | None, train: list[TextPair], fields: FieldSpec, batch_size: int
) -> np.ndarray | None:
    """Pair rows for kNN detection from a bi-encoder, computed once (they do not change)."""
    if cfg is None or not cfg.uses_knn or cfg.knn_features != "bi-encoder":
        return None
    from models.bi_encoder import BiEncoder

    encoder = BiEncoder.from_pretrained(cfg.knn_encoder)
    if cfg.knn_fields is None or cfg.knn_fields == fields:
        lefts, rights = [a for a, _, _ in train], [b for _, b, _ in train]
    else:
        raise ValueError("knn_fields other than the matcher's fields need the records; pass knn_fields=None")
    return bi_encoder_features(encoder, lefts, rights, batch_size=batch_size)


def _detect(
    model: LeaCrossEncoder,
    train: list[EncodedPair],
    labels: np.ndarray,
    cfg: NoiseConfig,
    bi_features: np.ndarray | None,
    epoch: int,
    batch_size: int,
    progress: bool,
) -> tuple[NoiseReport, np.ndarray]:
    """One eval pass over the training pairs (losses, [CLS] states), then detection; also the logits."""
    want_cls = cfg.uses_knn and cfg.knn_features == "matcher"
    logits, cls = score_training_pairs(
        model, [], encoded=train, batch_size=batch_size, features=want_cls, progress=progress
    )
    features = cls if want_cls else bi_features
    report = detect_noisy_pairs(labels, losses=bce_losses(logits, labels), features=features, config=cfg, epoch=epoch)
    return report, np.asarray(logits, dtype=np.float64)


def _pseudo_label_pool(
    model: LeaCrossEncoder,
    pool: list[tuple[str, str]],
    cfg: PseudoLabelConfig,
    offset: float,
    batch_size: int,
    progress: bool,
) -> tuple[list[tuple[str, str]], np.ndarray, dict[str, Any]]:
    """Soft labels for the pool from the current model; the pairs kept and their labels."""
    logits, _ = score_training_pairs(model, pool, batch_size=batch_size, progress=progress)
    soft = soft_pseudo_labels(logits, offset)
    keep = confident_mask(soft, cfg.min_confidence)
    kept = [pool[i] for i in np.flatnonzero(keep)]
    stats = {
        "pool": len(pool),
        "used": len(kept),
        "mean_soft_label": float(soft[keep].mean()) if keep.any() else 0.0,
        "predicted_match_share": float((soft[keep] >= 0.5).mean()) if keep.any() else 0.0,
    }
    logger.info(
        "pseudo-labels: %d of %d unlabelled pairs used, mean soft label %.3f, %.1f%% predicted matches",
        stats["used"],
        stats["pool"],
        stats["mean_soft_label"],
        100 * stats["predicted_match_share"],
    )
    return kept, soft[keep], stats


def _options_dict(model: LeaCrossEncoder) -> dict[str, Any]:
    return asdict(model.options)


__all__ = [
    "ARCHS",
    "build_model",
    "pos_weight_for",
    "serialize_pairs",
    "subsample",
    "subsample_indices",
    "train_matcher",
]
