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
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from models.artefacts import CALIBRATION_FILE, MATCHER_KIND, Manifest, write_manifest
from models.calibration import Calibrator, threshold_for_best_f1, threshold_for_precision
from models.fast_dropout import use_fast_dropout
from models.lea import LeaCrossEncoder
from models.lexical import EncodedPair, LeaCollator
from models.matcher_io import PRECISION_TARGETS
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
    flip_rates,
    forward_corrected_bce,
    noisy_batch_targets,
    pos_weight_for_targets,
    prior_penalty,
    score_training_pairs,
    signal_features,
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
        model = LeaCrossEncoder.from_config(
            tiny_config, lea=lea, tokenizer_from=backbone, max_length=max_length, **options
        )
    else:
        # Eager attention: on CPU, SDPA with training dropout runs the same math kernel but draws
        # its mask with torch's slow Bernoulli sampler, which FastDropout replaces.
        model = LeaCrossEncoder.from_pretrained(
            backbone, lea=lea, max_length=max_length, attn_implementation="eager", **options
        )
    use_fast_dropout(model.model)  # a third of a CPU training step was torch's Bernoulli sampler
    return model


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


@dataclass
class MatcherConfig:
    """Every hyper-parameter of a matcher run (METHODS §9.4 defaults); stored in the manifest
    (``settings["config"]``), so a run can be repeated from its folder.

    ``backbone``: ``"minilm"``, ``"mpnet"`` or a model folder; with ``tiny_config`` a random
    model of that config is built instead and ``backbone`` only supplies the tokenizer.
    ``threads``: ``torch.set_num_threads`` for this process (None: every core it may use).
    ``precision``: ``auto`` (bf16 where the hardware has native bf16 matmuls, else fp32),
    ``bf16`` or ``fp32``; bf16 autocasts the forward passes only, the weights, optimiser state,
    loss, calibration and saved model stay fp32, and validation runs in the same precision, so
    the calibration fits the logits of the precision that will serve (see models.precision).
    ``length_grouping``: batches of similar token length (training.length_grouping), padded to
    their own longest pair (1.2-1.35x faster on product titles); on by default since the
    full-protocol ablation found no F1 cost over 11 paired runs
    (docs/benchmarks/matcher_protocol.md, "Length grouping"). Every pair is tokenised and its
    LEA word similarities computed once either way.

    Noise-aware training (METHODS §7): ``noise``: ``"none"`` | ``"bmm"`` (beta mixture on
    per-pair losses, §7.1) | ``"knn"`` (kNN label disagreement, §7.2) | ``"both"`` (mean of the
    two probabilities) | ``"signals"`` (EM label-noise model on pretrained, label-free pair
    signals, :mod:`training.noise.signals`). For the first three, after the warm-up epochs
    (``noise_options["warmup_epochs"]``, default 3/8 of ``epochs``, at least 1) and after every
    later epoch, one eval pass over the training pairs re-runs detection; the next epoch uses it.
    ``signals`` does not depend on the model being trained: it detects once, before the first
    epoch, and the whole budget trains on the corrected targets (the path of ``restart`` after a
    warm-up, with no warm-up epochs spent). ``noise_action``: ``"downweight"`` (weight
    ``1 - p_noise``), ``"relabel"`` (bootstrap towards the model's own prediction,
    ``p_noise``-weighted, plus the anti-collapse prior; with ``signals`` the soft target is the
    noise model's posterior of the clean label) or ``"forward"`` (loss correction with the
    estimated flip rates). ``noise_options``: the other :class:`NoiseConfig` fields.
    ``pseudo_label`` (``True``, a dict of :class:`PseudoLabelConfig` fields, or a config): soft
    pseudo-labels for the unlabelled pairs handed to :func:`train_matcher` (§8.2).
    """

    arch: str = "lea"
    backbone: str = "minilm"
    augment: str | None = None
    fields: FieldSpec = "title"
    epochs: int = 8
    batch_size: int = 32
    lr: float = 5e-5
    lea_lr_mult: float = 1.0
    max_length: int = 64
    seed: int = 1
    calibration: str = "temperature"
    max_train_pairs: int | None = None
    tiny_config: dict[str, Any] | None = None
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float | None = 1.0
    p_side: float = P_SIDE
    lea_options: dict[str, Any] | None = None
    threads: int | None = None
    eval_batch_size: int = 128
    noise: str = "none"
    noise_action: str = "downweight"
    noise_options: NoiseConfig | dict[str, Any] | None = None
    pseudo_label: PseudoLabelConfig | dict[str, Any] | bool | None = None
    precision: str = "auto"
    length_grouping: bool = True  # why it is on: the class docstring

    def __post_init__(self) -> None:
        if self.augment not in (None, *AUGMENTS):
            raise ValueError(f"augment must be None or one of {AUGMENTS}, got {self.augment!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")
        if self.noise not in NOISE_METHODS:
            raise ValueError(f"noise must be one of {NOISE_METHODS}, got {self.noise!r}")

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON values (nested configs as dicts)."""
        return {**asdict(self), "fields": _jsonable_fields(self.fields)}


@dataclass
class _Data:
    """The serialised pairs of a run: what every epoch reads and nothing changes."""

    train_idx: list[int]  # into dataset.split("train"), after max_train_pairs
    train: list[TextPair]
    valid: list[TextPair]
    train_labels: np.ndarray
    valid_labels: np.ndarray
    weights: np.ndarray  # the per-pair loss weights given (all ones by default)
    pool: list[tuple[str, str]]  # unlabelled pairs for pseudo-labels
    # (left, right) record fields of the train pairs, for detection from pair signals.
    train_records: list[tuple[Mapping[str, Any], Mapping[str, Any]]] = field(default_factory=list)


@dataclass
class _Plan:
    """The run's fixed plan: configs, encoded pairs, stages and the training schedule's inputs."""

    config: MatcherConfig
    data: _Data
    noise: NoiseConfig | None
    pseudo: PseudoLabelConfig | None
    precision: str
    train_enc: list[EncodedPair]
    valid_enc: list[EncodedPair]
    lengths: list[int] | None
    noise_warmup: int | None
    pseudo_warmup: int | None
    match_rate: float  # the prior of the anti-collapse terms (§7.1 step 4, §8.2)
    restart: bool
    stages: list[int]  # epochs per stage (one stage unless the noisy run restarts)
    bi_features: np.ndarray | None
    progress: bool

    @property
    def total_epochs(self) -> int:
        return sum(self.stages)


@dataclass
class _State:
    """Everything the epoch loop changes; a checkpoint holds all of it."""

    model: LeaCrossEncoder
    optimizer: torch.optim.AdamW
    scheduler: Any
    order_rng: np.random.Generator
    augmenter: TypoAugmenter | None
    targets_all: np.ndarray
    weights: np.ndarray
    pos_weight: float
    offset: float  # the logit shift of class-balanced BCE (see training.noise)
    history: list[dict[str, Any]] = field(default_factory=list)
    detections: list[dict[str, Any]] = field(default_factory=list)
    pseudo_epochs: list[dict[str, Any]] = field(default_factory=list)
    report: NoiseReport | None = None
    last_report: NoiseReport | None = None
    detector_pred: np.ndarray | None = None
    # (P(label 1 | true 0), P(label 0 | true 1)) of the "forward" action, from the first detection.
    rates: tuple[float, float] | None = None
    best_f1: float = -1.0
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    best_logits: np.ndarray | None = None
    collate_seconds: float = 0.0
    started: float = 0.0

    @property
    def collator(self) -> LeaCollator:
        return self.model.collator

    @property
    def pw_tensor(self) -> torch.Tensor:
        return torch.tensor(self.pos_weight, dtype=torch.float32)

    def set_pos_weight(self, pos_weight: float) -> None:
        self.pos_weight, self.offset = pos_weight, math.log(pos_weight)

    def checkpoint(self, epoch: int, stage: int) -> dict[str, Any]:
        return {
            "epoch": epoch, "stage": stage, "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "order_rng": self.order_rng.bit_generator.state,
            "augmenter": None if self.augmenter is None else self.augmenter.getstate(),
            "torch_rng": torch.get_rng_state(), "python_rng": random.getstate(),
            "numpy_rng": np.random.get_state(), "history": self.history, "detections": self.detections,
            "pseudo_epochs": self.pseudo_epochs, "report": self.report, "last_report": self.last_report,
            "detector_pred": self.detector_pred, "best_f1": self.best_f1, "best_epoch": self.best_epoch,
            "best_state": self.best_state, "best_logits": self.best_logits, "targets_all": self.targets_all,
            "weights": self.weights, "pos_weight": self.pos_weight, "offset": self.offset,
            "rates": self.rates, "elapsed": time.perf_counter() - self.started,
        }  # fmt: skip

    def restore(self, ckpt: dict[str, Any], plan: _Plan) -> int:
        """Continue from a checkpoint; returns the last epoch it completed."""
        if ckpt["stage"] > 1:  # the restarted model's schedule has its own length
            self.optimizer, self.scheduler, _ = _optimizer_for(plan, self.model, plan.stages[ckpt["stage"] - 1])
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.order_rng.bit_generator.state = ckpt["order_rng"]
        if self.augmenter is not None:
            self.augmenter.setstate(ckpt["augmenter"])
        torch.set_rng_state(ckpt["torch_rng"])
        random.setstate(ckpt["python_rng"])
        np.random.set_state(ckpt["numpy_rng"])
        self.history, self.detections, self.pseudo_epochs = ckpt["history"], ckpt["detections"], ckpt["pseudo_epochs"]
        self.report, self.last_report, self.detector_pred = ckpt["report"], ckpt["last_report"], ckpt["detector_pred"]
        self.best_f1, self.best_epoch = ckpt["best_f1"], ckpt["best_epoch"]
        self.best_state, self.best_logits = ckpt["best_state"], ckpt["best_logits"]
        self.targets_all, self.weights = ckpt["targets_all"], ckpt["weights"]
        self.pos_weight, self.offset = ckpt["pos_weight"], ckpt["offset"]
        self.rates = ckpt.get("rates")
        self.started -= ckpt["elapsed"]
        return int(ckpt["epoch"])


def train_matcher(
    dataset: PairDataset,
    out_dir: str | Path,
    config: MatcherConfig | None = None,
    *,
    sample_weights: Sequence[float] | None = None,
    unlabelled_pairs: Sequence[tuple[str, str]] | None = None,
    keep_noise_report: bool = False,
    progress: bool = True,
    checkpoint_dir: str | Path | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Train, select the best epoch on clean validation, calibrate, save; returns a summary dict.

    The hyper-parameters are a :class:`MatcherConfig`, or its fields as keyword ``options``
    (which override the fields of a ``config`` given as well). The run's inputs besides the
    dataset, all keyword-only:

    * ``sample_weights``: one non-negative loss weight per pair of ``dataset.split("train")``
      (before ``max_train_pairs`` subsampling), e.g. from reviewers' confidence.
    * ``unlabelled_pairs``: serialised ``(left, right)`` text pairs without labels (e.g. from
      :func:`training.pseudo_labels.unlabelled_candidates`); with ``pseudo_label`` they are
      trained on with soft pseudo-labels after the pseudo-label warm-up, at least
      ``min_labelled_share`` of each batch being labelled (§8.2).
    * ``keep_noise_report``: add the last detection's per-pair probabilities and flags
      (:meth:`NoiseReport.to_dict`, plus ``train_indices`` into ``dataset.split("train")``).
    * ``checkpoint_dir``: a work folder (not ``out_dir``) for a checkpoint after every epoch; a
      run with the same settings resumes from it, bit for bit, and removes it when done.

    The steps: :func:`_prepare_data` (serialised, subsampled pairs), :func:`_plan_run` (seeded
    model, encodings, stages), the epoch loop :func:`_train_epochs`, then :func:`_save_matcher`
    (calibration, thresholds, the folder and its manifest).

    The summary holds ``out_dir``, ``valid_f1``, ``best_epoch``, ``threshold``,
    ``thresholds_for_precision``, ``history`` (per epoch), ``train_seconds``, ``noise`` (None
    or the warm-up and one summary per detection) and ``pseudo_labels`` (None or pool size and
    per-epoch use); the manifest records the same under ``settings`` / ``metrics``.
    """
    cfg = replace(config, **options) if config is not None else MatcherConfig(**options)
    noise_cfg = None if cfg.noise == "none" else NoiseConfig.build(cfg.noise, cfg.noise_action, cfg.noise_options)
    pseudo_cfg = PseudoLabelConfig.build(cfg.pseudo_label)
    if pseudo_cfg is not None and not unlabelled_pairs:
        logger.warning("pseudo_label is set but there are no unlabelled pairs: training on labels only")
    torch.set_num_threads(int(cfg.threads) if cfg.threads is not None else default_threads())
    data = _prepare_data(dataset, cfg, sample_weights, unlabelled_pairs, pseudo_cfg)
    plan, state = _plan_run(cfg, data, noise_cfg, pseudo_cfg, progress)
    state.collator.reset_timings()
    state.started = time.perf_counter()
    run_key = _run_key(cfg, dataset, plan, sample_weights is not None)
    resume_epoch = 0
    ckpt = load_checkpoint(checkpoint_dir, run_key)
    if ckpt is not None:
        resume_epoch = state.restore(ckpt, plan)
        logger.info("resumed from %s after epoch %d", checkpoint_dir, resume_epoch)
    _train_epochs(plan, state, resume_epoch, checkpoint_dir, run_key)
    summary = _save_matcher(Path(out_dir), dataset, plan, state, sample_weights is not None)
    remove_checkpoint(checkpoint_dir)  # only once the model folder is complete
    if keep_noise_report:
        last = state.last_report
        summary["noise_report"] = None if last is None else {**last.to_dict(), "train_indices": data.train_idx}
    return summary


