"""Train a recommender: PRIME (label prototype network + dynamic margin) or the NGAME baseline.

Both use the shared (Siamese) bi-encoder on queries and label texts and NGAME cluster batches.
NGAME: fixed-margin triplet on query vs label text. PRIME (METHODS §4.5): dynamic-margin
triplet on query vs prototype ``l_r`` + on query vs text + label text -> query, plus the
regulariser. Options: TCM on the final scores (§6.2) and the ALC-style pair classifier and
hard-set softmax (§6.4). Prototypes are recomputed exactly from fresh query embeddings at the
start of every epoch (the embeddings also drive the cluster batches) and once after training.

CPU budget knobs: ``trainable_layers`` (train only the top transformer layers; the rest is
frozen, which roughly halves the backward pass) and ``max_steps_per_epoch``. No per-epoch
validation: the last epoch is kept (validation is spent on the coverage threshold).
"""

from __future__ import annotations

import logging
import math
import platform
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm
from transformers import get_linear_schedule_with_warmup

from models.artefacts import Manifest, fingerprint
from models.bi_encoder import BiEncoder
from models.fast_dropout import use_fast_dropout
from models.precision import autocast, default_threads, resolve_precision
from models.prime import LabelPrototypeNetwork, PairHead, balanced_kmeans
from models.recommender import RecommenderModel
from training.recommend import losses
from training.recommend.batching import CLUSTER_SIZES, MILESTONES, cluster_batches, cluster_size
from training.recommend.benchmark import RecommendBenchmark
from training.recommend.cache import FrozenBottomCache, transformer_layers
from training.recommend.evaluate import calibrate_thresholds

logger = logging.getLogger(__name__)

TRAIN_METHODS = ("prime", "ngame")


@dataclass
class RecommendConfig:
    """Every hyper-parameter of a recommender run; stored verbatim in the manifest."""

    method: str = "prime"
    backbone: str = "minilm"
    epochs: int = 3  # the budget of the best measured setting (docs/benchmarks/recommend_full_layers.md)
    batch_size: int = 64
    lr_encoder: float = 5e-5
    lr_head: float = 5e-4
    weight_decay: float = 0.01
    warmup_steps: int = 10
    max_grad_norm: float = 1.0
    max_length: int = 32
    seed: int = 0
    trainable_layers: int | None = None
    max_steps_per_epoch: int | None = None
    # triplet (§4.4); NGAME uses ngame_margin for both bounds
    k: int = 100
    m_min: float = 0.1
    m_max: float = 0.3
    tau: float = 0.1
    ngame_margin: float = 0.3
    # PRIME objective weights (§4.5) and LPN shape (§4.8, our scaled default)
    text_weight: float = 1.0
    dual_weight: float = 1.0
    reg_weight: float = 0.1
    reg_k: int = 10
    labels_per_free_vector: int = 2
    nhead: int = 8
    dim_feedforward: int = 1024
    cluster_sizes: tuple[int, ...] = CLUSTER_SIZES
    milestones: tuple[float, ...] = MILESTONES
    # TCM (§6.2)
    tcm: bool = False
    tcm_m_pos: float = 0.9
    tcm_m_neg: float = 0.5
    tcm_weight: float = 1.0
    # ALC-style auxiliaries (§6.4)
    # None: on for PRIME, off for NGAME. The best measured setting (docs/training.md, "Defaults"):
    # PRIME + ALC automates 63.7 % of WDC 000un queries at precision 0.95 vs 59.9 % without.
    alc: bool | None = None
    alc_pair_weight: float = 1.0
    alc_hard_weight: float = 1.0
    alc_h: int = 10
    alc_tau: float = 0.05
    # The automation score: top-1 minus top-2 cosine ("margin") is the best measured one for every
    # model (prime+alc C@0.95 63.7 % vs cosine 4.2 % and pair head 15.1 %); None means margin.
    automation: str | None = None
    encode_batch_size: int = 128
    calibrate: bool = True  # choose automation thresholds on the valid split after training
    cache_frozen: bool = True  # with trainable_layers: run the frozen bottom once per text
    num_threads: int | None = None  # None: every core this process may use
    # auto: bf16 autocast where the hardware has native bf16 matmuls (models.precision);
    # weights, optimiser and losses stay fp32, validation encodes in the same precision.
    precision: str = "auto"

    def __post_init__(self) -> None:
        if self.method not in TRAIN_METHODS:
            raise ValueError(f"method must be one of {TRAIN_METHODS}, got {self.method!r}")
        if self.epochs < 1 or self.batch_size < 2:
            raise ValueError("epochs must be >= 1 and batch_size >= 2")
        if self.alc is None:
            self.alc = self.method == "prime"
        if self.automation is None:
            self.automation = "margin"


