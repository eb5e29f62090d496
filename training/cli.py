"""`productmatch train blocker` and `productmatch eval blocker` (hooked into app/cli.py).

Both commands work without the service settings (``needs_settings=False``). Results go to
stdout as JSON; progress bars, per-epoch lines and logs go to stderr, so
``productmatch eval blocker ... --json | jq`` works.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from models.hybrid_blocking import DEFAULT_LEXICAL_CANDIDATES, DEFAULT_LEXICAL_WEIGHT, DEFAULT_POOL
from models.precision import PRECISION_HELP, PRECISIONS
from training.cli_args import add_dataset_options, emit, error, int_list

logger = logging.getLogger(__name__)

ZERO_SHOT = "minilm-zero-shot"
LEXICAL = "token_set_ratio"
BM25_LABEL = "bm25"
#: sentence-transformers' max_seq_length for all-MiniLM-L6-v2; the §9.5 anchors use it.
ZERO_SHOT_MAX_LENGTH = 256


def _float_list(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values or any(not 0.0 <= v <= 1.0 for v in values):
        raise argparse.ArgumentTypeError("expected numbers in [0, 1], e.g. 0.5,0.75,1")
    return values


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    """Add ``train blocker`` and ``eval blocker`` to the ``productmatch`` parser."""

    train = sub.add_parser("train", help="train models on a benchmark dataset")
    train_sub = train.add_subparsers(dest="train_command", required=True)
    tb = train_sub.add_parser("blocker", help="train the bi-encoder blocker (Block-SCL or MNRL)")
    add_dataset_options(tb, fields=True)
    tb.add_argument("--out", required=True, help="output model folder")
    tb.add_argument("--backbone", default="minilm", help="minilm, mpnet or a saved model folder")
    tb.add_argument("--loss", choices=["block-scl", "mnrl"], default="block-scl")
    tb.add_argument("--epochs", type=int, default=5)
    tb.add_argument("--batch-size", type=int, default=128)
    tb.add_argument("--lr", type=float, default=5e-5)
    tb.add_argument("--seed", type=int, default=0)
    tb.add_argument("--max-length", type=int, default=64)
    tb.add_argument("--temperature", type=float, default=0.07)
    tb.add_argument("--anchors-per-batch", type=int, default=32, help="K")
    tb.add_argument("--offers-per-anchor", type=int, default=2, help="P")
    tb.add_argument("--hard-negatives", type=int, default=4, help="M, per anchor offer")
    tb.add_argument("--neighbour-k", type=int, default=20, help="blocker candidates mined per record")
    tb.add_argument("--remine", action="store_true", help="re-mine candidates with the current encoder each epoch")
    tb.add_argument("--only-labelled-negatives", action="store_true")
    tb.add_argument("--typo-augment", type=float, default=0.0, help="share of training texts typo-noised")
    tb.add_argument("--max-valid-queries", type=int, default=1000)
    tb.add_argument("--max-steps-per-epoch", type=int, default=None, help="CPU budget cap per epoch")
    tb.add_argument(
        "--interpolate",
        type=_float_list,
        default=[0.5, 0.6, 0.7, 0.8, 0.9, 1.0],
        metavar="A,B,...",
        help="shares of the trained weights mixed with the starting model (WiSE-FT), best on validation; 1 = off",
    )
    tb.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    tb.add_argument("--precision", choices=PRECISIONS, default="auto", help=PRECISION_HELP)
    tb.add_argument("--no-progress", action="store_true")
    tb.set_defaults(func=cmd_train_blocker, needs_settings=False)

    ev = sub.add_parser("eval", help="evaluate models on a benchmark dataset")
    ev_sub = ev.add_subparsers(dest="eval_command", required=True)
    eb = ev_sub.add_parser("blocker", help="blocking recall@k (METHODS §9.5 protocol)")
    add_dataset_options(eb, fields=True)
    eb.add_argument("--model", default=None, help="model folder saved by `train blocker` (default: zero-shot MiniLM)")
    eb.add_argument("--lexical", action="store_true", help="evaluate the token_set_ratio baseline instead")
    eb.add_argument("--bm25", action="store_true", help="evaluate the BM25 baseline instead")
    eb.add_argument(
        "--hybrid",
        action="store_true",
        help="hybrid dense + BM25 blocking, as the service runs it (models.hybrid_blocking)",
    )
    eb.add_argument("--pool", type=int, default=None, help=f"hybrid: dense candidates (default {DEFAULT_POOL})")
    eb.add_argument(
        "--lexical-candidates",
        type=int,
        default=None,
        help=f"hybrid: BM25 candidates (default {DEFAULT_LEXICAL_CANDIDATES})",
    )
    eb.add_argument(
        "--lexical-weight", type=float, default=None, help=f"hybrid BM25 weight (default {DEFAULT_LEXICAL_WEIGHT})"
    )
    eb.add_argument("--k", type=int_list, default=[1, 5, 10, 20, 50], help="e.g. 1,5,10,20,50")
    eb.add_argument("--split", default="test")
    eb.add_argument("--max-length", type=int, default=None, help="default: the model's manifest, or 256 zero-shot")
    eb.add_argument("--noise", choices=["typo"], default=None, help="also score typo-noised queries (typo-v1)")
    eb.add_argument("--noise-seeds", type=int_list, default=[1, 2, 3])
    eb.add_argument("--threads", type=int, default=None)
    eb.add_argument("--json", action="store_true", help="print one JSON object")
    eb.set_defaults(func=cmd_eval_blocker, needs_settings=False)

    # The matcher commands live in their own module and join the same `train` / `eval` groups.
    try:
        from training.cli_matcher import add_eval_matcher, add_train_matcher
    except ImportError:
        logger.debug("training.cli_matcher not available: no matcher sub-commands")
    else:
        add_train_matcher(train_sub)
        add_eval_matcher(ev_sub)
    try:
        from training.cli_recommend import add_eval_recommender, add_train_recommender
    except ImportError:
        logger.debug("training.cli_recommend not available: no recommender sub-commands")
    else:
        add_train_recommender(train_sub)
        add_eval_recommender(ev_sub)
    try:
        from training.default_recipe.cli import add_train_default
    except ImportError:
        logger.debug("training.default_recipe not available: no `train default`")
    else:
        add_train_default(train_sub)


# ---------------------------------------------------------------------------------- helpers


def _load(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from training.blocking_tasks import load_blocking_dataset

    return load_blocking_dataset(args.data, args.format)


def load_model_folder(folder: str | Path, max_length: int | None = None):  # type: ignore[no-untyped-def]
    """A blocker folder saved by ``train blocker``: manifest checked, safetensors only."""
    from models.artefacts import assert_safe_weights, read_manifest
    from models.bi_encoder import BiEncoder

    manifest = read_manifest(folder)
    if manifest.kind != "bi-encoder":
        raise ValueError(f"{folder} holds a {manifest.kind!r} model, not a bi-encoder")
    assert_safe_weights(folder)
    length = max_length or int(manifest.settings.get("max_length", 64))
    return BiEncoder.from_pretrained(str(folder), max_length=length), manifest


def _threads(n: int | None) -> None:
    if n:
        import torch

        torch.set_num_threads(n)


# ---------------------------------------------------------------------------------- train


def cmd_train_blocker(args: argparse.Namespace) -> int:
    from training.train_blocker import train_blocker

    try:
        dataset = _load(args)
    except (FileNotFoundError, ValueError) as exc:
        return error(str(exc))

    def on_epoch(record: dict[str, Any]) -> None:
        valid = record.get("valid") or {}
        shown = {k: round(v, 4) for k, v in valid.items() if k.startswith("recall@")}
        emit(json.dumps({"epoch": record["epoch"], "loss": record["loss"], "valid": shown}), sys.stderr)

    metrics = train_blocker(
        dataset,
        args.out,
        backbone=args.backbone,
        loss=args.loss,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        fields=args.fields,
        max_length=args.max_length,
        hard_negatives=args.hard_negatives,
        temperature=args.temperature,
        anchors_per_batch=args.anchors_per_batch,
        offers_per_anchor=args.offers_per_anchor,
        neighbour_k=args.neighbour_k,
        remine_each_epoch=args.remine,
        only_labelled_negatives=args.only_labelled_negatives,
        typo_augment=args.typo_augment,
        max_valid_queries=args.max_valid_queries,
        max_steps_per_epoch=args.max_steps_per_epoch,
        interpolation_alphas=tuple(args.interpolate),
        num_threads=args.threads,
        precision=args.precision,
        progress=not args.no_progress,
        on_epoch=on_epoch,
    )
    summary = {
        "out": str(args.out),
        "dataset": dataset.name,
        "loss": args.loss,
        "seed": args.seed,
        "best_epoch": metrics["best_epoch"],
        "valid": metrics.get("valid"),
        "valid_zero_shot": metrics.get("valid_zero_shot"),
        "train_seconds_total": metrics["train_seconds_total"],
        "history": [
            {"epoch": h["epoch"], "loss": h["loss"], "seconds": h["seconds"], "valid": h.get("valid")}
            for h in metrics["history"]
        ],
    }
    emit(json.dumps(summary, indent=2))
    return 0


# ---------------------------------------------------------------------------------- eval


def evaluate_blocker_task(
    task: Any,
    ks: list[int],
    encode: Any = None,
    noise_seeds: list[int] | None = None,
    lexical_workers: int = 1,
    hybrid: tuple[int, float, int] | None = None,
    lexical: str = "token-set",
) -> dict[str, Any]:
    """recall@k on clean (and optionally typo-noised) queries.

    ``encode=None`` evaluates a lexical baseline (``lexical``: ``"token-set"`` = rapidfuzz
    token_set_ratio, ``"bm25"``); ``hybrid=(pool, weight, lexical_candidates)`` is hybrid
    blocking as the service runs it (:mod:`models.hybrid_blocking`). The corpus is encoded once
    and shared by the clean and every noisy query set.
    """
    from models.bm25 import BM25
    from training.evaluate import bm25_recall, hybrid_recall, lexical_recall, recall_from_embeddings

    if lexical not in ("token-set", "bm25"):
        raise ValueError(f"lexical must be 'token-set' or 'bm25', got {lexical!r}")
    exclude = task.query_exclude or None
    out: dict[str, Any] = {}
    bm25 = BM25(task.corpus) if hybrid is not None and encode is not None else None

    def score(queries: list[str]) -> dict[str, float]:
        if encode is None and lexical == "bm25":
            return bm25_recall(queries, task.query_targets, task.corpus, ks, exclude)
        if encode is None:
            return lexical_recall(queries, task.query_targets, task.corpus, ks, lexical_workers, exclude)
        if bm25 is not None and hybrid is not None:
            pool, weight, extra = hybrid
            lex = bm25.scores(queries)
            q_emb = encode(queries)
            return hybrid_recall(q_emb, corpus_emb, lex, task.query_targets, ks, pool, weight, exclude, extra)
        return recall_from_embeddings(encode(queries), corpus_emb, task.query_targets, ks, exclude)

    corpus_emb = None if encode is None else encode(task.corpus)
    clean = score(task.queries)
    out.update({f"recall@{k}": clean[f"recall@{k}"] for k in ks})
    out["queries"] = int(clean["queries"])
    out["corpus_size"] = int(clean["corpus_size"])
    if noise_seeds:
        per_seed: dict[str, dict[str, float]] = {}
        for seed in noise_seeds:
            noisy = score(task.noisy_queries(seed))
            per_seed[str(seed)] = {f"recall@{k}": noisy[f"recall@{k}"] for k in ks}
        for k in ks:
            out[f"recall_noisy@{k}"] = float(np.mean([v[f"recall@{k}"] for v in per_seed.values()]))
        out["recall_noisy_per_seed"] = per_seed
    return out


def cmd_eval_blocker(args: argparse.Namespace) -> int:
    from models.artefacts import ManifestError
    from training.blocking_tasks import build_blocking_task

    _threads(args.threads)
    started = time.perf_counter()
    try:
        dataset = _load(args)
        task = build_blocking_task(dataset, args.split, args.fields)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        return error(str(exc))

    encode = None
    max_length: int | None = None
    hybrid: tuple[int, float, int] | None = None
    if args.hybrid:
        if args.lexical or args.bm25:
            return error("--hybrid fuses a model with BM25; it does not combine with --lexical or --bm25")
        hybrid = (
            DEFAULT_POOL if args.pool is None else args.pool,
            DEFAULT_LEXICAL_WEIGHT if args.lexical_weight is None else args.lexical_weight,
            DEFAULT_LEXICAL_CANDIDATES if args.lexical_candidates is None else args.lexical_candidates,
        )
        if hybrid[0] < 1 or hybrid[1] < 0 or hybrid[2] < 0:
            return error(
                "--pool must be >= 1, --lexical-weight and --lexical-candidates >= 0; "
                f"got {hybrid[0]}, {hybrid[1]} and {hybrid[2]}"
            )
    if args.lexical and args.bm25:
        return error("choose one of --lexical and --bm25")
    if args.bm25:
        label = BM25_LABEL
    elif args.lexical:
        label = LEXICAL
    elif args.model:
        try:
            model, manifest = load_model_folder(args.model, args.max_length)
        except (ManifestError, ValueError, FileNotFoundError) as exc:
            return error(str(exc))
        trained_fields = manifest.settings.get("fields")
        if trained_fields and list(trained_fields) != task.fields:
            logger.warning("model trained on fields %s, evaluated on %s", trained_fields, task.fields)
        label, max_length = str(args.model), model.max_length
        encode = model.encode
    else:
        from models.bi_encoder import BiEncoder

        max_length = args.max_length or ZERO_SHOT_MAX_LENGTH
        model = BiEncoder.from_pretrained("minilm", max_length=max_length)
        label, encode = ZERO_SHOT, model.encode

    seeds = args.noise_seeds if args.noise else None
    result: dict[str, Any] = {
        "model": label,
        "dataset": dataset.name,
        "split": args.split,
        "fields": task.fields,
        "max_length": max_length,
    }
    result.update(
        evaluate_blocker_task(
            task, sorted(set(args.k)), encode, seeds, hybrid=hybrid, lexical="bm25" if args.bm25 else "token-set"
        )
    )
    if hybrid is not None:
        result["hybrid"] = {"pool": hybrid[0], "lexical_weight": hybrid[1], "lexical_candidates": hybrid[2]}
    if seeds:
        result["noise"] = "typo-v1"
        result["noise_seeds"] = seeds
    result["queries_with_excluded_copies"] = sum(1 for e in task.query_exclude if e)
    result["seconds"] = round(time.perf_counter() - started, 2)
    if args.json:
        emit(json.dumps(result))
    else:
        ks = sorted(set(args.k))
        where = f"{dataset.name}/{args.split}"
        emit(f"{label} on {where}: {result['queries']} queries, corpus {result['corpus_size']}")
        emit("  clean: " + "  ".join(f"R@{k}={result[f'recall@{k}']:.3f}" for k in ks))
        if seeds:
            emit("  typo:  " + "  ".join(f"R@{k}={result[f'recall_noisy@{k}']:.3f}" for k in ks))
    return 0
