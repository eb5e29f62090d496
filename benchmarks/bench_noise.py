"""Noise-aware matcher training benchmark: flipped train labels, naive vs detection (issue 5).

On one DeepMatcher folder (default Abt-Buy), ``--flip-rates`` of the **train** labels are
flipped uniformly at random with ``--flip-seed`` (validation and test stay clean). For the clean
labels and every flip rate the matcher is trained naively; for every flip rate it is trained
again with each noise-detection variant of ``--detectors`` (``method:action[:warmup]``, e.g.
``bmm:downweight:2``). Every model is scored on the clean test split at its clean-validation
threshold (METHODS §0), and the detector's last report is checked against the known flips
(precision / recall of the flags).

Target of the issue, per flip rate: ``F1_detect - F1_naive >= 0.5 * (F1_clean - F1_naive)``
("recovers at least half of the F1 lost to the noise").

    # smoke run
    python benchmarks/bench_noise.py --epochs 2 --max-train-pairs 300 --flip-rates 0.2 \\
        --detectors bmm:relabel --runs detect:bmm-relabel@0.2 --out benchmarks/out/noise_smoke.json
    # the reduced CPU protocol of docs/benchmarks/noise.md (the defaults; 7 of the 9 runs were run)
    python benchmarks/bench_noise.py --out benchmarks/results/noise.json --runs clean,naive@0.2,\\
detect:bmm-relabel@0.2,detect:bmm-downweight-w1@0.2,detect:bmm-downweight-w2@0.2,naive@0.4,detect:bmm-downweight-w2@0.4
    # METHODS §9.4-sized (8 epochs, all pairs), for a GPU or an idle machine
    python benchmarks/bench_noise.py --arch vanilla --lr 5e-5 --epochs 8 --max-train-pairs 0 --max-length 64 \\
        --threads 0 --detectors bmm:downweight:3,bmm:relabel:3 --out benchmarks/results/noise_full.json

Defaults (the reduced CPU protocol): LEA cross-encoder, title only, max length 48, lr 1e-4, 3 epochs
on a stratified 2,000-pair train subsample (seed 0), training seed 1, flip seed 0, beta-mixture
detection handled by relabelling (warm-up 1 epoch, the trainer's default for 3 epochs) and by
down-weighting (warm-up 1 and 2 epochs), one torch thread.

Results are written after every training run, so an interrupted benchmark keeps what it has;
``--resume`` keeps the runs already in ``--out`` when the settings (other than the detectors) match.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # allow `python benchmarks/bench_noise.py` from a checkout
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.common import OUT, git_rev, machine  # noqa: E402
from training.data.readers import load_dataset  # noqa: E402
from training.data.records import PairDataset  # noqa: E402
from training.eval_matcher import evaluate_matcher  # noqa: E402
from training.noise import flip_labels  # noqa: E402
from training.train_matcher import subsample_indices, train_matcher  # noqa: E402

logger = logging.getLogger("bench_noise")


def _floats(text: str) -> list[float]:
    return [float(p) for p in text.split(",") if p.strip()]


def _detectors(text: str) -> list[tuple[str, str]]:
    """``method:action[:warmup[:flags]]`` items; the warm-up (epochs) overrides ``--noise-warmup``;
    flag ``d``: only pairs the model also misclassifies are flagged (``require_disagreement``);
    flag ``r``: detect once after the warm-up, then retrain a fresh model (``restart``);
    flag ``h``: handle the 0/1 flag instead of the noise probability (``hard_flags``); a number
    after the flags: restart rounds (``restart_rounds``, e.g. ``drh2``)."""
    out = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        method, action, *rest = part.split(":") + ["", ""]
        warmup, gate = rest[0], rest[1]
        bad = method not in ("bmm", "knn", "both") or action not in ("downweight", "relabel")
        letters = gate.rstrip("0123456789")
        rounds = gate[len(letters) :]
        bad = bad or (rounds != "" and ("r" not in letters or int(rounds) < 1))
        if bad or len(part.split(":")) > 4 or set(letters) - set("drh") or len(set(letters)) != len(letters):
            raise argparse.ArgumentTypeError(
                f"bad detector {part!r}: use method:action[:warmup[:flags]] with flags from d, r, h, "
                "e.g. bmm:downweight:2:dr"
            )
        if warmup and not warmup.isdigit():
            raise argparse.ArgumentTypeError(f"bad warm-up in {part!r}")
        suffix = (f"-w{warmup}" if warmup else "") + (f"-{gate}" if gate else "")
        out.append((method, action + suffix))
    if not out:
        raise argparse.ArgumentTypeError("at least one detector")
    return out


def detect_name(method: str, action: str, rate: float) -> str:
    return f"detect:{method}-{action}@{rate:g}"


def _fields(value: str) -> str | list[str]:
    return value if value in ("title", "all") or "," not in value else [v.strip() for v in value.split(",")]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="abt-buy", help="DeepMatcher folder or a name under the data root")
    p.add_argument("--format", default="deepmatcher")
    p.add_argument("--flip-rates", type=_floats, default=[0.2, 0.4], help="comma-separated shares of train labels")
    p.add_argument("--flip-seed", type=int, default=0, help="seed of the flipped-label draw")
    p.add_argument("--seed", type=int, default=1, help="training seed (same for every run)")
    p.add_argument("--arch", choices=("vanilla", "lea"), default="lea")
    p.add_argument("--backbone", default="minilm")
    p.add_argument("--fields", type=_fields, default="title")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--max-length", type=int, default=48)
    p.add_argument("--max-train-pairs", type=int, default=2000, help="stratified subsample of train (seed 0); 0 = all")
    p.add_argument(
        "--detectors",
        type=_detectors,
        default=_detectors("bmm:relabel,bmm:downweight:1,bmm:downweight:2"),
        help="comma-separated method:action pairs (methods bmm|knn|both, actions downweight|relabel)",
    )
    p.add_argument("--noise-warmup", type=int, default=None, help="epochs before detection (default: trainer's)")
    p.add_argument("--knn-k", type=int, default=25)
    p.add_argument("--runs", default=None, help="only these runs, e.g. clean,naive@0.2,detect:bmm-relabel@0.2")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy 2-core box)")
    p.add_argument("--eval-batch-size", type=int, default=64)
    p.add_argument("--work-dir", type=Path, default=OUT / "noise_models", help="model folders (gitignored)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "noise.json")
    p.add_argument("--resume", action="store_true", help="keep finished runs of --out with the same settings")
    p.add_argument("--progress", action="store_true", help="tqdm bars (off by default: logs only)")
    args = p.parse_args(argv)
    if args.max_train_pairs == 0:
        args.max_train_pairs = None
    return args


def with_train_labels(dataset: PairDataset, labels: np.ndarray) -> PairDataset:
    """A copy of ``dataset`` whose train pairs carry ``labels``; other splits are shared."""
    train = [dataclasses.replace(p, label=int(y)) for p, y in zip(dataset.split("train"), labels)]
    return dataclasses.replace(dataset, splits={**dataset.splits, "train": train})


def run_names(rates: list[float], detectors: list[tuple[str, str]]) -> list[str]:
    names = ["clean"]
    for r in rates:
        names += [f"naive@{r:g}", *(detect_name(m, a, r) for m, a in detectors)]
    return names


def settings_of(args: argparse.Namespace) -> dict[str, Any]:
    keys = (
        "data format flip_rates flip_seed seed arch backbone fields epochs batch_size lr max_length "
        "max_train_pairs noise_warmup knn_k threads"
    ).split()
    return {k: getattr(args, k) for k in keys}


def _write(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")


def one_run(
    name: str, args: argparse.Namespace, clean: PairDataset, flips: dict[float, tuple[np.ndarray, np.ndarray]]
) -> dict[str, Any]:
    head, _, rate_text = name.partition("@")
    rate = float(rate_text) if rate_text else 0.0
    kind, _, variant = head.partition(":")
    method, _, action = variant.partition("-")
    action, _, warmup_text = action.partition("-w")
    warmup_text, _, flags = warmup_text.partition("-")
    warmup = int(warmup_text) if warmup_text else args.noise_warmup
    gate = "d" in flags  # flag only pairs the model also misclassifies
    restart = "r" in flags  # detect once after the warm-up, then retrain from scratch
    hard = "h" in flags  # drop / relabel flagged pairs entirely
    letters = flags.rstrip("0123456789")
    rounds = int(flags[len(letters) :] or 1)  # detect-and-restart rounds
    dataset = clean if kind == "clean" else with_train_labels(clean, flips[rate][0])
    detect = kind == "detect"
    folder = args.work_dir / name.replace("@", "_").replace(":", "_")
    started = time.perf_counter()
    summary = train_matcher(
        dataset,
        folder,
        arch=args.arch,
        backbone=args.backbone,
        fields=args.fields,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        max_length=args.max_length,
        seed=args.seed,
        max_train_pairs=args.max_train_pairs,
        threads=args.threads,
        eval_batch_size=args.eval_batch_size,
        progress=args.progress,
        noise=method if detect else "none",
        noise_action=action if detect else "downweight",
        noise_options={
            "warmup_epochs": warmup,
            "knn_k": args.knn_k,
            "require_disagreement": gate,
            "restart": restart,
            "hard_flags": hard,
            "restart_rounds": rounds,
        },
        keep_noise_report=detect,
    )
    train_wall = time.perf_counter() - started
    eval_start = time.perf_counter()
    test = evaluate_matcher(folder, clean, split="test", batch_size=args.eval_batch_size)
    result: dict[str, Any] = {
        "run": name,
        "kind": kind,
        "detector_variant": variant or None,
        "flip_rate": rate,
        "test_f1": test["f1_clean"],
        "test_precision": test["precision"],
        "test_recall": test["recall"],
        "test_pr_auc": test["pr_auc"],
        "valid_f1": summary["valid_f1"],
        "best_epoch": summary["best_epoch"],
        "threshold": summary["threshold"],
        "train_pairs": summary["train_pairs"],
        "history": summary["history"],
        "train_wall_seconds": train_wall,
        "eval_wall_seconds": time.perf_counter() - eval_start,
        "noise": summary["noise"],
    }
    if kind != "clean":
        noisy_labels, flipped = flips[rate]
        idx = subsample_indices(noisy_labels.tolist(), args.max_train_pairs)
        result["flipped_in_train"] = int(flipped[idx].sum())
    report = summary.get("noise_report")
    if detect and report is not None:
        result["detector"] = detector_scores(report, *flips[rate])
    logger.info(
        "%s: test F1 %.4f (P %.3f R %.3f), valid F1 %.4f, best epoch %d, %.0fs",
        name,
        result["test_f1"],
        result["test_precision"],
        result["test_recall"],
        result["valid_f1"],
        result["best_epoch"],
        train_wall,
    )
    return result


def detector_scores(report: dict[str, Any], noisy: np.ndarray, flipped: np.ndarray) -> dict[str, Any]:
    """Precision / recall of the last detection's flags against the known flips, overall and per label."""
    idx = report["train_indices"]
    truth, labels = flipped[idx], noisy[idx]
    flags = np.asarray(report["flagged_pairs"], dtype=bool)
    p_noise = np.asarray(report["p_noise"])
    tp = int((flags & truth).sum())
    return {
        "after_epoch": report["epoch"],
        "flagged": int(flags.sum()),
        "flipped": int(truth.sum()),
        "precision": tp / max(1, int(flags.sum())),
        "recall": tp / max(1, int(truth.sum())),
        "mean_p_noise_flipped": float(p_noise[truth].mean()) if truth.any() else None,
        "mean_p_noise_clean": float(p_noise[~truth].mean()) if (~truth).any() else None,
        "by_noisy_label": {
            str(c): {
                "labelled": int((labels == c).sum()),
                "flipped": int((truth & (labels == c)).sum()),
                "flagged": int((flags & (labels == c)).sum()),
                "flagged_and_flipped": int((flags & truth & (labels == c)).sum()),
            }
            for c in (0, 1)
        },
    }


