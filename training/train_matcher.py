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
from torch import nn
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from models.artefacts import Manifest, write_manifest
from models.calibration import Calibrator, threshold_for_best_f1, threshold_for_precision
from models.lea import LeaCrossEncoder
from training.data.records import Pair, PairDataset
from training.data.serialize import FieldSpec, serialize
from training.data.typos import P_SIDE, TYPO_VERSION, TypoAugmenter
from training.matcher_io import CALIBRATION_FILE, MATCHER_KIND, PRECISION_TARGETS
from training.metrics import pr_auc

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
    rng = random.Random(seed)
    pos = [i for i, p in enumerate(pairs) if p[2] == 1]
    neg = [i for i, p in enumerate(pairs) if p[2] != 1]
    n_pos = min(len(pos), max(1, round(n * len(pos) / len(pairs)))) if pos else 0
    keep = set(rng.sample(pos, n_pos)) | set(rng.sample(neg, min(len(neg), n - n_pos)))
    return [p for i, p in enumerate(pairs) if i in keep]


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
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)


def _valid_scores(model: LeaCrossEncoder, pairs: list[TextPair], batch_size: int) -> np.ndarray:
    return model.predict_logits([(a, b) for a, b, _ in pairs], batch_size=batch_size)


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
    eval_batch_size: int = 64,
    progress: bool = True,
) -> dict[str, Any]:
    """Train, select the best epoch on clean validation, calibrate, save; returns a summary dict.

    ``backbone``: ``"minilm"``, ``"mpnet"`` or a model folder; with ``tiny_config`` a random
    model of that config is built instead and ``backbone`` only supplies the tokenizer.
    ``threads``: ``torch.set_num_threads`` for this process (None leaves it as it is).
    The summary holds ``out_dir``, ``valid_f1``, ``best_epoch``, ``threshold``,
    ``thresholds_for_precision``, ``history`` (per epoch) and ``train_seconds``.
    """
    if augment not in (None, *AUGMENTS):
        raise ValueError(f"augment must be None or one of {AUGMENTS}, got {augment!r}")
    if epochs < 1 or batch_size < 1:
        raise ValueError("epochs and batch_size must be >= 1")
    if threads is not None:
        torch.set_num_threads(int(threads))
    out = Path(out_dir)
    train_all = serialize_pairs(dataset.split("train"), fields)
    train = subsample(train_all, max_train_pairs)
    valid = serialize_pairs(dataset.split("valid"), fields)
    valid_labels = np.asarray([y for _, _, y in valid], dtype=np.int64)
    if not train or not valid or valid_labels.sum() == 0:
        raise ValueError("training needs non-empty train and valid splits with at least one valid positive")

    seed_everything(seed)
    model = build_model(arch, backbone, max_length, tiny_config, lea_options)
    collator = model.collator
    pos_weight = pos_weight_for([y for _, _, y in train])
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pos_weight, dtype=torch.float32))
    optimizer = make_optimizer(model, lr, weight_decay, lea_lr_mult)
    steps_per_epoch = math.ceil(len(train) / batch_size)
    total_steps = steps_per_epoch * epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, round(warmup_ratio * total_steps), total_steps)
    augmenter = TypoAugmenter(seed, p_side=p_side) if augment == "typo" else None
    order_rng = np.random.default_rng(seed)
    logger.info(
        "training %s matcher (%s, augment=%s) on %d train / %d valid pairs, %d epochs x %d steps, "
        "pos_weight %.3f, %d torch threads",
        arch,
        backbone,
        augment,
        len(train),
        len(valid),
        epochs,
        steps_per_epoch,
        pos_weight,
        torch.get_num_threads(),
    )

    history: list[dict[str, Any]] = []
    best_f1, best_epoch = -1.0, 0
    best_state: dict[str, torch.Tensor] | None = None
    best_logits: np.ndarray | None = None
    collator.reset_timings()
    started = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        epoch_start = time.perf_counter()
        order = order_rng.permutation(len(train))
        losses: list[float] = []
        bar = tqdm(
            range(steps_per_epoch),
            desc=f"{arch} epoch {epoch}/{epochs}",
            unit="batch",
            disable=not progress,
            leave=False,
        )
        for step in bar:
            chunk = [train[i] for i in order[step * batch_size : (step + 1) * batch_size]]
            if augmenter is not None:  # left then right side of each pair, in batch order
                chunk = [(*augmenter.pair(a, b), y) for a, b, y in chunk]
            batch = collator([(a, b) for a, b, _ in chunk], labels=[float(y) for _, _, y in chunk])
            assert batch.labels is not None
            logits = model.batch_forward(batch)
            loss = loss_fn(logits, batch.labels.to(logits.device))
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
        logits_valid = _valid_scores(model, valid, eval_batch_size)
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
        }
        history.append(row)
        improved = choice.f1 > best_f1
        if improved:
            best_f1, best_epoch, best_logits = choice.f1, epoch, logits_valid
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        logger.info(
            "epoch %d/%d: loss %.4f, valid F1 %.4f (P %.3f R %.3f)%s, %.0fs",
            epoch,
            epochs,
            row["loss"],
            choice.f1,
            choice.precision,
            choice.recall,
            " best" if improved else "",
            row["train_seconds"] + row["valid_seconds"],
        )
    train_seconds = time.perf_counter() - started
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
        },
    }
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
        "precision": "fp32",
    }
    metrics = {
        "valid_f1": best_f1,
        "valid_f1_calibrated": best.f1,
        "valid_pr_auc": history[best_epoch - 1]["valid_pr_auc"],
        "best_epoch": best_epoch,
        "train_seconds": train_seconds,
        "collate_seconds": collator.timings.total,
        "threshold": best.threshold,
        "history": history,
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
    return {
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
    }


def _options_dict(model: LeaCrossEncoder) -> dict[str, Any]:
    return asdict(model.options)


__all__ = ["ARCHS", "build_model", "pos_weight_for", "serialize_pairs", "subsample", "train_matcher"]