def _prepare_data(
    dataset: PairDataset,
    cfg: MatcherConfig,
    sample_weights: Sequence[float] | None,
    unlabelled_pairs: Sequence[tuple[str, str]] | None,
    pseudo_cfg: PseudoLabelConfig | None,
) -> _Data:
    """The serialised train (subsampled) and valid pairs, the loss weights and the unlabelled pool."""
    train_pairs = dataset.split("train")
    train_idx = subsample_indices([int(p.label) for p in train_pairs], cfg.max_train_pairs)
    train = serialize_pairs([train_pairs[i] for i in train_idx], cfg.fields)
    weights = _train_weights(sample_weights, len(train_pairs), train_idx)
    valid = serialize_pairs(dataset.split("valid"), cfg.fields)
    valid_labels = np.asarray([y for _, _, y in valid], dtype=np.int64)
    if not train or not valid or valid_labels.sum() == 0:
        raise ValueError("training needs non-empty train and valid splits with at least one valid positive")
    train_labels = np.asarray([y for _, _, y in train], dtype=np.int64)
    pool = list(unlabelled_pairs or []) if pseudo_cfg is not None else []
    cap = pseudo_cfg.max_unlabelled if pseudo_cfg is not None else None
    if cap is not None and len(pool) > cap:
        keep = np.random.default_rng(cfg.seed).choice(len(pool), cap, replace=False)
        pool = [pool[i] for i in sorted(keep.tolist())]
    records = [(train_pairs[i].left.fields, train_pairs[i].right.fields) for i in train_idx]
    return _Data(train_idx, train, valid, train_labels, valid_labels, weights, pool, records)


