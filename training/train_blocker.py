"""Train the bi-encoder blocker: Block-SCL (SupCon on blocking-enriched batches) or MNRL.

Block-SCL (METHODS §3.4) labels every training record with a product id (union-find over the
positive pairs, :mod:`training.groups`), mines each record's nearest records of *other*
products with the starting (zero-shot) encoder, and trains with SupCon on batches of K products
x P offers plus those blocker candidates as hard negatives. MNRL is the pairwise in-batch
negatives baseline on the positive pairs, one row per product per batch.

Validation after every epoch uses the §9.5 blocking protocol on the valid split (left record
of each positive pair vs the whole right table); the best epoch is kept and saved as a model
folder (safetensors + tokenizer + manifest.json). Runs on CPU.
"""

from __future__ import annotations

import copy
import itertools
import logging
import math
import platform
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm
from transformers import get_linear_schedule_with_warmup

from models.artefacts import Manifest, write_manifest
from models.bi_encoder import BiEncoder
from models.fast_dropout import use_fast_dropout
from models.losses import MultipleNegativesRankingLoss, SupConLoss, likely_duplicate_mask
from models.precision import autocast, default_threads, resolve_precision
from training.blocking_tasks import BlockingTask, build_blocking_task, default_fields, record_text
from training.data.records import PairDataset
from training.data.typos import TypoAugmenter
from training.evaluate import DEFAULT_KS, recall_from_embeddings
from training.groups import DEFAULT_MAX_COMPONENT_SIZE, known_non_matches, product_groups, record_key
from training.samplers import BlockingEnrichedBatchSampler, NoDuplicateProductPairSampler, mine_neighbours

logger = logging.getLogger(__name__)

LOSSES = ("block-scl", "mnrl")
MODEL_KIND = "bi-encoder"


@dataclass
class BlockerConfig:
    """Every hyper-parameter of a blocker run; stored verbatim in the manifest."""

    backbone: str = "minilm"
    loss: str = "block-scl"
    epochs: int = 5
    batch_size: int = 128
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.05
    max_grad_norm: float = 1.0
    seed: int = 0
    fields: list[str] | None = None
    max_length: int = 64
    # Block-SCL
    temperature: float = 0.07
    anchors_per_batch: int = 32
    offers_per_anchor: int = 2
    hard_negatives: int = 4
    neighbour_k: int = 20
    remine_each_epoch: bool = False
    only_labelled_negatives: bool = False
    duplicate_threshold: float | None = 0.95
    # Typo augmentation (METHODS §1.4): share of training texts replaced by a typo-v1 copy,
    # fresh noise per use; 0 = off, the Block-SCL abstract's setting. Validation is never noised.
    typo_augment: float = 0.0
    max_component_size: int | None = DEFAULT_MAX_COMPONENT_SIZE
    # MNRL
    scale: float = 20.0
    # CPU budget: stop an epoch after this many steps (None = a full pass over the sampler)
    max_steps_per_epoch: int | None = None
    # validation / selection
    ks: list[int] = field(default_factory=lambda: list(DEFAULT_KS))
    select_metric: str = "mean_recall"
    max_valid_queries: int | None = 1000
    eval_before_training: bool = True
    encode_batch_size: int = 64
    # None: every core this process may use (models.precision.default_threads)
    num_threads: int | None = None
    # auto: bf16 autocast where the CPU/GPU has native bf16 matmuls (models.precision); the
    # weights, optimiser and losses stay fp32, validation encodes in the same precision.
    precision: str = "auto"
    # Weight-space ensembling with the starting model (WiSE-FT): theta = a * trained + (1 - a) *
    # start for each a here, the best on validation is kept. Fine-tuning on a few hundred
    # products sharpens the head of the ranking but forgets part of the pretrained tail
    # (recall@50 fell below zero-shot); interpolation keeps both at no inference cost.
    # (1.0,) = keep the trained weights as they are.
    interpolation_alphas: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.epochs < 1:
            raise ValueError("epochs must be >= 1")
        self.interpolation_alphas = tuple(float(a) for a in self.interpolation_alphas) or (1.0,)
        if any(not 0.0 <= a <= 1.0 for a in self.interpolation_alphas):
            raise ValueError("interpolation alphas must lie in [0, 1]")