def set_seeds(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def freeze_lower_layers(encoder: BiEncoder, trainable_layers: int | None) -> int:
    """Freeze the embeddings and all but the top ``trainable_layers`` layers; returns the layers trained."""
    layers = getattr(getattr(encoder.backbone, "encoder", None), "layer", None)
    if trainable_layers is None or layers is None:
        if trainable_layers is not None:
            logger.warning("backbone has no encoder.layer list: training every layer")
        return len(layers) if layers is not None else -1
    n = len(layers)
    keep = max(0, min(trainable_layers, n))
    for p in encoder.backbone.parameters():
        p.requires_grad_(False)
    for layer in list(layers)[n - keep :]:
        for p in layer.parameters():
            p.requires_grad_(True)
    return keep


def _centroids(query_emb: np.ndarray, targets: list[int], n_labels: int) -> np.ndarray:
    """Normalised mean of each label's training-query embeddings (zeros for a label without queries)."""
    sums = np.zeros((n_labels, query_emb.shape[1]), dtype=np.float64)
    np.add.at(sums, np.asarray(targets), query_emb)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return (sums / np.maximum(norms, 1e-12)).astype(np.float32)


def _param_groups(model: BiEncoder, heads: list[nn.Module], cfg: RecommendConfig) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "LayerNorm" in name or name.endswith("bias") else decay).append(p)
    groups = [
        {"params": decay, "lr": cfg.lr_encoder, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "lr": cfg.lr_encoder, "weight_decay": 0.0},
    ]
    head_params = [p for h in heads for p in h.parameters()]
    if head_params:
        groups.append({"params": head_params, "lr": cfg.lr_head, "weight_decay": cfg.weight_decay})
    return [g for g in groups if g["params"]]


class _Step:
    """One optimisation step's loss for a batch of training-query rows."""

    def __init__(
        self,
        cfg: RecommendConfig,
        encoder: BiEncoder,
        texts: list[str],
        targets: list[list[int]],
        label_texts: list[str],
        lpn: LabelPrototypeNetwork | None,
        head: PairHead | None,
    ) -> None:
        self.cfg, self.encoder, self.texts, self.targets = cfg, encoder, texts, targets
        self.label_texts, self.lpn, self.head = label_texts, lpn, head
        self.prototypes: torch.Tensor | None = None
        self.free_index: torch.Tensor | None = None
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.cache: FrozenBottomCache | None = None

    def embed(self, texts: list[str]) -> torch.Tensor:
        """Training embeddings in the encoder's precision, returned in fp32 for the losses."""
        with autocast(self.encoder.precision, self.encoder.device):
            if self.cache is not None:
                z = self.cache.forward(self.encoder, texts)
            else:
                z = self.encoder(**self.encoder.tokenize(texts))
        return z.float()

    def encode(self, texts: list[str]) -> np.ndarray:
        if self.cache is not None:
            with autocast(self.encoder.precision, self.encoder.device):
                return self.cache.encode(self.encoder, texts, self.cfg.encode_batch_size)
        return self.encoder.encode(texts, batch_size=self.cfg.encode_batch_size)

    def __call__(self, rows: list[int]) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.cfg
        sampled = [
            t[int(torch.randint(len(t), (1,), generator=self.generator))] for t in (self.targets[r] for r in rows)
        ]
        batch_labels = sorted(set(sampled))
        col = {lab: j for j, lab in enumerate(batch_labels)}
        y = torch.zeros(len(rows), len(batch_labels), dtype=torch.bool)
        for i, r in enumerate(rows):
            for lab in self.targets[r]:
                if lab in col:
                    y[i, col[lab]] = True
        pos = torch.tensor([col[lab] for lab in sampled])
        q = self.embed([self.texts[r] for r in rows])
        u = self.embed([self.label_texts[lab] for lab in batch_labels])
        s_text = q @ u.T
        parts: dict[str, torch.Tensor] = {}
        if cfg.method == "ngame":
            parts["triplet"] = losses.dynamic_margin_triplet(
                s_text, y, pos, cfg.k, cfg.ngame_margin, cfg.ngame_margin, cfg.tau
            )
            final, s_final = u, s_text
        else:
            assert self.lpn is not None and self.prototypes is not None and self.free_index is not None
            idx = torch.tensor(batch_labels)
            final = self.lpn(u, self.free_index[idx], self.prototypes[idx])
            s_final = q @ final.T
            k = cfg.k
            parts["triplet"] = losses.dynamic_margin_triplet(s_final, y, pos, k, cfg.m_min, cfg.m_max, cfg.tau)
            parts["text"] = cfg.text_weight * losses.dynamic_margin_triplet(
                s_text, y, pos, k, cfg.m_min, cfg.m_max, cfg.tau
            )
            yt = y.T.contiguous()
            parts["dual"] = cfg.dual_weight * losses.dynamic_margin_triplet(
                s_text.T, yt, losses.sample_positive(yt, self.generator), k, cfg.m_min, cfg.m_max, cfg.tau
            )
            parts["reg"] = cfg.reg_weight * losses.prototype_regulariser(s_final, s_text, y, pos, cfg.reg_k)
        if cfg.tcm:
            parts["tcm"] = cfg.tcm_weight * losses.threshold_consistent_margin(
                s_final, y, pos, cfg.tcm_m_pos, cfg.tcm_m_neg
            )
        if cfg.alc and len(batch_labels) > 1:
            assert self.head is not None
            parts["pair"] = cfg.alc_pair_weight * losses.pair_classifier_loss(self.head, q, final, s_final, y, pos)
            parts["hard"] = cfg.alc_hard_weight * losses.hard_set_softmax(s_final, y, pos, cfg.alc_h, cfg.alc_tau)
        total = torch.stack(list(parts.values())).sum()
        return total, {k: float(v.detach()) for k, v in parts.items()}