def _plan_run(
    cfg: MatcherConfig,
    data: _Data,
    noise_cfg: NoiseConfig | None,
    pseudo_cfg: PseudoLabelConfig | None,
    progress: bool,
) -> tuple[_Plan, _State]:
    """Seed, build the model, encode every pair once, lay out the stages; the loop's first state."""
    seed_everything(cfg.seed)
    model = build_model(cfg.arch, cfg.backbone, cfg.max_length, cfg.tiny_config, cfg.lea_options)
    collator = model.collator
    prec = resolve_precision(cfg.precision, model.device)
    model.precision = prec
    # Tokens and LEA word similarities of the clean pairs, computed once for every epoch.
    train_enc = collator.encode([(a, b) for a, b, _ in data.train])
    valid_enc = collator.encode([(a, b) for a, b, _ in data.valid])
    # Detection that does not read the model in training has no warm-up: it runs once, below.
    before = noise_cfg is not None and noise_cfg.before_training
    noise_warmup = noise_cfg.warmup_for(cfg.epochs) if noise_cfg is not None and not before else None
    match_rate = float(data.train_labels.mean())
    if noise_cfg is not None and noise_cfg.prior_match_rate is not None:
        match_rate = noise_cfg.prior_match_rate
    # The warm-up of a restart is its own first stage, so it may be as long as the main run.
    restart = noise_cfg is not None and noise_cfg.restart and noise_warmup is not None
    # With ``restart`` the noisy run stops after the warm-up: one detection, then a fresh model from
    # the pretrained weights trains the full budget on the corrected labels (DRPL stage 2, MOIT+);
    # each further round detects again with the last model on the original labels and restarts.
    rounds = noise_cfg.restart_rounds if noise_cfg is not None else 0
    stages = [noise_warmup] + [cfg.epochs] * rounds if restart and noise_warmup is not None else [cfg.epochs]
    plan = _Plan(
        config=cfg,
        data=data,
        noise=noise_cfg,
        pseudo=pseudo_cfg,
        precision=prec,
        train_enc=train_enc,
        valid_enc=valid_enc,
        lengths=[len(e) for e in train_enc] if cfg.length_grouping else None,
        noise_warmup=noise_warmup,
        pseudo_warmup=min(pseudo_cfg.warmup_epochs, cfg.epochs - 1) if pseudo_cfg is not None else None,
        match_rate=match_rate,
        restart=restart,
        stages=stages,
        bi_features=None,
        progress=progress,
    )
    pos_weight = pos_weight_for([y for _, _, y in data.train])
    optimizer, scheduler, total_steps = _optimizer_for(plan, model, stages[0])
    state = _State(
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        order_rng=np.random.default_rng(cfg.seed),
        augmenter=TypoAugmenter(cfg.seed, p_side=cfg.p_side) if cfg.augment == "typo" else None,
        targets_all=data.train_labels.astype(np.float64),
        weights=data.weights,
        pos_weight=pos_weight,
        offset=math.log(pos_weight),
    )
    plan.bi_features = _bi_encoder_features(noise_cfg, data.train, cfg.fields, cfg.eval_batch_size)
    if before:
        _detect_before_training(plan, state)
    logger.info(
        "training %s matcher (%s, augment=%s, noise=%s/%s, pseudo-labels=%s) on %d train / %d valid pairs "
        "(+%d unlabelled), %d epochs, %d steps, pos_weight %.3f, %d torch threads, %s, length grouping %s",
        cfg.arch,
        cfg.backbone,
        cfg.augment,
        cfg.noise,
        cfg.noise_action if noise_cfg is not None else "-",
        pseudo_cfg is not None and bool(data.pool),
        len(data.train),
        len(data.valid),
        len(data.pool),
        cfg.epochs,
        total_steps,
        state.pos_weight,
        torch.get_num_threads(),
        prec,
        cfg.length_grouping,
    )
    return plan, state