def summarise(
    runs: dict[str, dict[str, Any]], rates: list[float], detectors: list[tuple[str, str]]
) -> list[dict[str, Any]]:
    rows = []
    clean = runs.get("clean", {}).get("test_f1")
    for r in rates:
        naive = runs.get(f"naive@{r:g}", {}).get("test_f1")
        for method, action in detectors:
            det_run = runs.get(detect_name(method, action, r), {})
            detect = det_run.get("test_f1")
            row: dict[str, Any] = {
                "flip_rate": r,
                "detector": f"{method}:{action}",
                "f1_clean": clean,
                "f1_naive": naive,
                "f1_detect": detect,
                "valid_f1_naive": runs.get(f"naive@{r:g}", {}).get("valid_f1"),
                "valid_f1_detect": det_run.get("valid_f1"),
            }
            if None not in (clean, naive, detect):
                lost = clean - naive
                row["f1_lost"] = lost
                row["f1_recovered"] = detect - naive
                row["recovered_share"] = (detect - naive) / lost if lost > 0 else None
                row["target_met"] = detect - naive >= 0.5 * lost
            det = det_run.get("detector")
            if det:
                row["detector_precision"] = det["precision"]
                row["detector_recall"] = det["recall"]
            rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    def pct(v: float | None) -> str:
        return "–" if v is None else f"{100 * v:.2f}"

    lines = [
        "| flip rate | detection | F1 clean | F1 naive | F1 detect | recovered share | target met | detector P / R |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        share = row.get("recovered_share")
        pr = (
            f"{pct(row.get('detector_precision'))} / {pct(row.get('detector_recall'))}"
            if "detector_precision" in row
            else "–"
        )
        lines.append(
            f"| {row['flip_rate']:.0%} | {row['detector']} | {pct(row['f1_clean'])} | {pct(row['f1_naive'])} "
            f"| {pct(row['f1_detect'])} | {'–' if share is None else f'{share:.2f}'} "
            f"| {row.get('target_met', '–')} | {pr} |"
        )
    return "\n".join(lines)


def _previous_runs(path: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """Finished runs of an earlier invocation with the same settings (detectors may differ)."""
    if not path.exists():
        return {}
    previous = json.loads(path.read_text())
    old = dict(previous.get("settings", {}))
    # Files written before --detectors had one detector in "noise"/"noise_action" and runs "detect@r".
    method, action = old.pop("noise", None), old.pop("noise_action", None)
    if old != json.loads(json.dumps(settings, default=str)):
        logger.warning("--resume: %s has other settings, starting afresh", path)
        return {}
    runs = {}
    for name, run in previous.get("runs", {}).items():
        if name.startswith("detect@") and method and action:
            rate = float(name.partition("@")[2])
            name = detect_name(method, action, rate)
            run = {**run, "run": name, "detector_variant": f"{method}-{action}"}
        runs[name] = run
    return runs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    else:
        args.threads = None
    settings = settings_of(args)
    clean = load_dataset(args.data, args.format)
    labels = np.asarray([p.label for p in clean.split("train")], dtype=np.int64)
    flips = {r: flip_labels(labels, r, args.flip_seed) for r in args.flip_rates}
    names = run_names(args.flip_rates, args.detectors)
    if args.runs:
        wanted = {n.strip() for n in args.runs.split(",")}
        names = [n for n in names if n in wanted]

    payload: dict[str, Any] = {"runs": _previous_runs(args.out, settings) if args.resume else {}}
    payload.update(
        {
            "benchmark": "noise",
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "git": git_rev(),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if argv is None else " ".join(argv),
            "settings": settings,
            "detectors": [f"{m}:{a}" for m, a in args.detectors],
            "machine": machine(),
            "dataset": {"name": clean.name, "stats": clean.stats()},
            "flips": {f"{r:g}": {"flipped": int(f[1].sum()), "train_pairs": labels.size} for r, f in flips.items()},
            "target": "F1_detect - F1_naive >= 0.5 * (F1_clean - F1_naive) at each flip rate",
        }
    )
    bench_start = time.perf_counter()
    for name in names:
        if name in payload["runs"]:
            logger.info("%s: kept from %s", name, args.out)
            continue
        payload["runs"][name] = one_run(name, args, clean, flips)
        payload["summary"] = summarise(payload["runs"], args.flip_rates, args.detectors)
        payload["wall_seconds_this_invocation"] = time.perf_counter() - bench_start
        _write(args.out, payload)
    payload["summary"] = summarise(payload["runs"], args.flip_rates, args.detectors)
    payload["wall_seconds_this_invocation"] = time.perf_counter() - bench_start
    payload["wall_seconds_all_runs"] = sum(
        r["train_wall_seconds"] + r["eval_wall_seconds"] for r in payload["runs"].values()
    )
    _write(args.out, payload)
    sys.stdout.write(markdown(payload["summary"]) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
