"""MiniLM against a decoder text encoder (SmolLM2-135M + LoRA) on the same recommender data.

Both backbones see the same training offers in the same batches (cluster batches built once
from zero-shot MiniLM embeddings, METHODS §4.6), the same NGAME loss (fixed-margin triplet on
the in-batch hardest negatives, §4.4 with m_min = m_max), the same number of steps and the same
test queries against the same label texts. Only the encoder and its learning rate differ:
MiniLM is fine-tuned whole, the decoder trains rank-r LoRA adapters on its attention and MLP
projections (peft), mean pooled over the ViXML text template (§5.3). Each arm reports P@1 /
R@10 before and after training, and its cost: trainable parameters, training seconds, and
encoding throughput.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from training.recommend import losses
from training.recommend.batching import cluster_batches
from training.recommend.benchmark import RecommendBenchmark
from training.recommend.metrics import precision_recall_at, top_k

logger = logging.getLogger(__name__)

#: texts -> L2-normalised embeddings (B, D), with gradients when the module is training.
Embed = Callable[[Sequence[str]], torch.Tensor]


@dataclass
class Arm:
    """One backbone: the module whose trainable parameters are optimised, how it embeds, its lr."""

    name: str
    module: nn.Module
    embed: Embed
    lr: float
    load_seconds: float = 0.0
    note: str = ""


@dataclass
class CompareConfig:
    epochs: int = 1
    batch_size: int = 32
    margin: float = 0.3  # NGAME's fixed margin
    k: int = 100
    tau: float = 0.1
    warmup_steps: int = 5
    cluster_size: int = 4
    max_train_queries: int | None = None
    max_test_queries: int | None = None
    encode_batch_size: int = 64
    seed: int = 0


def _subsample(n: int, limit: int | None, rng: np.random.Generator) -> np.ndarray:
    idx = np.arange(n)
    return idx if limit is None or limit >= n else np.sort(rng.choice(n, size=limit, replace=False))


@torch.no_grad()
def encode(arm: Arm, texts: Sequence[str], batch_size: int) -> np.ndarray:
    arm.module.eval()
    out = [arm.embed(list(texts[i : i + batch_size])).float().cpu().numpy() for i in range(0, len(texts), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, 1), dtype=np.float32)


def _evaluate(
    arm: Arm, label_texts: list[str], queries: list[str], targets: list[list[int]], batch_size: int
) -> dict[str, float]:
    t0 = time.perf_counter()
    labels = encode(arm, label_texts, batch_size)
    q = encode(arm, queries, batch_size)
    seconds = time.perf_counter() - t0
    ranked, _ = top_k(q @ labels.T, 10)
    metrics = precision_recall_at(ranked, targets, (1, 10))
    return {
        "p@1": round(metrics["p@1"], 4),
        "r@10": round(metrics["r@10"], 4),
        "encode_texts_per_s": round((len(label_texts) + len(queries)) / seconds, 1),
    }


def _train(arm: Arm, texts: list[str], targets: list[int], label_texts: list[str], batches: list[list[int]],
           cfg: CompareConfig) -> dict[str, Any]:  # fmt: skip
    params = [p for p in arm.module.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=arm.lr, weight_decay=0.01)
    total_steps = len(batches) * cfg.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda step: (
            min(1.0, (step + 1) / max(1, cfg.warmup_steps))
            * max(0.0, (total_steps - step) / max(1, total_steps - cfg.warmup_steps))
        ),
    )
    history: list[float] = []
    t0 = time.perf_counter()
    with tqdm(total=total_steps, desc=f"train {arm.name}", unit="step", leave=False) as bar:
        for _ in range(cfg.epochs):
            arm.module.train()
            running = []
            for rows in batches:
                batch_labels = sorted({targets[r] for r in rows})
                col = {lab: j for j, lab in enumerate(batch_labels)}
                y = torch.zeros(len(rows), len(batch_labels), dtype=torch.bool)
                for i, r in enumerate(rows):
                    y[i, col[targets[r]]] = True
                pos = torch.tensor([col[targets[r]] for r in rows])
                s = arm.embed([texts[r] for r in rows]) @ arm.embed([label_texts[j] for j in batch_labels]).T
                loss = losses.dynamic_margin_triplet(s, y, pos, cfg.k, cfg.margin, cfg.margin, cfg.tau)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                sched.step()
                running.append(float(loss.detach()))
                bar.update(1)
            history.append(round(float(np.mean(running)), 5))
    seconds = time.perf_counter() - t0
    return {
        "loss_by_epoch": history,
        "steps": total_steps,
        "train_seconds": round(seconds, 1),
        "seconds_per_step": round(seconds / max(1, total_steps), 2),
    }


def compare_backbones(
    bench: RecommendBenchmark,
    arms: Mapping[str, Callable[[], Arm]],
    batching_embeddings: Callable[[list[str]], np.ndarray],
    cfg: CompareConfig | None = None,
) -> dict[str, Any]:
    """Train and test every arm on ``bench`` (the same batches for all); one dict per arm.

    ``batching_embeddings`` embeds the training queries once to form the cluster batches, so
    every arm gets identical batches whatever its own embeddings are. Arms are built one at a
    time (``arms`` maps a name to a factory) so only one backbone is in memory.
    """
    cfg = cfg or CompareConfig()
    rng = np.random.default_rng(cfg.seed)
    train_idx = _subsample(len(bench.train), cfg.max_train_queries, rng)
    test_idx = _subsample(len(bench.test), cfg.max_test_queries, rng)
    train_texts = [bench.train.texts[i] for i in train_idx]
    train_targets = [bench.train.targets[i][0] for i in train_idx]
    test_texts = [bench.test.texts[i] for i in test_idx]
    test_targets = [bench.test.targets[i] for i in test_idx]
    batches = cluster_batches(batching_embeddings(train_texts), cfg.cluster_size, cfg.batch_size, cfg.seed)
    out: dict[str, Any] = {
        "settings": asdict(cfg),
        "dataset": bench.name,
        "test_set": bench.test_name,
        "train_queries": len(train_texts),
        "test_queries": len(test_texts),
        "labels": bench.n_labels,
        "arms": {},
    }
    for name, factory in arms.items():
        torch.manual_seed(cfg.seed)
        arm = factory()
        trainable = sum(p.numel() for p in arm.module.parameters() if p.requires_grad)
        total = sum(p.numel() for p in arm.module.parameters())
        before = _evaluate(arm, bench.label_texts, test_texts, test_targets, cfg.encode_batch_size)
        logger.info("%s zero-shot: %s", name, before)
        train = _train(arm, train_texts, train_targets, bench.label_texts, batches, cfg)
        after = _evaluate(arm, bench.label_texts, test_texts, test_targets, cfg.encode_batch_size)
        logger.info("%s trained: %s (%s)", name, after, train)
        out["arms"][name] = {
            "lr": arm.lr,
            "note": arm.note,
            "load_seconds": round(arm.load_seconds, 1),
            "parameters": total,
            "trainable_parameters": trainable,
            "zero_shot": before,
            "trained": after,
            **train,
        }
        del arm
    return out


__all__ = ["Arm", "CompareConfig", "compare_backbones", "encode"]