def _detect_before_training(plan: _Plan, state: _State) -> None:
    """``signals`` detection, once before the first epoch; its result is folded into the fixed targets.

    ``downweight`` / ``relabel`` become the targets and weights of every epoch (as after a
    ``restart``): ``relabel`` passes ``1 - label`` as the "prediction", so the soft target
    ``(1 - p) y + p (1 - y)`` is the noise model's posterior of the clean label. ``forward`` keeps
    the labels and takes the flip rates from the detection. Either way no epoch reads
    ``state.report`` again, so the batches carry no second noise weighting.
    """
    noise_cfg, data = plan.noise, plan.data
    assert noise_cfg is not None
    start = time.perf_counter()
    from models.bi_encoder import BiEncoder  # the encoder only when this method runs

    # Loading and running the encoder must not move the seeded streams: the run then trains with
    # the same dropout and batch order as a naive run of the same seed.
    rng_state = torch.get_rng_state(), random.getstate(), np.random.get_state()
    encoder = BiEncoder.from_pretrained(noise_cfg.signals_encoder)
    lefts, rights = [a for a, _ in data.train_records], [b for _, b in data.train_records]
    features = signal_features(lefts, rights, encoder, batch_size=plan.config.eval_batch_size)
    del encoder
    torch.set_rng_state(rng_state[0])
    random.setstate(rng_state[1])
    np.random.set_state(rng_state[2])
    report = detect_noisy_pairs(data.train_labels, features=features, config=noise_cfg, epoch=0)
    state.last_report = report
    summary: dict[str, Any] = report.summary()
    if noise_cfg.action == "forward":
        state.rates = flip_rates(data.train_labels, report)
        summary["flip_rates"] = {"label1_true0": state.rates[0], "label0_true1": state.rates[1]}
        logger.info("forward correction: flip rates 0->1 %.3f, 1->0 %.3f", *state.rates)
    else:
        flipped = 1.0 - data.train_labels.astype(np.float64)
        state.targets_all, state.weights = corrected_targets(
            data.train_labels, data.weights, report, noise_cfg.action, flipped
        )
        state.set_pos_weight(pos_weight_for_targets(state.targets_all, state.weights))
        logger.info("training on corrected targets from the start: pos_weight %.3f", state.pos_weight)
    summary["seconds"] = time.perf_counter() - start
    state.detections.append(summary)