def set_seeds(seed: int) -> None:
    """Seed Python, NumPy and torch: sampling, dropout and init are then reproducible."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _selection_value(metrics: dict[str, float], key: str, ks: Sequence[int]) -> float:
    if key == "mean_recall":
        return float(np.mean([metrics[f"recall@{k}"] for k in ks]))
    return float(metrics[key])


def _evaluate(model: BiEncoder, task: BlockingTask, ks: Sequence[int], batch_size: int) -> dict[str, float]:
    corpus = model.encode(task.corpus, batch_size=batch_size)
    queries = model.encode(task.queries, batch_size=batch_size)
    return recall_from_embeddings(queries, corpus, task.query_targets, ks, task.query_exclude or None)


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    # No decay on biases and LayerNorm weights (the usual transformer recipe).
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or "LayerNorm" in name else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class _BlockSCLData:
    """Training items (records), product labels, non-match sets and the candidate table."""

    def __init__(self, dataset: PairDataset, cfg: BlockerConfig, fields: list[str]) -> None:
        pairs = dataset.split("train")
        self.groups = product_groups(pairs, max_component_size=cfg.max_component_size)
        self.keys = sorted(self.groups.records)
        position = {key: i for i, key in enumerate(self.keys)}
        self.texts = [record_text(self.groups.records[k], fields) for k in self.keys]
        self.labels = [self.groups.group_of[k] for k in self.keys]
        self.components = [self.groups.component_of[k] for k in self.keys]
        self.non_matches: dict[int, set[int]] = {
            position[a]: {position[b] for b in others if b in position}
            for a, others in known_non_matches(pairs).items()
            if a in position
        }


def _mnrl_rows(
    dataset: PairDataset, fields: list[str], max_component_size: int | None
) -> tuple[list[tuple[str, str]], list[int]]:
    pairs = dataset.split("train")
    groups = product_groups(pairs, max_component_size=max_component_size)
    rows: list[tuple[str, str]] = []
    product_ids: list[int] = []
    seen: set[tuple[str, str]] = set()
    for pair in pairs:
        if pair.label != 1:
            continue
        key = (record_key(pair.left), record_key(pair.right))
        if key in seen:
            continue
        seen.add(key)
        rows.append((record_text(pair.left, fields), record_text(pair.right, fields)))
        product_ids.append(groups.group_of[key[0]])
    return rows, product_ids


def train_blocker(
    dataset: PairDataset,
    out_dir: str | Path,
    backbone: str | BiEncoder = "minilm",
    loss: str = "block-scl",
    epochs: int = 5,
    batch_size: int = 128,
    lr: float = 5e-5,
    seed: int = 0,
    fields: Sequence[str] | None = None,
    max_length: int = 64,
    hard_negatives: int = 4,
    *,
    progress: bool = True,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Train a blocker on ``dataset``'s train split and save the best epoch to ``out_dir``.

    ``backbone``: ``"minilm"``, ``"mpnet"``, a saved folder, or a :class:`BiEncoder` instance
    (tests pass tiny random models). ``options`` are the remaining :class:`BlockerConfig`
    fields (``temperature``, ``anchors_per_batch``, ``offers_per_anchor``, ``neighbour_k``,
    ``remine_each_epoch``, ``duplicate_threshold``, ``max_valid_queries``, ``num_threads`` ...).
    Returns the metrics written to the manifest: best epoch, its validation recall@k, the
    zero-shot validation recall, per-epoch history and training time.
    """
    backbone_name = backbone if isinstance(backbone, str) else getattr(backbone, "name", "custom")
    cfg = BlockerConfig(
        backbone=str(backbone_name),
        loss=loss,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        fields=list(fields) if fields else None,
        max_length=max_length,
        hard_negatives=hard_negatives,
        **options,
    )
    torch.set_num_threads(cfg.num_threads or default_threads())
    set_seeds(cfg.seed)
    chosen_fields = cfg.fields or default_fields(dataset)
    cfg.fields = chosen_fields

    model = (
        BiEncoder.from_pretrained(backbone, max_length=max_length, attn_implementation="eager")
        if isinstance(backbone, str)
        else backbone
    )
    use_fast_dropout(model.backbone)  # torch's CPU Bernoulli sampler was a third of a training step
    model.max_length = max_length
    cfg.precision = resolve_precision(cfg.precision, model.device)
    model.precision = cfg.precision

    valid_task: BlockingTask | None = None
    if "valid" in dataset.splits:
        valid_task = build_blocking_task(dataset, "valid", chosen_fields).subsample(cfg.max_valid_queries, cfg.seed)
    else:
        logger.warning("%s has no valid split: the last epoch is kept", dataset.name)

    started = time.perf_counter()
    metrics: dict[str, Any] = {"history": []}
    start_state = (
        {k: v.detach().clone() for k, v in model.state_dict().items()}
        if valid_task is not None and cfg.interpolation_alphas != (1.0,)
        else None
    )
    if valid_task is not None and cfg.eval_before_training:
        metrics["valid_zero_shot"] = _evaluate(model, valid_task, cfg.ks, cfg.encode_batch_size)
        logger.info("epoch 0 (before training) valid %s", _fmt(metrics["valid_zero_shot"], cfg.ks))

    # ------------------------------------------------------------------ data and sampler
    supcon = SupConLoss(cfg.temperature)
    mnrl = MultipleNegativesRankingLoss(cfg.scale)
    block_data: _BlockSCLData | None = None
    rows: list[tuple[str, str]] = []
    sampler: BlockingEnrichedBatchSampler | NoDuplicateProductPairSampler
    if cfg.loss == "block-scl":
        block_data = _BlockSCLData(dataset, cfg, chosen_fields)
        data = block_data
        t0 = time.perf_counter()
        initial = mine_neighbours(
            model.encode(data.texts, batch_size=cfg.encode_batch_size),
            cfg.neighbour_k,
            data.labels,
            data.components,
        )
        metrics["mining_seconds"] = round(time.perf_counter() - t0, 2)

        def neighbours(epoch: int) -> np.ndarray:
            if epoch == 0 or not cfg.remine_each_epoch:
                return initial
            emb = model.encode(data.texts, batch_size=cfg.encode_batch_size)
            return mine_neighbours(emb, cfg.neighbour_k, data.labels, data.components)

        sampler = BlockingEnrichedBatchSampler(
            data.labels,
            neighbours,
            batch_size=cfg.batch_size,
            anchors_per_batch=min(cfg.anchors_per_batch, cfg.batch_size // cfg.offers_per_anchor),
            offers_per_anchor=cfg.offers_per_anchor,
            hard_negatives=cfg.hard_negatives,
            known_non_matches=data.non_matches,
            only_labelled_negatives=cfg.only_labelled_negatives,
            components=data.components,
            seed=cfg.seed,
        )
        metrics["train_items"] = len(data.texts)
        metrics["groups"] = data.groups.stats()
    else:
        rows, product_ids = _mnrl_rows(dataset, chosen_fields, cfg.max_component_size)
        # MNRL sees 2 texts per row: half as many rows keeps the texts per step comparable.
        sampler = NoDuplicateProductPairSampler(product_ids, batch_size=max(2, cfg.batch_size // 2), seed=cfg.seed)
        metrics["train_rows"] = len(rows)

    augment = TypoAugmenter(cfg.seed, p_side=cfg.typo_augment) if cfg.typo_augment > 0 else None
    steps_per_epoch = len(sampler)
    if cfg.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.max_steps_per_epoch)
    total_steps = max(1, steps_per_epoch * cfg.epochs)
    optimizer = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr, fused=_fused(model))
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(cfg.warmup_ratio * total_steps), total_steps)
    metrics["steps_per_epoch"] = steps_per_epoch

    best_value = -math.inf
    best_state: dict[str, torch.Tensor] | None = None
    best_epoch = 0
    for epoch in range(1, cfg.epochs + 1):
        epoch_start = time.perf_counter()
        sampler.set_epoch(epoch - 1)
        model.train()
        losses: list[float] = []
        bar = tqdm(
            itertools.islice(sampler, steps_per_epoch),
            total=steps_per_epoch,
            desc=f"{cfg.loss} epoch {epoch}/{cfg.epochs}",
            disable=not progress,
        )
        for batch in bar:
            if block_data is not None:
                value = _block_scl_step(model, supcon, block_data, batch, cfg, augment)
            else:
                value = _mnrl_step(model, mnrl, rows, sampler, batch, augment)  # type: ignore[arg-type]
            if value is None:
                continue
            value.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm, foreach=True)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(value.detach()))
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
        bar.close()
        model.eval()
        record: dict[str, Any] = {
            "epoch": epoch,
            "loss": float(np.mean(losses)) if losses else None,
            "train_seconds": round(time.perf_counter() - epoch_start, 2),
        }
        if valid_task is not None:
            valid = _evaluate(model, valid_task, cfg.ks, cfg.encode_batch_size)
            record["valid"] = valid
            value_sel = _selection_value(valid, cfg.select_metric, cfg.ks)
        else:
            value_sel = float(epoch)
        record["seconds"] = round(time.perf_counter() - epoch_start, 2)
        metrics["history"].append(record)
        logger.info(
            "epoch %d/%d loss %.4f valid %s (%.0fs)",
            epoch,
            cfg.epochs,
            record["loss"] or float("nan"),
            _fmt(record.get("valid"), cfg.ks),
            record["seconds"],
        )
        if on_epoch is not None:
            on_epoch(record)
        if value_sel > best_value:
            best_value, best_epoch = value_sel, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    if best_state is not None:
        model.load_state_dict(best_state)
    # From here on (interpolation choice, saved model) the encoder runs as the service runs it.
    model.precision = "fp32"
    model.eval()
    metrics["best_epoch"] = best_epoch
    if valid_task is not None:
        metrics["valid"] = metrics["history"][best_epoch - 1]["valid"]
        metrics["valid_task"] = valid_task.describe()
    if start_state is not None and best_state is not None and valid_task is not None:
        metrics["interpolation"] = _interpolate_with_start(model, start_state, best_state, valid_task, cfg)
        metrics["valid"] = metrics["interpolation"]["valid"]
    metrics["train_seconds_total"] = round(time.perf_counter() - started, 2)
    losses_by_epoch = [h["loss"] for h in metrics["history"] if h["loss"] is not None]
    metrics["loss_first_epoch"] = losses_by_epoch[0] if losses_by_epoch else None
    metrics["loss_last_epoch"] = losses_by_epoch[-1] if losses_by_epoch else None

    out = Path(out_dir)
    model.save(out)
    settings = asdict(cfg)
    settings.update(
        {
            "dataset": dataset.name,
            "format": dataset.format,
            "train_pairs": len(dataset.split("train")),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(),
        }
    )
    write_manifest(
        out,
        Manifest(
            kind=MODEL_KIND,
            backbone=str(backbone_name),
            training_data_sha256=dataset.fingerprint(),
            settings=settings,
            metrics=copy.deepcopy(metrics),
        ),
    )
    logger.info("saved blocker (best epoch %d) to %s", best_epoch, out)
    return metrics