def train_recommender(
    bench: RecommendBenchmark,
    out_dir: str | Path | None,
    backbone: str | BiEncoder = "minilm",
    *,
    progress: bool = True,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    cache: FrozenBottomCache | None = None,
    **options: Any,
) -> tuple[RecommenderModel, dict[str, Any]]:
    """Train on ``bench.train`` and save the folder to ``out_dir`` (``None``: do not save).

    ``backbone``: ``"minilm"``, a saved folder, or a :class:`BiEncoder` (tests pass tiny random
    models). ``options`` are :class:`RecommendConfig` fields. Returns the model and its metrics.
    With ``trainable_layers`` set, the frozen bottom is cached per text (``cache`` may be shared
    between runs that start from the same backbone).
    """
    name = backbone if isinstance(backbone, str) else getattr(backbone, "name", "custom")
    cfg = RecommendConfig(backbone=str(name), **options)
    torch.set_num_threads(cfg.num_threads or default_threads())
    set_seeds(cfg.seed)
    started = time.perf_counter()
    encoder = (
        BiEncoder.from_pretrained(backbone, max_length=cfg.max_length, attn_implementation="eager")
        if isinstance(backbone, str)
        else backbone
    )
    use_fast_dropout(encoder.backbone)  # torch's CPU Bernoulli sampler was a third of a training step
    encoder.max_length = cfg.max_length
    cfg.precision = resolve_precision(cfg.precision, encoder.device)
    encoder.precision = cfg.precision
    trained_layers = freeze_lower_layers(encoder, cfg.trainable_layers)

    # Training labels = the labels with training queries, re-indexed 0..n-1.
    global_ids = sorted({t for ts in bench.train.targets for t in ts})
    local = {g: i for i, g in enumerate(global_ids)}
    targets = [[local[t] for t in ts] for ts in bench.train.targets]
    first_target = [ts[0] for ts in targets]
    label_texts = [bench.label_texts[g] for g in global_ids]
    label_keys = [bench.label_keys[g] for g in global_ids]
    texts = bench.train.texts
    n_labels = len(global_ids)
    if n_labels < 2:
        raise ValueError("training needs at least two labels with training queries")

    layers = transformer_layers(encoder)
    if cache is None and cfg.trainable_layers is not None and cfg.cache_frozen and layers is not None:
        cache = FrozenBottomCache(encoder, len(layers) - trained_layers, cfg.encode_batch_size)
    if cache is not None and layers is not None and cache.n_frozen != len(layers) - trained_layers:
        raise ValueError("the cache's frozen layers do not match trainable_layers")
    step = _Step(cfg, encoder, texts, targets, label_texts, None, None)
    step.cache = cache
    query_emb = step.encode(texts)
    lpn: LabelPrototypeNetwork | None = None
    free_index_np: np.ndarray | None = None
    if cfg.method == "prime":
        text_emb = step.encode(label_texts)
        free_index_np = balanced_kmeans(text_emb, cfg.labels_per_free_vector, seed=cfg.seed)
        lpn = LabelPrototypeNetwork(encoder.dim, int(free_index_np.max()) + 1, cfg.nhead, cfg.dim_feedforward)
        lpn.init_free_from(torch.from_numpy(text_emb), torch.from_numpy(free_index_np))
    head = PairHead(encoder.dim) if cfg.alc else None
    heads = [m for m in (lpn, head) if m is not None]

    step.lpn, step.head = lpn, head
    if free_index_np is not None:
        step.free_index = torch.from_numpy(free_index_np)
    steps_per_epoch = math.ceil(len(texts) / cfg.batch_size)
    if cfg.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.max_steps_per_epoch)
    total_steps = max(1, steps_per_epoch * cfg.epochs)
    fused = encoder.device.type in ("cpu", "cuda")  # one pass over the parameters per step
    optimizer = torch.optim.AdamW(_param_groups(encoder, heads, cfg), fused=fused)
    scheduler = get_linear_schedule_with_warmup(optimizer, min(cfg.warmup_steps, total_steps // 2), total_steps)

    history: list[dict[str, Any]] = []
    for epoch in range(cfg.epochs):
        t0 = time.perf_counter()
        if epoch > 0:
            query_emb = step.encode(texts)  # fresh: batches and exact prototypes
        step.prototypes = torch.from_numpy(_centroids(query_emb, first_target, n_labels))
        size = cluster_size(epoch / cfg.epochs, cfg.cluster_sizes, cfg.milestones)
        batches = cluster_batches(query_emb, size, cfg.batch_size, cfg.seed + epoch)[:steps_per_epoch]
        encoder.train()
        for h in heads:
            h.train()
        sums: dict[str, float] = {}
        bar = tqdm(batches, desc=f"{cfg.method} epoch {epoch + 1}/{cfg.epochs}", disable=not progress)
        for rows in bar:
            loss, parts = step(rows)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            params = [p for g in optimizer.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm, foreach=True)
            optimizer.step()
            scheduler.step()
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v
            sums["loss"] = sums.get("loss", 0.0) + float(loss.detach())
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
        bar.close()
        record = {
            "epoch": epoch + 1,
            "cluster_size": size,
            "steps": len(batches),
            **{k: round(v / max(1, len(batches)), 6) for k, v in sums.items()},
            "seconds": round(time.perf_counter() - t0, 2),
        }
        history.append(record)
        logger.info("recommender epoch %s", record)
        if on_epoch is not None:
            on_epoch(record)

    encoder.eval()
    # Prototypes and automation thresholds are computed as the service will encode: fp32.
    encoder.precision = "fp32"
    for h in heads:
        h.eval()
    seen_vectors: np.ndarray | None = None
    prototypes: np.ndarray | None = None
    if lpn is not None and free_index_np is not None:
        query_emb = step.encode(texts)
        prototypes = _centroids(query_emb, first_target, n_labels)
        text_emb = step.encode(label_texts)
        with torch.inference_mode():
            seen_vectors = lpn(
                torch.from_numpy(text_emb), torch.from_numpy(free_index_np), torch.from_numpy(prototypes)
            ).numpy()
    model = RecommenderModel(
        encoder,
        method=cfg.method,
        lpn=lpn,
        pair_head=head,
        # NGAME has no prototypes: every label, seen or not, is its text embedding.
        seen_keys=label_keys if seen_vectors is not None else (),
        seen_texts=label_texts if seen_vectors is not None else (),
        seen_vectors=seen_vectors,
        prototypes=prototypes,
        free_index=free_index_np,
        automation=str(cfg.automation),
        settings={"name": cfg.method},
        encode_batch_size=cfg.encode_batch_size,
    )
    if step.cache is not None:
        model.encode_fn = step.encode
    metrics: dict[str, Any] = {
        "history": history,
        "train_seconds_total": round(time.perf_counter() - started, 2),
        "trainable_layers": trained_layers,
        "steps_per_epoch": steps_per_epoch,
        "train_queries": len(texts),
        "train_labels": n_labels,
    }
    if cfg.calibrate and bench.valid is not None and len(bench.valid):
        # The service's `automated` flag needs a threshold; validation queries choose it.
        metrics["thresholds"] = calibrate_thresholds(model, bench)
        logger.info("automation thresholds on valid: %s", metrics["thresholds"])
    if out_dir is not None:
        settings = asdict(cfg)
        settings.update(
            {
                "benchmark": bench.describe(),
                "torch": torch.__version__,
                "torch_threads": torch.get_num_threads(),
                "platform": platform.platform(),
            }
        )
        data_hash = fingerprint(*texts, *label_keys, *label_texts)
        manifest = Manifest(
            kind="recommender", backbone=str(name), training_data_sha256=data_hash, settings=settings, metrics=metrics
        )
        model.save(out_dir, manifest)
        logger.info("saved %s recommender to %s", cfg.method, out_dir)
    return model, metrics