def _optimizer_for(plan: _Plan, model: LeaCrossEncoder, n_epochs: int) -> tuple[torch.optim.AdamW, Any, int]:
    """AdamW, a linear schedule with warm-up over one stage of ``n_epochs`` epochs, its step count."""
    cfg = plan.config
    optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay, cfg.lea_lr_mult)
    steps = sum(
        _steps_in_epoch(e, len(plan.data.train), len(plan.data.pool), cfg.batch_size, plan.pseudo, plan.pseudo_warmup)
        for e in range(1, n_epochs + 1)
    )
    return optimizer, get_linear_schedule_with_warmup(optimizer, round(cfg.warmup_ratio * steps), steps), steps


def _run_key(cfg: MatcherConfig, dataset: PairDataset, plan: _Plan, weighted: bool) -> dict[str, Any]:
    """What a checkpoint must have been written for to be resumed."""
    noise_cfg, pseudo_cfg = plan.noise, plan.pseudo
    return {
        "arch": cfg.arch, "backbone": cfg.backbone, "augment": cfg.augment, "fields": _jsonable_fields(cfg.fields),
        "epochs": cfg.epochs, "batch_size": cfg.batch_size, "lr": cfg.lr, "lea_lr_mult": cfg.lea_lr_mult,
        "seed": cfg.seed, "max_length": cfg.max_length, "max_train_pairs": cfg.max_train_pairs,
        "tiny_config": cfg.tiny_config, "weight_decay": cfg.weight_decay, "warmup_ratio": cfg.warmup_ratio,
        "p_side": cfg.p_side, "noise": cfg.noise, "noise_action": cfg.noise_action,
        "noise_options": None if noise_cfg is None else noise_cfg.to_dict(),
        "pseudo": None if pseudo_cfg is None else pseudo_cfg.to_dict(), "pool": len(plan.data.pool),
        "precision": plan.precision, "length_grouping": cfg.length_grouping, "data": dataset.fingerprint(),
        "lea_options": cfg.lea_options, "weights": _weights_summary(plan.data.weights) if weighted else None,
    }  # fmt: skip