def _interpolate_with_start(
    model: BiEncoder,
    start: dict[str, torch.Tensor],
    trained: dict[str, torch.Tensor],
    task: BlockingTask,
    cfg: BlockerConfig,
) -> dict[str, Any]:
    """Load the best validation mix ``a * trained + (1 - a) * start`` into ``model``.

    Ties go to the larger ``a`` (closer to the trained model). Integer buffers (position ids)
    are copied from the trained state.
    """
    results: list[dict[str, Any]] = []
    best: tuple[float, float] | None = None
    for alpha in sorted(set(cfg.interpolation_alphas)):
        mixed = {k: (alpha * v + (1.0 - alpha) * start[k]) if v.is_floating_point() else v for k, v in trained.items()}
        model.load_state_dict(mixed)
        model.eval()
        valid = _evaluate(model, task, cfg.ks, cfg.encode_batch_size)
        value = _selection_value(valid, cfg.select_metric, cfg.ks)
        results.append({"alpha": alpha, "valid": valid, "selection": round(value, 6)})
        logger.info("interpolation a=%.2f valid %s", alpha, _fmt(valid, cfg.ks))
        if best is None or value >= best[1]:
            best = (alpha, value)
    assert best is not None
    alpha = best[0]
    model.load_state_dict(
        {k: (alpha * v + (1.0 - alpha) * start[k]) if v.is_floating_point() else v for k, v in trained.items()}
    )
    model.eval()
    chosen = next(r for r in results if r["alpha"] == alpha)
    return {"alpha": alpha, "valid": chosen["valid"], "grid": results}


