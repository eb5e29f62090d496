"""Blocking benchmark: zero-shot MiniLM, token_set_ratio, MNRL and Block-SCL (recall@k, clean + typos).

For every dataset: evaluates the packaged zero-shot MiniLM (max length 256, the METHODS §9.5
setting) and the rapidfuzz ``token_set_ratio`` baseline, then trains MNRL and Block-SCL blockers
per seed on the train split (best epoch by validation recall), and evaluates everything on the
test split with the §9.5 protocol, on clean queries and on typo-v1 noisy queries (one copy per
noise seed). Writes one JSON file with all settings, seeds, hardware, timings and per-seed
values (after every run, so an interrupted run can ``--resume``), and prints a Markdown table.

Example (CPU, about an hour per seed on 2 cores)::

    .venv/bin/python benchmarks/bench_blocker.py \\
        --datasets abt-buy,amazon-google,wdc-block-small,wdc-products --seeds 1,2 --epochs 3 \\
        --methods zero-shot,lexical,mnrl,block-scl --noise-seeds 1,2,3 \\
        --out benchmarks/results/blocker.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from models.bi_encoder import BiEncoder  # noqa: E402
from models.bm25 import BM25  # noqa: E402
from models.hybrid_blocking import DEFAULT_LEXICAL_CANDIDATES, DEFAULT_LEXICAL_WEIGHT, DEFAULT_POOL  # noqa: E402
from training.blocking_tasks import build_blocking_task, load_blocking_dataset  # noqa: E402
from training.cli import evaluate_blocker_task, load_model_folder  # noqa: E402
from training.data.readers import data_root  # noqa: E402
from training.train_blocker import train_blocker  # noqa: E402

logger = logging.getLogger("bench_blocker")

#: Benchmark name -> (folder under the data root, reader format).
DATASETS: dict[str, tuple[str, str]] = {
    "abt-buy": ("abt-buy", "deepmatcher"),
    "amazon-google": ("amazon-google", "deepmatcher"),
    "wdc-block-small": ("wdc-block-small", "wdc-block"),
    "wdc-products": ("wdc-products-80cc20rnd", "wdc-products"),
}
METHODS = (
    "zero-shot",
    "lexical",
    "bm25",
    "mnrl",
    "block-scl",
    "block-scl-wise",
    "zero-shot-hybrid",
    "block-scl-hybrid",
)
TRAINED = ("mnrl", "block-scl", "block-scl-wise", "block-scl-hybrid")
#: Trained method -> (loss, weight interpolation with the zero-shot start chosen on validation).
LOSS_OF = {"mnrl": ("mnrl", False), "block-scl": ("block-scl", False), "block-scl-wise": ("block-scl", True)}
ZERO_SHOT_MAX_LENGTH = 256
TARGET_DATASETS = ("abt-buy", "amazon-google")


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", type=_names, default=list(DATASETS))
    p.add_argument("--methods", type=_names, default=list(METHODS))
    p.add_argument("--seeds", type=_ints, default=[1, 2])
    p.add_argument("--noise-seeds", type=_ints, default=[1, 2, 3])
    p.add_argument("--ks", type=_ints, default=[1, 5, 10, 20, 50])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--max-length", type=int, default=64, help="training/eval length of the trained blockers")
    p.add_argument("--temperature", type=float, default=0.07)
    p.add_argument("--anchors-per-batch", type=int, default=32)
    p.add_argument("--offers-per-anchor", type=int, default=2)
    p.add_argument("--hard-negatives", type=int, default=4)
    p.add_argument("--neighbour-k", type=int, default=20)
    p.add_argument("--scale", type=float, default=20.0)
    p.add_argument("--typo-augment", type=float, default=0.0, help="typo DA share of training texts")
    p.add_argument("--max-valid-queries", type=int, default=500)
    p.add_argument("--max-steps-per-epoch", type=int, default=None, help="CPU budget cap per epoch")
    p.add_argument(
        "--interpolation-alphas",
        type=lambda t: tuple(float(x) for x in t.split(",") if x.strip()),
        default=(0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
        help="block-scl-wise: trained-weight shares tried on validation (WiSE-FT)",
    )
    p.add_argument("--zero-shot-max-length", type=int, default=ZERO_SHOT_MAX_LENGTH)
    p.add_argument(
        "--hybrid-base",
        choices=["block-scl", "block-scl-wise"],
        default="block-scl-wise",
        help="block-scl-hybrid: the trained blocker whose dense pool BM25 re-scores (reused from --models-dir)",
    )
    p.add_argument("--hybrid-pool", type=int, default=DEFAULT_POOL)
    p.add_argument("--hybrid-lexical-candidates", type=int, default=DEFAULT_LEXICAL_CANDIDATES)
    p.add_argument("--hybrid-weight", type=float, default=DEFAULT_LEXICAL_WEIGHT)
    p.add_argument(
        "--hybrid-grid",
        type=lambda t: [float(x) for x in t.split(",") if x.strip()],
        default=[0.0, 0.1, 0.2, 0.3, 0.5],
        help="hybrid weights also scored on the valid and test splits (clean), for the record",
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "blocker.json")
    p.add_argument("--models-dir", type=Path, default=REPO / "benchmarks" / "out" / "blocker-models")
    p.add_argument("--resume", action="store_true", help="keep finished entries of --out and skip them")
    p.add_argument("--markdown", type=Path, default=None, help="also write the table to this file")
    args = p.parse_args(argv)
    unknown = [d for d in args.datasets if d not in DATASETS]
    if unknown:
        p.error(f"unknown datasets {unknown}; choose from {list(DATASETS)}")
    bad = [m for m in args.methods if m not in METHODS]
    if bad:
        p.error(f"unknown methods {bad}; choose from {list(METHODS)}")
    return args


def hardware() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }


def _save(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2, sort_keys=False), encoding="utf-8")
    os.replace(tmp, path)


def _train_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "max_length": args.max_length,
        "hard_negatives": args.hard_negatives,
        "temperature": args.temperature,
        "anchors_per_batch": args.anchors_per_batch,
        "offers_per_anchor": args.offers_per_anchor,
        "neighbour_k": args.neighbour_k,
        "scale": args.scale,
        "typo_augment": args.typo_augment,
        "max_valid_queries": args.max_valid_queries,
        "max_steps_per_epoch": args.max_steps_per_epoch,
        "eval_before_training": False,
        "num_threads": args.threads,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    results: dict[str, Any] = {}
    if args.resume and args.out.exists():
        results = json.loads(args.out.read_text(encoding="utf-8"))
    results.setdefault("runs", {})
    results["settings"] = {
        "datasets": args.datasets,
        "methods": args.methods,
        "seeds": args.seeds,
        "noise": "typo-v1, queries only, Random(seed*7919 + i)",
        "noise_seeds": args.noise_seeds,
        "ks": args.ks,
        "zero_shot_max_length": args.zero_shot_max_length,
        "train": _train_options(args),
        "interpolation_alphas": list(args.interpolation_alphas),
        "hybrid": {
            "base": args.hybrid_base,
            "pool": args.hybrid_pool,
            "lexical_candidates": args.hybrid_lexical_candidates,
            "weight": args.hybrid_weight,
            "grid": args.hybrid_grid,
        },
        "data_root": str(data_root()),
    }
    results.setdefault("commands", []).append(" ".join(["python", *sys.argv]))
    results["hardware"] = hardware()
    results.setdefault("started_at", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    runs: dict[str, Any] = results["runs"]

    for name in args.datasets:
        folder, fmt = DATASETS[name]
        dataset = load_blocking_dataset(data_root() / folder, fmt)
        task = build_blocking_task(dataset, "test")
        runs.setdefault(name, {})["task"] = task.describe()
        runs[name]["data"] = {"folder": folder, "format": fmt, "splits": dataset.stats()}
        entry = runs[name]
        for method in args.methods:
            seeds = args.seeds if method in TRAINED else [None]
            for seed in seeds:
                key = method if seed is None else f"{method}/seed{seed}"
                if key in entry and "recall@1" in entry[key]:
                    logger.info("%s %s: done already, skipped", name, key)
                    continue
                logger.info("=== %s: %s", name, key)
                record = _run_one(args, dataset, task, name, method, seed)
                entry[key] = record
                _save(args.out, results)
                logger.info("%s %s: %s", name, key, {k: v for k, v in record.items() if k.startswith("recall@")})
    results["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    results["summary"] = summarise(results, args)
    _save(args.out, results)
    return results


def _run_one(
    args: argparse.Namespace, dataset: Any, task: Any, name: str, method: str, seed: int | None
) -> dict[str, Any]:
    started = time.perf_counter()
    record: dict[str, Any] = {"method": method, "seed": seed}
    if method in ("lexical", "bm25"):
        lexical = "bm25" if method == "bm25" else "token-set"
        record.update(
            evaluate_blocker_task(task, args.ks, None, args.noise_seeds, lexical_workers=args.threads, lexical=lexical)
        )
    elif method == "zero-shot":
        model = BiEncoder.from_pretrained("minilm", max_length=args.zero_shot_max_length)
        record["max_length"] = args.zero_shot_max_length
        record.update(evaluate_blocker_task(task, args.ks, model.encode, args.noise_seeds))
    elif method == "zero-shot-hybrid":
        model = BiEncoder.from_pretrained("minilm", max_length=args.zero_shot_max_length)
        record["max_length"] = args.zero_shot_max_length
        record.update(_hybrid_record(args, dataset, task, model.encode))
    else:
        assert seed is not None
        base = args.hybrid_base if method == "block-scl-hybrid" else method
        out_dir = args.models_dir / f"{name}-{base}-seed{seed}"
        if method == "block-scl-hybrid" and (out_dir / "manifest.json").exists():
            logger.info("%s: reusing the trained %s blocker in %s", name, base, out_dir)
            record.update(_hybrid_record(args, dataset, task, load_model_folder(out_dir)[0].encode))
            record["base"], record["model_dir"] = base, str(out_dir)
            record["seconds"] = round(time.perf_counter() - started, 2)
            return record
        metrics = train_blocker(
            dataset,
            out_dir,
            backbone="minilm",
            loss=LOSS_OF[base][0],
            seed=seed,
            interpolation_alphas=args.interpolation_alphas if LOSS_OF[base][1] else (1.0,),
            **_train_options(args),
        )
        record["train_seconds"] = metrics["train_seconds_total"]
        record["best_epoch"] = metrics["best_epoch"]
        record["valid"] = metrics.get("valid")
        record["history"] = [
            {
                "epoch": h["epoch"],
                "loss": h["loss"],
                "train_seconds": h["train_seconds"],
                "valid": {k: v for k, v in (h.get("valid") or {}).items() if k.startswith("recall@")},
            }
            for h in metrics["history"]
        ]
        record["steps_per_epoch"] = metrics["steps_per_epoch"]
        record["model_dir"] = str(out_dir)
        model, _ = load_model_folder(out_dir)
        record["max_length"] = model.max_length
        eval_start = time.perf_counter()
        if method == "block-scl-hybrid":
            record["base"] = base
            record.update(_hybrid_record(args, dataset, task, model.encode))
        else:
            record.update(evaluate_blocker_task(task, args.ks, model.encode, args.noise_seeds))
        record["eval_seconds"] = round(time.perf_counter() - eval_start, 2)
    record["seconds"] = round(time.perf_counter() - started, 2)
    return record


def _hybrid_record(args: argparse.Namespace, dataset: Any, task: Any, encode: Any) -> dict[str, Any]:
    """Hybrid blocking at the service's settings (clean + noisy), plus the weight grid.

    The grid is scored on the valid split (what the default weight was chosen on) and on the
    test split, clean queries only, so the table shows how much the choice matters.
    """
    from training.evaluate import hybrid_recall

    hybrid = (args.hybrid_pool, args.hybrid_weight, args.hybrid_lexical_candidates)
    record: dict[str, Any] = {"pool": hybrid[0], "weight": hybrid[1], "lexical_candidates": hybrid[2]}
    record.update(evaluate_blocker_task(task, args.ks, encode, args.noise_seeds, hybrid=hybrid))
    grid: dict[str, Any] = {}
    for split, split_task in (("valid", build_blocking_task(dataset, "valid")), ("test", task)):
        corpus_emb, query_emb = encode(split_task.corpus), encode(split_task.queries)
        lexical = BM25(split_task.corpus).scores(split_task.queries)
        exclude = split_task.query_exclude or None
        grid[split] = {
            str(w): {
                k: v
                for k, v in hybrid_recall(
                    query_emb, corpus_emb, lexical, split_task.query_targets, args.ks, hybrid[0], w, exclude, hybrid[2]
                ).items()
                if k.startswith("recall@")
            }
            for w in args.hybrid_grid
        }
    record["grid"] = grid
    return record


# ------------------------------------------------------------------------------ summary


def _per_method(entry: dict[str, Any], method: str) -> list[dict[str, Any]]:
    return [v for k, v in entry.items() if k == method or k.startswith(f"{method}/seed")]


def _mean(records: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in records if key in r]
    return float(np.mean(values)) if values else None


def summarise(results: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Means over seeds per dataset and method, and the issue's targets."""
    ks = args.ks
    summary: dict[str, Any] = {}
    for name, entry in results["runs"].items():
        per: dict[str, Any] = {}
        for method in METHODS:
            recs = _per_method(entry, method)
            if not recs:
                continue
            row: dict[str, Any] = {"n_seeds": len(recs)}
            for k in ks:
                row[f"recall@{k}"] = _mean(recs, f"recall@{k}")
                row[f"recall_noisy@{k}"] = _mean(recs, f"recall_noisy@{k}")
            clean = [row[f"recall@{k}"] for k in ks]
            noisy = [row[f"recall_noisy@{k}"] for k in ks]
            if all(v is not None for v in clean + noisy):
                row["mean_drop"] = float(np.mean([c - n for c, n in zip(clean, noisy)]))
            if method in TRAINED:
                row["train_seconds_mean"] = _mean(recs, "train_seconds")
            per[method] = row
        summary[name] = {"methods": per, "targets": _targets(name, per, ks)}
    return summary