def _train_epochs(
    plan: _Plan, state: _State, resume_epoch: int, checkpoint_dir: str | Path | None, run_key: dict[str, Any]
) -> None:
    """Every stage's epochs (those after ``resume_epoch``), with detection and a checkpoint after each."""
    epoch = 0
    for stage, stage_epochs in enumerate(plan.stages, start=1):
        if stage > 1 and epoch + 1 > resume_epoch:
            _restart(plan, state, stage_epochs)
        for stage_epoch in range(1, stage_epochs + 1):
            epoch += 1
            if epoch <= resume_epoch:
                continue
            row, logits_valid = _train_epoch(plan, state, epoch, stage_epoch)
            if plan.restart:
                row["stage"] = stage
            state.history.append(row)
            improved = row["valid_f1"] > state.best_f1
            if improved:
                state.best_f1, state.best_epoch, state.best_logits = row["valid_f1"], epoch, logits_valid
                state.best_state = {k: v.detach().clone() for k, v in state.model.state_dict().items()}
            logger.info(
                "epoch %d/%d: loss %.4f, valid F1 %.4f (P %.3f R %.3f)%s, %.0fs",
                epoch,
                plan.total_epochs,
                row["loss"],
                row["valid_f1"],
                row["valid_precision"],
                row["valid_recall"],
                " best" if improved else "",
                row["train_seconds"] + row["valid_seconds"],
            )
            # Detection after the warm-up and after every later epoch, for the next epoch (§7.1 step 2).
            if plan.restart:
                detect_now = stage < len(plan.stages) and stage_epoch == stage_epochs
            else:
                warmup = plan.noise_warmup
                detect_now = plan.noise is not None and warmup is not None and warmup <= epoch < plan.config.epochs
                # Flip rates are a property of the data: one estimate after the warm-up is enough.
                detect_now = detect_now and not (_forward(plan) and state.rates is not None)
            if detect_now:
                row["detect_seconds"] = _detect_noise(plan, state, epoch)
            if checkpoint_dir is not None and epoch < plan.total_epochs:
                save_checkpoint(checkpoint_dir, run_key, state.checkpoint(epoch, stage))


def _forward(plan: _Plan) -> bool:
    """Whether the run handles noise by forward loss correction (the ``forward`` action)."""
    return plan.noise is not None and plan.noise.action == "forward"


def _restart(plan: _Plan, state: _State, stage_epochs: int) -> None:
    """A fresh model from the pretrained weights, on the labels corrected by the last detection."""
    cfg, noise_cfg, report = plan.config, plan.noise, state.report
    assert noise_cfg is not None and report is not None and state.detector_pred is not None
    flagged_pairs = int(report.flagged.sum())
    state.targets_all, state.weights = corrected_targets(
        plan.data.train_labels, plan.data.weights, report, noise_cfg.action, state.detector_pred
    )
    state.report = None
    state.collate_seconds += state.collator.timings.total
    state.set_pos_weight(pos_weight_for_targets(state.targets_all, state.weights))
    seed_everything(cfg.seed)
    state.model = build_model(cfg.arch, cfg.backbone, cfg.max_length, cfg.tiny_config, cfg.lea_options)
    state.model.precision = plan.precision
    state.optimizer, state.scheduler, _ = _optimizer_for(plan, state.model, stage_epochs)
    logger.info(
        "restart after detection: fresh model, %d epochs on corrected labels (%d pairs flagged), pos_weight %.3f",
        stage_epochs,
        flagged_pairs,
        state.pos_weight,
    )


