"""Matcher benchmark: vanilla vs typo-DA vs LEA cross-encoders, clean and typo-noised test F1.

Quality mode (default): for every dataset x variant x seed, trains a matcher with
``training.train_matcher`` (METHODS §9.4 recipe unless overridden), evaluates it with
``training.eval_matcher`` on the clean test split and on the typo-noised copies (METHODS §1.3,
same threshold), and writes all settings, per-run numbers, train time and hardware to JSON; a
Markdown table with means and per-seed values beside the anchors of METHODS §9.4 goes to stdout.

Speed mode (``--speed``): pairs/s of the LEA vs the vanilla MiniLM cross-encoder forward on the
same batches of k = 10 and k = 50 candidate pairs (one offer against k catalogue products), with
and without the collator, medians of interleaved repeats, on ``--threads`` threads.

    python benchmarks/bench_matcher.py --datasets abt-buy --variants vanilla --seeds 1 \\
        --epochs 1 --max-train-pairs 300 --noise-seeds 1 --out benchmarks/out/matcher_smoke.json
    python benchmarks/bench_matcher.py            # every cell in one process; resumable: benchmarks/protocol.py
    python benchmarks/bench_matcher.py --speed --datasets abt-buy

The two modes write separate sections (``runs``/``summary`` and ``speed``) of the same ``--out``
file; running one mode keeps the other's section if the file exists.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # allow `python benchmarks/bench_matcher.py` from a checkout
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.common import OUT, git_rev, machine  # noqa: E402
from benchmarks.protocol import DATASETS, load_protocol_dataset  # noqa: E402
from training.data.records import PairDataset  # noqa: E402
from training.data.typos import P_SIDE, TYPO_VERSION  # noqa: E402

logger = logging.getLogger("bench_matcher")


# METHODS §9.4, our measured baselines (MiniLM, title only, 8 epochs, typo-v0 DA, 2 seeds, H200).
# F1 in percent: valid, clean test, noisy test, per-seed clean, per-seed noisy.
ANCHORS_94: dict[str, dict[str, dict[str, Any]]] = {
    "abt-buy": {
        "vanilla": {"valid": 79.72, "clean": 77.73, "noisy": 45.13, "clean_seeds": [77.88, 77.58],
                    "noisy_seeds": [46.90, 43.37]},
        "vanilla+typo": {"valid": 79.27, "clean": 77.22, "noisy": 66.36, "clean_seeds": [78.16, 76.28],
                         "noisy_seeds": [63.52, 69.19]},
    },
    "amazon-google": {
        "vanilla": {"valid": 69.42, "clean": 71.19, "noisy": 39.31, "clean_seeds": [70.06, 72.32],
                    "noisy_seeds": [36.96, 41.67]},
        "vanilla+typo": {"valid": 65.26, "clean": 68.62, "noisy": 54.77, "clean_seeds": [68.26, 68.98],
                         "noisy_seeds": [54.80, 54.73]},
    },
    "wdc-computers-medium": {
        "vanilla": {"valid": 87.74, "clean": 84.72, "noisy": 66.47, "clean_seeds": [85.32, 84.13],
                    "noisy_seeds": [67.63, 65.31]},
        "vanilla+typo": {"valid": 87.28, "clean": 79.10, "noisy": 72.25, "clean_seeds": [78.37, 79.83],
                         "noisy_seeds": [71.53, 72.97]},
    },
}  # fmt: skip
# METHODS §9.1 (LEA paper, Table 3), BERT-medium noisy F1: context only, not like-for-like.
ANCHORS_LEA_PAPER: dict[str, dict[str, float]] = {
    "abt-buy": {"bert-medium+DA": 67.08, "bert-medium+LEA": 73.19},
    "amazon-google": {"bert-medium+DA": 53.41, "bert-medium+LEA": 69.30},
    "wdc-computers-medium": {"bert-medium+DA": 76.25, "bert-medium+LEA": 79.51},
}


def parse_variant(name: str) -> tuple[str, str | None]:
    """``"lea+typo"`` -> ``("lea", "typo")``; ``"vanilla"`` -> ``("vanilla", None)``."""
    arch, _, augment = name.partition("+")
    if arch not in ("lea", "vanilla") or augment not in ("", "typo"):
        raise argparse.ArgumentTypeError(f"unknown variant {name!r}: use vanilla, vanilla+typo, lea, lea+typo")
    return arch, augment or None


def _csv(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def _ints(text: str) -> list[int]:
    return [int(p) for p in _csv(text)]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", type=_csv, default=_csv("abt-buy,amazon-google,wdc-computers-medium"))
    p.add_argument("--variants", type=_csv, default=_csv("vanilla,vanilla+typo,lea+typo"))
    p.add_argument("--seeds", type=_ints, default=[1, 2])
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--noise-seeds", type=_ints, default=[1, 2, 3])
    p.add_argument("--max-train-pairs", type=int, default=None)
    p.add_argument("--fields", default="title", choices=("title", "all"))
    p.add_argument("--backbone", default="minilm")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--calibration", default="temperature", choices=("temperature", "isotonic"))
    p.add_argument("--threads", type=int, default=None, help="torch threads (speed mode default: 2)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "matcher.json")
    p.add_argument("--work", type=Path, default=OUT / "matcher", help="where the trained model folders go")
    p.add_argument("--speed", action="store_true", help="measure LEA vs vanilla pairs/s instead of training")
    p.add_argument("--ks", type=_ints, default=[10, 50], help="speed mode: candidates per batch")
    p.add_argument("--repeats", type=int, default=15, help="speed mode: interleaved repeats")
    p.add_argument("--speed-batches", type=int, default=4, help="speed mode: distinct offers (batches) per k")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    for name in args.datasets:
        if name not in DATASETS:
            p.error(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    for v in args.variants:
        try:
            parse_variant(v)
        except argparse.ArgumentTypeError as exc:
            p.error(str(exc))
    return args


def load(name: str) -> PairDataset:
    return load_protocol_dataset(name)


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f}"


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


# --------------------------------------------------------------------------------------------
# Quality mode
# --------------------------------------------------------------------------------------------


def run_quality(args: argparse.Namespace) -> dict[str, Any]:
    from training.eval_matcher import evaluate_matcher
    from training.train_matcher import train_matcher

    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    runs: list[dict[str, Any]] = []
    section: dict[str, Any] = {
        "started": started,
        "settings": {
            "datasets": {n: {"path": DATASETS[n].path, "format": DATASETS[n].fmt, **DATASETS[n].reader_kwargs,
                             "title_field": DATASETS[n].title_field} for n in args.datasets},
            "variants": args.variants,
            "seeds": args.seeds,
            "epochs": args.epochs,
            "noise_seeds": args.noise_seeds,
            "noise": TYPO_VERSION,
            "typo_da": TYPO_VERSION,
            "p_side": P_SIDE,
            "max_train_pairs": args.max_train_pairs,
            "fields": args.fields,
            "backbone": args.backbone,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "weight_decay": 0.01,
            "warmup_ratio": 0.1,
            "max_length": args.max_length,
            "calibration": args.calibration,
            "threads": args.threads,
        },
        "runs": runs,
    }  # fmt: skip
    for ds_name in args.datasets:
        dataset = load(ds_name)
        for variant in args.variants:
            arch, augment = parse_variant(variant)
            for seed in args.seeds:
                folder = args.work / ds_name / variant / f"seed{seed}"
                logger.info("=== %s / %s / seed %d -> %s", ds_name, variant, seed, folder)
                t0 = time.perf_counter()
                summary = train_matcher(
                    dataset,
                    folder,
                    arch=arch,
                    backbone=args.backbone,
                    augment=augment,
                    fields=args.fields,
                    epochs=args.epochs,
                    batch_size=args.batch_size,
                    lr=args.lr,
                    max_length=args.max_length,
                    seed=seed,
                    calibration=args.calibration,
                    max_train_pairs=args.max_train_pairs,
                    threads=args.threads,
                    progress=not args.no_progress,
                )
                t1 = time.perf_counter()
                ev = evaluate_matcher(folder, dataset, "test", noise_seeds=args.noise_seeds)
                t2 = time.perf_counter()
                runs.append(
                    {
                        "dataset": ds_name,
                        "variant": variant,
                        "arch": arch,
                        "augment": augment,
                        "seed": seed,
                        "folder": str(folder),
                        "train_pairs": summary["train_pairs"],
                        "best_epoch": summary["best_epoch"],
                        "valid_f1": summary["valid_f1"],
                        "threshold": summary["threshold"],
                        "f1_clean": ev["f1_clean"],
                        "precision": ev["precision"],
                        "recall": ev["recall"],
                        "pr_auc": ev["pr_auc"],
                        "f1_noisy": ev["f1_noisy"],
                        "f1_noisy_per_seed": ev["f1_noisy_per_seed"],
                        "test_pairs": ev["pairs"],
                        "train_seconds": summary["train_seconds"],
                        "train_and_save_seconds": t1 - t0,
                        "eval_seconds": t2 - t1,
                        "history": summary["history"],
                    }
                )
                section["summary"] = summarise(runs)
                yield_partial(args, section)
                logger.info(
                    "%s / %s / seed %d: valid %.4f clean %.4f noisy %s (%.0fs train, %.0fs eval)",
                    ds_name,
                    variant,
                    seed,
                    summary["valid_f1"],
                    ev["f1_clean"],
                    "–" if ev["f1_noisy"] is None else f"{ev['f1_noisy']:.4f}",
                    t1 - t0,
                    t2 - t1,
                )
    section["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    section["summary"] = summarise(runs)
    return section


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and per-seed values per (dataset, variant), in run order."""
    keys: list[tuple[str, str]] = []
    for r in runs:
        if (r["dataset"], r["variant"]) not in keys:
            keys.append((r["dataset"], r["variant"]))
    out = []
    for ds, variant in keys:
        rs = [r for r in runs if r["dataset"] == ds and r["variant"] == variant]
        noisy = [r["f1_noisy"] for r in rs if r["f1_noisy"] is not None]
        out.append(
            {
                "dataset": ds,
                "variant": variant,
                "seeds": [r["seed"] for r in rs],
                "valid_f1": _mean([r["valid_f1"] for r in rs]),
                "f1_clean": _mean([r["f1_clean"] for r in rs]),
                "f1_noisy": _mean(noisy),
                "f1_clean_per_seed": [r["f1_clean"] for r in rs],
                "f1_noisy_per_seed": noisy,
                "train_seconds_mean": _mean([r["train_seconds"] for r in rs]),
                "anchor_94": ANCHORS_94.get(ds, {}).get(variant),
                "anchor_lea_paper_noisy": ANCHORS_LEA_PAPER.get(ds),
            }
        )
    return out