def embed(model: BiEncoder, texts: Sequence[str]) -> torch.Tensor:
    """Training embeddings in the model's precision, returned in fp32 for the loss."""
    batch = {k: v.to(model.device) for k, v in model.tokenize(texts).items()}
    with autocast(model.precision, model.device):
        z = model(**batch)
    return z.float()


def _fused(model: torch.nn.Module) -> bool:
    """The fused AdamW kernel (one pass over the parameters) where torch has it: CPU and CUDA."""
    return next(model.parameters()).device.type in ("cpu", "cuda")


def _block_scl_step(
    model: BiEncoder,
    loss_fn: SupConLoss,
    data: _BlockSCLData,
    batch: list[int],
    cfg: BlockerConfig,
    augment: TypoAugmenter | None = None,
) -> torch.Tensor | None:
    labels = torch.tensor([data.labels[i] for i in batch])
    if len(set(labels.tolist())) == len(batch):
        return None  # no positives in this batch
    texts = [data.texts[i] for i in batch]
    if augment is not None:
        texts = [augment(t) for t in texts]
    z = embed(model, texts)
    # Pieces of one split component are neither sure positives nor sure negatives.
    comps = torch.tensor([data.components[i] for i in batch])
    ignore = (comps[:, None] == comps[None, :]) & (labels[:, None] != labels[None, :])
    if cfg.duplicate_threshold is not None:
        known = torch.tensor([[j in data.non_matches.get(i, ()) for j in batch] for i in batch], dtype=torch.bool)
        ignore |= likely_duplicate_mask(z, labels, known, cfg.duplicate_threshold)
    return loss_fn(z, labels, ignore_mask=ignore)


def _mnrl_step(
    model: BiEncoder,
    loss_fn: MultipleNegativesRankingLoss,
    rows: list[tuple[str, str]],
    sampler: NoDuplicateProductPairSampler,
    batch: list[int],
    augment: TypoAugmenter | None = None,
) -> torch.Tensor:
    pairs = [rows[i] for i in batch]
    if augment is not None:
        pairs = [augment.pair(a, b) for a, b in pairs]
    left = embed(model, [a for a, _ in pairs])
    right = embed(model, [b for _, b in pairs])
    labels = torch.tensor([sampler.product_ids[i] for i in batch])
    return loss_fn(left, right, labels=labels)


def _fmt(metrics: dict[str, float] | None, ks: Sequence[int]) -> str:
    if not metrics:
        return "-"
    return " ".join(f"R@{k}={metrics[f'recall@{k}']:.3f}" for k in ks)