def _train_epoch(plan: _Plan, state: _State, epoch: int, stage_epoch: int) -> tuple[dict[str, Any], np.ndarray]:
    """One pass over this epoch's batches, then the validation split scored: the epoch's history
    row and its validation logits."""
    cfg, model, data = plan.config, state.model, plan.data
    epoch_start = time.perf_counter()
    # Pseudo-labels from the model as it stands before this epoch (eval mode, §8.2 step 2).
    use_pool: list[tuple[str, str]] = []
    soft = np.zeros(0)
    pseudo_cfg = plan.pseudo
    if pseudo_cfg is not None and data.pool and plan.pseudo_warmup is not None and stage_epoch > plan.pseudo_warmup:
        use_pool, soft, stats = _pseudo_label_pool(
            model, data.pool, pseudo_cfg, state.offset, cfg.eval_batch_size, plan.progress
        )
        state.pseudo_epochs.append({"epoch": epoch, **stats})
    p_noise = None
    if state.report is not None and not _forward(plan):
        p_noise = torch.as_tensor(state.report.p_noise, dtype=torch.float32)
    share = pseudo_cfg.min_labelled_share if pseudo_cfg is not None else 1.0
    batches = plan_batches(len(data.train), len(use_pool), cfg.batch_size, share, state.order_rng, plan.lengths)
    model.train()
    losses: list[float] = []
    bar = tqdm(
        batches,
        desc=f"{cfg.arch} epoch {epoch}/{plan.total_epochs}",
        unit="batch",
        disable=not plan.progress,
        leave=False,
    )
    pw_tensor = state.pw_tensor
    for step, (lab_idx, unl_idx) in enumerate(bar):
        texts = [data.train[i][:2] for i in lab_idx] + [use_pool[j] for j in unl_idx]
        cached = [plan.train_enc[i] for i in lab_idx] + [None] * len(unl_idx)
        if state.augmenter is not None:  # left then right side of each pair, in batch order
            noised = [state.augmenter.pair(a, b) for a, b in texts]
            cached = [c if new == old else None for c, new, old in zip(cached, noised, texts, strict=True)]
            texts = noised
        items = _encode_missing(state.collator, texts, cached)
        targets = [float(state.targets_all[i]) for i in lab_idx] + [float(soft[j]) for j in unl_idx]
        batch = state.collator.pad(items, labels=targets)
        assert batch.labels is not None
        with autocast(plan.precision, model.device):
            logits = model.batch_forward(batch)
        logits = logits.float()  # the loss (and its pos_weight) in fp32
        loss = _batch_loss(
            logits,
            batch.labels.to(logits.device),
            n_labelled=len(lab_idx),
            weights=torch.as_tensor(state.weights[lab_idx], dtype=torch.float32),
            p_noise=None if p_noise is None else p_noise[torch.as_tensor(lab_idx)],
            noise_cfg=plan.noise,
            pseudo_cfg=pseudo_cfg if len(unl_idx) else None,
            match_rate=plan.match_rate,
            pos_weight=pw_tensor,
            offset=state.offset,
            rates=state.rates if _forward(plan) else None,
        )
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm, foreach=True)
        state.optimizer.step()
        state.scheduler.step()
        losses.append(float(loss.detach()))
        if step % 10 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
    bar.close()
    train_time = time.perf_counter() - epoch_start
    logits_valid = model.predict_encoded(plan.valid_enc, batch_size=cfg.eval_batch_size)
    choice = threshold_for_best_f1(logits_valid, data.valid_labels)
    row = {
        "epoch": epoch,
        "loss": float(np.mean(losses)),
        "valid_f1": choice.f1,
        "valid_precision": choice.precision,
        "valid_recall": choice.recall,
        "valid_pr_auc": pr_auc(logits_valid, data.valid_labels),
        "train_seconds": train_time,
        "valid_seconds": time.perf_counter() - epoch_start - train_time,
        "noise_weighted": p_noise is not None,
        "pseudo_labelled": len(use_pool),
    }
    return row, logits_valid


def _detect_noise(plan: _Plan, state: _State, epoch: int) -> float:
    """Detection on the training pairs with the current model, for the next epoch; its seconds."""
    assert plan.noise is not None
    detect_start = time.perf_counter()
    report, train_logits = _detect(
        state.model,
        plan.train_enc,
        plan.data.train_labels,
        plan.noise,
        plan.bi_features,
        epoch,
        plan.config.eval_batch_size,
        plan.progress,
    )
    state.report = state.last_report = report
    # The detecting model's own hard decision, for relabelling after a restart.
    state.detector_pred = (train_logits - state.offset > 0).astype(np.float64)
    summary: dict[str, Any] = {**report.summary(), "seconds": time.perf_counter() - detect_start}
    if _forward(plan):
        state.rates = flip_rates(plan.data.train_labels, report)
        summary["flip_rates"] = {"label1_true0": state.rates[0], "label0_true1": state.rates[1]}
        logger.info("forward correction: flip rates 0->1 %.3f, 1->0 %.3f", *state.rates)
    state.detections.append(summary)
    return float(state.detections[-1]["seconds"])