def quality_table(summary: list[dict[str, Any]]) -> str:
    lines = [
        "| dataset | variant | valid F1 | clean test F1 | noisy test F1 | per-seed clean / noisy "
        "| anchor §9.4 valid / clean / noisy | train s/run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in summary:
        per_seed = ", ".join(_pct(x) for x in row["f1_clean_per_seed"])
        per_seed += " / " + (", ".join(_pct(x) for x in row["f1_noisy_per_seed"]) or "–")
        anchor = row["anchor_94"]
        if anchor:
            anchor_txt = f"{anchor['valid']:.2f} / {anchor['clean']:.2f} / {anchor['noisy']:.2f}"
        elif row["variant"].startswith("lea") and row["anchor_lea_paper_noisy"]:
            paper = row["anchor_lea_paper_noisy"]
            anchor_txt = f"none (paper §9.1 BERT-medium+LEA noisy {paper['bert-medium+LEA']:.2f})"
        else:
            anchor_txt = "none"
        lines.append(
            f"| {DATASETS[row['dataset']].label} | {row['variant']} | {_pct(row['valid_f1'])} "
            f"| {_pct(row['f1_clean'])} | {_pct(row['f1_noisy'])} | {per_seed} | {anchor_txt} "
            f"| {row['train_seconds_mean']:.0f} |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Speed mode
# --------------------------------------------------------------------------------------------


def speed_batches(dataset: PairDataset, k: int, n_batches: int, seed: int = 0) -> list[list[tuple[str, str]]]:
    """``n_batches`` lists of k pairs: one test offer against k catalogue products (seeded)."""
    from models.product_text import serialize

    rng = random.Random(seed)
    test = dataset.split("test")
    rights = list(dataset.right_table.values()) if dataset.right_table else [p.right for p in test]
    batches = []
    for i in rng.sample(range(len(test)), n_batches):
        left = serialize(test[i].left, "title")
        cands = [test[i].right] + rng.sample(rights, k - 1)
        batches.append([(left, serialize(r, "title")) for r in cands])
    return batches


def run_speed(args: argparse.Namespace) -> dict[str, Any]:
    from models.lea import LeaCrossEncoder

    threads = args.threads or 2
    torch.set_num_threads(threads)
    dataset = load(args.datasets[0])
    models = {}
    for arch in ("vanilla", "lea"):
        torch.manual_seed(0)
        models[arch] = LeaCrossEncoder.from_pretrained(args.backbone, lea=arch == "lea", max_length=args.max_length)
        models[arch].eval()
    results: dict[str, Any] = {
        "threads": threads,
        "backbone": args.backbone,
        "dataset": args.datasets[0],
        "repeats": args.repeats,
        "batches_per_k": args.speed_batches,
        "max_length": args.max_length,
        "loadavg_before": list(os.getloadavg()),
        "k": {},
    }
    for k in args.ks:
        batches = speed_batches(dataset, k, args.speed_batches)
        pre = {arch: [m.collator(b) for b in batches] for arch, m in models.items()}
        times: dict[tuple[str, str], list[float]] = {
            (arch, mode): [] for arch in models for mode in ("forward", "collate+forward", "collate")
        }
        with torch.inference_mode():
            for arch, m in models.items():  # warm-up
                for b in pre[arch]:
                    m.batch_forward(b)
            for rep in range(args.repeats):
                archs = ["vanilla", "lea"] if rep % 2 == 0 else ["lea", "vanilla"]  # interleave, alternate order
                for j, raw in enumerate(batches):
                    for arch in archs:
                        m = models[arch]
                        t0 = time.perf_counter()
                        m.batch_forward(pre[arch][j])
                        t1 = time.perf_counter()
                        b = m.collator(raw)
                        t2 = time.perf_counter()
                        m.batch_forward(b)
                        t3 = time.perf_counter()
                        times[(arch, "forward")].append(t1 - t0)
                        times[(arch, "collate")].append(t2 - t1)
                        times[(arch, "collate+forward")].append(t3 - t1)
        row: dict[str, Any] = {}
        for arch in models:
            row[arch] = {
                "forward_pairs_per_s": k / statistics.median(times[(arch, "forward")]),
                "collate_forward_pairs_per_s": k / statistics.median(times[(arch, "collate+forward")]),
                "forward_ms_median": 1000 * statistics.median(times[(arch, "forward")]),
                "collate_ms_median": 1000 * statistics.median(times[(arch, "collate")]),
                "collate_forward_ms_median": 1000 * statistics.median(times[(arch, "collate+forward")]),
            }
        row["lea_over_vanilla_forward"] = row["lea"]["forward_pairs_per_s"] / row["vanilla"]["forward_pairs_per_s"]
        row["lea_over_vanilla_collate_forward"] = (
            row["lea"]["collate_forward_pairs_per_s"] / row["vanilla"]["collate_forward_pairs_per_s"]
        )
        results["k"][str(k)] = row
        logger.info("k=%d: %s", k, json.dumps(row))
    results["loadavg_after"] = list(os.getloadavg())
    return results


def speed_table(speed: dict[str, Any]) -> str:
    lines = [
        f"Speed, {speed['backbone']}, {speed['threads']} threads, max length {speed['max_length']}, "
        f"median of {speed['repeats']} interleaved repeats x {speed['batches_per_k']} batches",
        "",
        "| k | model | forward pairs/s | collator + forward pairs/s | collator ms / batch |",
        "|---|---|---|---|---|",
    ]
    for k, row in speed["k"].items():
        for arch in ("vanilla", "lea"):
            r = row[arch]
            lines.append(
                f"| {k} | {arch} | {r['forward_pairs_per_s']:.0f} | {r['collate_forward_pairs_per_s']:.0f} "
                f"| {r['collate_ms_median']:.2f} |"
            )
        lines.append(
            f"| {k} | LEA / vanilla | {row['lea_over_vanilla_forward']:.2f}x "
            f"| {row['lea_over_vanilla_collate_forward']:.2f}x | |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


def _write(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)


def _base(args: argparse.Namespace) -> dict[str, Any]:
    existing: dict[str, Any] = {}
    if args.out.exists():
        try:
            existing = json.loads(args.out.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            logger.warning("%s is not valid JSON; overwriting it", args.out)
    existing.update(
        {
            "benchmark": "matcher",
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "git": git_rev(),
            "machine": machine(),
        }
    )
    return existing


def yield_partial(args: argparse.Namespace, section: dict[str, Any]) -> None:
    """Write the quality section after every run, so an interrupted benchmark keeps its results."""
    payload = _base(args)
    payload["command"] = " ".join(sys.argv)
    payload["quality"] = section
    _write(args.out, payload)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.threads is not None and not args.speed:
        torch.set_num_threads(args.threads)
    if args.speed:
        speed = run_speed(args)
        payload = _base(args)
        payload["speed_command"] = " ".join(sys.argv)
        payload["speed"] = speed
        _write(args.out, payload)
        print(speed_table(speed))
    else:
        section = run_quality(args)
        yield_partial(args, section)
        print(quality_table(section["summary"]))
        print(
            f"\nF1 in percent; noisy = mean over {TYPO_VERSION} copies {args.noise_seeds}; "
            f"{args.epochs} epochs; seeds {args.seeds}; max_train_pairs {args.max_train_pairs}"
        )
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
