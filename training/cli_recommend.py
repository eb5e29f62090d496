"""``train recommender`` and ``eval recommender`` sub-commands (joined to the main CLI's groups).

    productmatch train recommender --data wdc-products-80cc20rnd --out var/models/rec-prime \\
        --method prime --epochs 2 --seed 1
    productmatch eval recommender --data wdc-products-80cc20rnd --model var/models/rec-prime --json
    productmatch eval recommender --data wdc-products-80cc20rnd --test 100un --json   # zero-shot

Results go to stdout (one JSON object with ``--json``); progress bars and logs go to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Any

from training.cli_args import error, field_tuple, positive_int
from training.data.readers import SIZE_ORDER

logger = logging.getLogger(__name__)


def _add_benchmark_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, metavar="DIR", help="WDC Products folder (or a name under the data root)")
    p.add_argument("--test", default=None, help="test set, e.g. 000un, 050un, 100un (default: 000un if present)")
    p.add_argument("--train-size", choices=SIZE_ORDER, default="medium")
    p.add_argument("--valid-size", choices=SIZE_ORDER, default="medium")
    p.add_argument("--fields", type=field_tuple, default=("title",), help="query / label text fields (default: title)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")


def _bench(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from training.recommend.benchmark import load_benchmark

    return load_benchmark(args.data, args.test, args.train_size, args.valid_size, args.fields)


def add_train_recommender(train_sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = train_sub.add_parser(
        "recommender",
        help="train the PRIME or NGAME recommender on WDC Products (offers -> product clusters)",
        description="Train a recommender (METHODS §4, §6) and save the folder (safetensors + manifest.json).",
    )
    _add_benchmark_options(p)
    p.add_argument("--out", required=True, metavar="DIR", help="output model folder")
    p.add_argument("--method", required=True, choices=("prime", "ngame"))
    p.add_argument("--backbone", default="minilm", help="minilm or a saved bi-encoder folder")
    p.add_argument("--epochs", type=positive_int, default=3, help="default 3: the measured budget (docs/training.md)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--lr", type=float, default=5e-5, help="encoder learning rate")
    p.add_argument("--head-lr", type=float, default=5e-4, help="LPN / free vectors / pair head learning rate")
    p.add_argument("--max-length", type=positive_int, default=32)
    p.add_argument("--trainable-layers", type=int, default=None, help="train only the top N layers (CPU budget)")
    p.add_argument("--max-steps-per-epoch", type=positive_int, default=None)
    p.add_argument("--tcm", action="store_true", help="add the threshold-consistent margin loss (§6.2)")
    p.add_argument("--tcm-m-pos", type=float, default=0.9)
    p.add_argument("--tcm-m-neg", type=float, default=0.5)
    p.add_argument(
        "--alc",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the ALC-style pair classifier + hard-set softmax (§6.4); default: on for prime, off for ngame",
    )
    p.add_argument(
        "--automation",
        choices=("cosine", "margin", "pair"),
        default=None,
        help="automation score: top-1 cosine, top-1 minus top-2 cosine (margin, the default: the best measured), "
        "ALC pair head",
    )
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_train_recommender, needs_settings=False)
    return p


def cmd_train_recommender(args: argparse.Namespace) -> int:
    from training.recommend.train import train_recommender

    try:
        bench = _bench(args)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        return error(str(exc))

    def on_epoch(record: dict[str, Any]) -> None:
        sys.stderr.write(json.dumps(record) + "\n")

    try:
        _, metrics = train_recommender(
            bench,
            args.out,
            backbone=args.backbone,
            method=args.method,
            epochs=args.epochs,
            seed=args.seed,
            batch_size=args.batch_size,
            lr_encoder=args.lr,
            lr_head=args.head_lr,
            max_length=args.max_length,
            trainable_layers=args.trainable_layers,
            max_steps_per_epoch=args.max_steps_per_epoch,
            tcm=args.tcm,
            tcm_m_pos=args.tcm_m_pos,
            tcm_m_neg=args.tcm_m_neg,
            alc=args.alc,
            automation=args.automation,
            num_threads=args.threads,
            progress=not args.no_progress,
            on_epoch=on_epoch,
        )
    except ValueError as exc:
        return error(str(exc))
    summary = {"out": str(args.out), "method": args.method, "seed": args.seed, "benchmark": bench.describe(), **metrics}
    sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    return 0


def add_eval_recommender(eval_sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = eval_sub.add_parser(
        "recommender",
        help="P@1, P@5, R@10, R@100 and coverage at 0.95 / 0.98 precision on WDC Products",
        description="Evaluate a recommender folder (default: the zero-shot MiniLM baseline).",
    )
    _add_benchmark_options(p)
    p.add_argument("--model", default=None, metavar="DIR", help="folder from 'train recommender' (default: zero-shot)")
    p.add_argument("--max-length", type=positive_int, default=None, help="zero-shot max length (default 32)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_eval_recommender, needs_settings=False)
    return p


def cmd_eval_recommender(args: argparse.Namespace) -> int:
    from models.artefacts import ManifestError
    from models.recommender import ZERO_SHOT_MAX_LENGTH, RecommenderModel
    from training.recommend.evaluate import evaluate_recommender

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    try:
        bench = _bench(args)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        return error(str(exc))
    try:
        if args.model:
            model = RecommenderModel.load(args.model)
        else:
            model = RecommenderModel.zero_shot(max_length=args.max_length or ZERO_SHOT_MAX_LENGTH)
    except (ManifestError, ValueError, FileNotFoundError) as exc:
        return error(str(exc))
    result: dict[str, Any] = {"model": model.name, "method": model.method, "automation": model.automation}
    result.update(evaluate_recommender(model, bench))
    result["dataset"] = bench.name
    result["test"] = bench.test_name
    result["benchmark"] = bench.describe()
    result["seconds"] = round(time.perf_counter() - started, 2)
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
        return 0
    out = sys.stdout
    out.write(
        f"{result['model']} on {bench.name}/{bench.test_name}: {result['queries']} queries, {result['labels']} labels\n"
    )
    out.write("  " + "  ".join(f"{k.upper()}={result[k]:.4f}" for k in ("p@1", "p@5", "r@10", "r@100")) + "\n")
    for target in ("0.95", "0.98"):
        cov, prec = result[f"coverage@{target}"], result[f"precision@{target}"]
        shown = "-" if prec is None else f"{prec:.4f}"
        out.write(f"  precision target {target}: coverage {cov:.4f}, test precision {shown}\n")
    return 0


__all__ = ["add_eval_recommender", "add_train_recommender", "cmd_eval_recommender", "cmd_train_recommender"]