def _save_matcher(out: Path, dataset: PairDataset, plan: _Plan, state: _State, weighted: bool) -> dict[str, Any]:
    """The best epoch's weights, calibrated on its validation logits, with thresholds, saved with
    their manifest; the run's summary."""
    cfg, data = plan.config, plan.data
    train_seconds = time.perf_counter() - state.started
    state.collate_seconds += state.collator.timings.total
    assert state.best_state is not None and state.best_logits is not None
    model = state.model
    model.load_state_dict(state.best_state)
    model.eval()

    calibrator = Calibrator.fit(state.best_logits, data.valid_labels, cfg.calibration)
    probs = calibrator.apply(state.best_logits)
    best = threshold_for_best_f1(probs, data.valid_labels)
    for_precision = {str(t): threshold_for_precision(probs, data.valid_labels, t) for t in PRECISION_TARGETS}
    calibration_json = {
        "calibrator": calibrator.to_dict(),
        "threshold": best.threshold,
        "thresholds_for_precision": {k: (None if v is None else v.threshold) for k, v in for_precision.items()},
        "fields": _jsonable_fields(cfg.fields),
        "max_length": model.max_length,
        "valid": {
            "best_f1": best.to_dict(),
            "for_precision": {k: (None if v is None else v.to_dict()) for k, v in for_precision.items()},
            "pr_curve": pr_curve(probs, data.valid_labels),
        },
    }
    noise_summary = None
    if plan.noise is not None:
        warmup = plan.noise_warmup
        if warmup is not None and warmup >= cfg.epochs and not plan.restart:
            logger.warning("noise warm-up (%d epochs) >= epochs (%d): detection never ran", warmup, cfg.epochs)
        noise_summary = {
            "warmup_epochs": warmup,
            "restart": plan.restart,
            "before_training": plan.noise.before_training,
            "detections": state.detections,
        }
    pseudo_summary = None
    if plan.pseudo is not None:
        pseudo_summary = {"warmup_epochs": plan.pseudo_warmup, "pool": len(data.pool), "epochs": state.pseudo_epochs}
    settings = {
        "arch": cfg.arch,
        "backbone": cfg.backbone if cfg.tiny_config is None else f"random-init ({cfg.backbone} tokenizer)",
        "tiny_config": cfg.tiny_config,
        "augment": cfg.augment,
        "typo_version": TYPO_VERSION if cfg.augment == "typo" else None,
        "p_side": cfg.p_side if cfg.augment == "typo" else None,
        "fields": _jsonable_fields(cfg.fields),
        "epochs": cfg.epochs,
        "batch_size": cfg.batch_size,
        "lr": cfg.lr,
        "lea_lr_mult": cfg.lea_lr_mult,
        "weight_decay": cfg.weight_decay,
        "warmup_ratio": cfg.warmup_ratio,
        "max_grad_norm": cfg.max_grad_norm,
        "schedule": "linear one-cycle",
        "loss": "bce",
        "pos_weight": state.pos_weight,
        "seed": cfg.seed,
        "max_length": cfg.max_length,
        "calibration": cfg.calibration,
        "max_train_pairs": cfg.max_train_pairs,
        "train_pairs": len(data.train),
        "valid_pairs": len(data.valid),
        "dataset": dataset.name,
        "dataset_format": dataset.format,
        "lea_options": None if model.lex is None else _options_dict(model),
        "torch_threads": torch.get_num_threads(),
        "precision": plan.precision,
        "length_grouping": cfg.length_grouping,
        "sample_weights": _weights_summary(state.weights) if weighted else None,
        "noise": None if plan.noise is None else plan.noise.to_dict(),
        "pseudo_labels": None if plan.pseudo is None else {**plan.pseudo.to_dict(), "unlabelled_pairs": len(data.pool)},
        "config": cfg.to_dict(),
    }
    metrics = {
        "valid_f1": state.best_f1,
        "valid_f1_calibrated": best.f1,
        "valid_pr_auc": state.history[state.best_epoch - 1]["valid_pr_auc"],
        "best_epoch": state.best_epoch,
        "train_seconds": train_seconds,
        "collate_seconds": state.collate_seconds,
        "threshold": best.threshold,
        "history": state.history,
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
        state.best_epoch,
        state.best_f1,
        best.threshold,
        calibrator,
    )
    return {
        "out_dir": str(out),
        "arch": cfg.arch,
        "augment": cfg.augment,
        "seed": cfg.seed,
        "valid_f1": state.best_f1,
        "valid_f1_calibrated": best.f1,
        "best_epoch": state.best_epoch,
        "threshold": best.threshold,
        "thresholds_for_precision": calibration_json["thresholds_for_precision"],
        "train_pairs": len(data.train),
        "train_seconds": train_seconds,
        "history": state.history,
        "noise": noise_summary,
        "pseudo_labels": pseudo_summary,
    }


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
    rates: tuple[float, float] | None = None,
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
    if rates is not None:  # the "forward" action: labelled rows model their label flips
        lab = forward_corrected_bce(logits[:n_labelled], lab_targets, rates, offset)
        per_pair = torch.cat([lab, per_pair[n_labelled:]])
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
    "MatcherConfig",
    "build_model",
    "pos_weight_for",
    "serialize_pairs",
    "subsample",
    "subsample_indices",
    "train_matcher",
]
