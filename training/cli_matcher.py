"""``train matcher`` and ``eval matcher`` sub-commands, added to the main CLI by its owner.

The main CLI builds the ``train`` / ``eval`` sub-parser groups and calls
:func:`add_train_matcher` / :func:`add_eval_matcher` on them; each parser sets
``func=<callable(args) -> int>`` and ``needs_settings=False`` (no service settings involved).

    productmatch train matcher --data abt-buy --format deepmatcher --out var/models/abt-lea \\
        --arch lea --augment typo --epochs 8 --seed 1
    productmatch train matcher --data abt-buy --format deepmatcher --out var/models/abt-noise \\
        --arch vanilla --noise bmm --noise-action downweight --pseudo-labels
    productmatch eval matcher --data abt-buy --format deepmatcher --model var/models/abt-lea \\
        --noise typo --noise-seeds 1,2,3 --json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from models.backbones import BACKBONES
from models.precision import PRECISION_HELP, PRECISIONS
from training.cli_args import add_dataset_options, int_list, positive_int
from training.data.readers import load_dataset
from training.data.records import PairDataset
from training.noise import NOISE_ACTIONS, NOISE_METHODS

logger = logging.getLogger(__name__)


def load_cli_dataset(args: argparse.Namespace) -> PairDataset:
    """Read ``--data`` in ``--format``; ``--size`` goes to the readers that have sized splits."""
    kwargs: dict[str, Any] = {}
    if args.size is not None:
        if args.format == "ditto":
            kwargs["size"] = args.size
        elif args.format == "wdc-products":
            kwargs.update(train_size=args.size, valid_size=args.size)
        else:
            logger.warning("--size is ignored for the %s format", args.format)
    return load_dataset(args.data, args.format, **kwargs)


def _field_spec(value: str) -> str | list[str]:
    # "title", "all", or a comma-separated attribute list ("name,price").
    return value if value in ("title", "all") or "," not in value else [v.strip() for v in value.split(",")]


# --------------------------------------------------------------------------------------------
# train matcher
# --------------------------------------------------------------------------------------------


def add_train_matcher(train_sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``matcher`` to the ``train`` sub-commands."""
    p = train_sub.add_parser(
        "matcher",
        help="fine-tune a vanilla or LEA cross-encoder matcher, calibrate it and save the folder",
        description="Fine-tune a pair matcher (METHODS §9.4 recipe) and save a calibrated model folder.",
    )
    add_dataset_options(p, sizes=True)
    p.add_argument("--out", required=True, metavar="DIR", help="output model folder")
    p.add_argument("--arch", required=True, choices=("lea", "vanilla"))
    p.add_argument(
        "--backbone",
        default="minilm",
        help=f"one of {', '.join(BACKBONES)} or a model folder (default: minilm)",
    )
    p.add_argument("--augment", choices=("typo",), default=None, help="typo data augmentation (METHODS §1.4)")
    p.add_argument(
        "--fields",
        type=_field_spec,
        default="title",
        help="title | all | comma-separated attributes (default: title)",
    )
    p.add_argument("--epochs", type=positive_int, default=8)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--lea-lr-mult", type=float, default=1.0, help="learning-rate multiplier of LEA's projections")
    p.add_argument("--max-length", type=positive_int, default=64)
    p.add_argument("--calibration", choices=("temperature", "isotonic"), default="temperature")
    p.add_argument("--max-train-pairs", type=positive_int, default=None, help="stratified subsample of train")
    p.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto", help=PRECISION_HELP)
    p.add_argument(
        "--length-grouping",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="length-grouped batches (default: on; --no-length-grouping for random batches)",
    )
    p.add_argument(
        "--checkpoint-dir",
        default=None,
        metavar="DIR",
        help="checkpoint every epoch here; the same command resumes an interrupted run",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_noise_options(p)
    _add_pseudo_label_options(p)
    p.set_defaults(func=cmd_train_matcher, needs_settings=False)
    return p


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a share in (0, 1], got {text!r}")
    return value


def _add_noise_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("label noise (METHODS §7)")
    g.add_argument(
        "--noise",
        choices=NOISE_METHODS,
        default="none",
        help="detect noisy training labels after the warm-up: bmm = beta mixture on per-pair losses, "
        "knn = disagreement with the k nearest labelled pairs, both = mean of the two; or before training: "
        "signals = EM label-noise model on the zero-shot MiniLM cosine and the pair signals of the two "
        "records (no warm-up; every epoch trains on the corrected labels; --noise-warmup, --noise-gate and "
        "--noise-restart do not apply) (default: none)",
    )
    g.add_argument(
        "--noise-action",
        choices=NOISE_ACTIONS,
        default="downweight",
        help="downweight: loss weight 1 - p_noise; relabel: bootstrap the target towards the model's own "
        "prediction in proportion to p_noise; forward: keep every label and correct the loss for the "
        "class flip rates estimated by the first detection (default: downweight)",
    )
    g.add_argument(
        "--noise-warmup",
        type=positive_int,
        default=None,
        metavar="EPOCHS",
        help="epochs before the first detection (default: 3/8 of --epochs, at least 1)",
    )
    g.add_argument("--noise-knn-k", type=positive_int, default=25, metavar="K", help="kNN neighbours (default: 25)")
    g.add_argument(
        "--noise-knn-features",
        choices=("matcher", "bi-encoder"),
        default="matcher",
        help="kNN pair embedding: the matcher's [CLS] state, or [u, v, |u-v|, u*v] of the packaged "
        "MiniLM bi-encoder (default: matcher)",
    )
    g.add_argument(
        "--noise-gate",
        action="store_true",
        help="flag a pair only when the model also misclassifies it (protects hard negatives of a rare class)",
    )
    g.add_argument(
        "--noise-restart",
        action="store_true",
        help="detect once after the warm-up, then train a fresh model for --epochs on the corrected labels",
    )
    g.add_argument(
        "--noise-rounds",
        type=positive_int,
        default=1,
        metavar="N",
        help="with --noise-restart: detect-and-retrain rounds, each detecting with the last model (default: 1)",
    )
    g.add_argument(
        "--noise-hard",
        action="store_true",
        help="drop (downweight) or fully relabel flagged pairs instead of weighting by the noise probability",
    )


def _add_pseudo_label_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("pseudo-labels (METHODS §8)")
    g.add_argument(
        "--pseudo-labels",
        action="store_true",
        help="also train on unlabelled blocking candidates of the dataset's tables (top-k right records "
        "of every left record, minus labelled pairs) with soft pseudo-labels from the model",
    )
    g.add_argument("--pseudo-k", type=positive_int, default=10, metavar="K", help="blocker depth (default: 10)")
    g.add_argument(
        "--pseudo-blocker",
        default="minilm",
        metavar="MODEL",
        help="bi-encoder for the candidates: minilm (zero-shot) or a blocker folder (default: minilm)",
    )
    g.add_argument("--pseudo-max-pairs", type=positive_int, default=None, metavar="N", help="seeded cap on the pool")
    g.add_argument(
        "--pseudo-warmup",
        type=int,
        default=2,
        metavar="EPOCHS",
        help="labelled-only epochs first (default: 2, at most --epochs - 1)",
    )
    g.add_argument(
        "--min-labelled-share",
        type=_share,
        default=0.5,
        metavar="SHARE",
        help="at least this share of every batch is labelled (default: 0.5)",
    )
    g.add_argument(
        "--pseudo-min-confidence",
        type=float,
        default=0.0,
        metavar="C",
        help="use only pool pairs with |2p - 1| >= C (default: 0, all pairs, as the spec's soft labels)",
    )
    g.add_argument(
        "--transductive",
        action="store_true",
        help="keep records of validation/test pairs in the pool (default: excluded)",
    )


def _unlabelled_pool(args: argparse.Namespace, dataset: PairDataset) -> list[tuple[str, str]] | None:
    """Serialised blocking candidates for ``--pseudo-labels``; None when the flag is off."""
    if not args.pseudo_labels:
        return None
    from models.bi_encoder import BiEncoder
    from training.pseudo_labels import serialize_unlabelled, unlabelled_candidates

    if not dataset.left_table or not dataset.right_table:
        logger.warning("--pseudo-labels: %s has no left/right tables, training on labels only", dataset.name)
        return []
    candidates = unlabelled_candidates(
        dataset,
        k=args.pseudo_k,
        encoder=BiEncoder.from_pretrained(args.pseudo_blocker),
        transductive=args.transductive,
        max_pairs=args.pseudo_max_pairs,
        seed=args.seed,
    )
    return serialize_unlabelled(candidates, args.fields)


def cmd_train_matcher(args: argparse.Namespace) -> int:
    from training.train_matcher import train_matcher  # torch import only when the command runs

    dataset = load_cli_dataset(args)
    pool = _unlabelled_pool(args, dataset)
    noise_options = {
        "warmup_epochs": args.noise_warmup,
        "knn_k": args.noise_knn_k,
        "knn_features": args.noise_knn_features,
        "require_disagreement": args.noise_gate,
        "restart": args.noise_restart,
        "restart_rounds": args.noise_rounds,
        "hard_flags": args.noise_hard,
    }
    pseudo = None
    if args.pseudo_labels:
        pseudo = {
            "warmup_epochs": args.pseudo_warmup,
            "min_labelled_share": args.min_labelled_share,
            "min_confidence": args.pseudo_min_confidence,
        }
    summary = train_matcher(
        dataset,
        args.out,
        arch=args.arch,
        backbone=args.backbone,
        augment=args.augment,
        fields=args.fields,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        lea_lr_mult=args.lea_lr_mult,
        max_length=args.max_length,
        seed=args.seed,
        calibration=args.calibration,
        max_train_pairs=args.max_train_pairs,
        threads=args.threads,
        precision=args.precision,
        length_grouping=args.length_grouping,
        checkpoint_dir=args.checkpoint_dir,
        progress=not args.no_progress,
        noise=args.noise,
        noise_action=args.noise_action,
        noise_options=noise_options,
        unlabelled_pairs=pool,
        pseudo_label=pseudo,
    )
    summary.pop("history", None)
    sys.stdout.write(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return 0


# --------------------------------------------------------------------------------------------
# eval matcher
# --------------------------------------------------------------------------------------------


def add_eval_matcher(eval_sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``matcher`` to the ``eval`` sub-commands."""
    p = eval_sub.add_parser(
        "matcher",
        help="evaluate a matcher folder on a clean test split and its typo-noised copies",
        description="Clean and typo-noised F1 of a saved matcher at its saved threshold (METHODS §1.3).",
    )
    add_dataset_options(p, sizes=True)
    p.add_argument("--model", required=True, metavar="DIR", help="matcher folder written by 'train matcher'")
    p.add_argument("--split", default="test", choices=("train", "valid", "test"))
    p.add_argument("--noise", choices=("typo",), default=None, help="also evaluate typo-noised copies")
    p.add_argument("--noise-seeds", type=int_list, default=None, help="noisy copies (default with --noise: 1,2,3)")
    p.add_argument("--fields", type=_field_spec, default=None, help="override the model's fields (default: as trained)")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument(
        "--quantize",
        choices=("none", "int8"),
        default="none",
        help="score with dynamic int8 Linear layers (as MATCHER_QUANTIZE=int8 serves); threshold stays fp32's",
    )
    p.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_eval_matcher, needs_settings=False)
    return p


def cmd_eval_matcher(args: argparse.Namespace) -> int:
    from training.eval_matcher import evaluate_matcher

    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    if args.noise_seeds is not None and args.noise is None:
        args.noise = "typo"  # seeds imply the (only) noise kind
    seeds = (args.noise_seeds or [1, 2, 3]) if args.noise else None
    dataset = load_cli_dataset(args)
    result = evaluate_matcher(
        args.model,
        dataset,
        split=args.split,
        noise_seeds=seeds,
        fields=args.fields,
        batch_size=args.batch_size,
        quantize=args.quantize,
    )
    if args.json:
        sys.stdout.write(json.dumps(result, sort_keys=True) + "\n")
        return 0
    out = sys.stdout
    quantized = "" if args.quantize == "none" else f", {args.quantize}"
    out.write(f"model      {args.model} ({result['model']['arch']}, {result['model']['backbone']}{quantized})\n")
    out.write(f"data       {result['dataset']} / {result['split']}: {result['pairs']} pairs\n")
    out.write(f"threshold  {result['threshold']:.4f} (calibrated probability)\n")
    out.write(f"clean      F1 {result['f1_clean']:.4f}  P {result['precision']:.4f}  R {result['recall']:.4f}\n")
    if result["f1_noisy"] is not None:
        per_seed = ", ".join(f"{k}: {v:.4f}" for k, v in result["f1_noisy_per_seed"].items())
        out.write(f"noisy      F1 {result['f1_noisy']:.4f}  ({result['noise']}; {per_seed})\n")
    return 0


__all__ = [
    "add_eval_matcher",
    "add_train_matcher",
    "cmd_eval_matcher",
    "cmd_train_matcher",
    "load_cli_dataset",
]