def _targets(name: str, per: dict[str, Any], ks: list[int]) -> dict[str, Any]:
    """The issue's targets for every Block-SCL variant that ran, against zero-shot MiniLM."""
    out: dict[str, Any] = {}
    zs = per.get("zero-shot")
    if not zs:
        return out
    for method in ("block-scl", "block-scl-wise", "block-scl-hybrid"):
        bs = per.get(method)
        if not bs:
            continue
        if name in TARGET_DATASETS:
            if 5 in ks:
                out[f"{method} recall@5 >= 0.97"] = bs["recall@5"] >= 0.97
            if 20 in ks:
                out[f"{method} recall@20 >= 0.995"] = bs["recall@20"] >= 0.995
        out[f"{method} > zero-shot at every k"] = all(bs[f"recall@{k}"] > zs[f"recall@{k}"] for k in ks)
        out[f"{method} >= zero-shot at every k"] = all(bs[f"recall@{k}"] >= zs[f"recall@{k}"] for k in ks)
        if "mean_drop" in bs and "mean_drop" in zs:
            out[f"{method} smaller typo drop than zero-shot"] = bs["mean_drop"] < zs["mean_drop"]
    return out


def markdown(results: dict[str, Any], args: argparse.Namespace) -> str:
    ks = args.ks
    lines: list[str] = []
    head = " | ".join(f"R@{k}" for k in ks)
    lines.append(f"| dataset | method | {head} | {head.replace('R@', 'typo R@')} | mean drop | train s/run |")
    lines.append("|" + "---|" * (2 * len(ks) + 4))
    summary = results.get("summary") or summarise(results, args)
    for name, block in summary.items():
        for method, row in block["methods"].items():
            clean = " | ".join(_fmt(row[f"recall@{k}"]) for k in ks)
            noisy = " | ".join(_fmt(row[f"recall_noisy@{k}"]) for k in ks)
            train = _fmt(row.get("train_seconds_mean"), 0) if method in TRAINED else "-"
            label = method + (f" (mean of {row['n_seeds']})" if method in TRAINED else "")
            lines.append(f"| {name} | {label} | {clean} | {noisy} | {_fmt(row.get('mean_drop'))} | {train} |")
        for method in TRAINED:
            for rec in _per_method(results["runs"][name], method):
                clean = " | ".join(_fmt(rec.get(f"recall@{k}")) for k in ks)
                noisy = " | ".join(_fmt(rec.get(f"recall_noisy@{k}")) for k in ks)
                drop = np.mean([rec[f"recall@{k}"] - rec[f"recall_noisy@{k}"] for k in ks])
                label = f"&nbsp;&nbsp;{method} seed {rec['seed']} (best epoch {rec.get('best_epoch')})"
                train = _fmt(rec.get("train_seconds"), 0)
                lines.append(f"| {name} | {label} | {clean} | {noisy} | {_fmt(float(drop))} | {train} |")
    lines.append("")
    for name, block in summary.items():
        for target, met in block["targets"].items():
            lines.append(f"- {name}: {target}: {'met' if met else 'MISSED'}")
    return "\n".join(lines)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    results = run(args)
    table = markdown(results, args)
    print(table)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(table + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
