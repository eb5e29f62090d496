"""Resumable protocol runner: the full matcher and label-noise protocols of METHODS §9.4 on this CPU.

A protocol is a list of runs, one per (dataset, variant, seed, setting, batch order). Each run trains with
``training.train_matcher`` (checkpoint after every epoch, resumed when interrupted), evaluates
the saved model on the test split, and writes **one result file**; a run whose result file
exists is skipped, and a run another process is working on (a live lock file) is left to it.
So a protocol survives the end of a session: start it again (or twice, for two cores) and it
continues where it stopped. The tables are regenerated from the result files alone.

    # the LEA protocol: 3 datasets x {vanilla, vanilla+typo, lea+typo} x seeds 1, 2 x 8 epochs
    nohup python benchmarks/protocol.py run lea --threads 1 >> benchmarks/out/protocol_lea.log 2>&1 &
    # the label-noise protocol: Abt-Buy, 20 % / 40 % flips x seeds 1-3 x {clean, naive, detect}
    nohup python benchmarks/protocol.py run noise --threads 1 >> benchmarks/out/protocol_noise.log 2>&1 &
    python benchmarks/protocol.py status lea           # done / running / to do
    python benchmarks/protocol.py table lea            # Markdown from the result files

Result files: ``benchmarks/results/protocol/<protocol>/<run>.json`` (committed as they land);
model folders and checkpoints: ``benchmarks/out/protocol/<protocol>/<run>/`` (not committed).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks.common import OUT, RESULTS, git_rev, machine  # noqa: E402
from training.data.readers import data_root, load_dataset  # noqa: E402
from training.data.records import PairDataset  # noqa: E402

logger = logging.getLogger("protocol")

RESULT_ROOT = RESULTS / "protocol"
WORK_ROOT = OUT / "protocol"


@dataclass(frozen=True)
class DatasetSpec:
    path: str
    fmt: str
    reader_kwargs: dict[str, Any]
    title_field: str  # the field "title only" means for this dataset (METHODS §0)
    label: str


DATASETS: dict[str, DatasetSpec] = {
    "abt-buy": DatasetSpec("abt-buy", "deepmatcher", {}, "name", "Abt-Buy"),
    "amazon-google": DatasetSpec("amazon-google", "deepmatcher", {}, "title", "Amazon-Google"),
    "wdc-computers-medium": DatasetSpec(
        "wdc-lspc-v2/computers", "ditto", {"size": "medium"}, "title", "WDC-Computers medium"
    ),
}


def load_protocol_dataset(name: str, root: Path | None = None) -> PairDataset:
    spec = DATASETS[name]
    return load_dataset((root or data_root()) / spec.path, spec.fmt, **spec.reader_kwargs)


@dataclass(frozen=True)
class Run:
    """One cell of a protocol; ``name`` is its result file's stem."""

    protocol: str
    dataset: str
    variant: str
    seed: int
    setting: str = ""
    # Length-grouped batches (the trainer's default since the ablation): runs here stay random-batch by
    # default so the main table keeps one batch order; grouped runs are the ablation beside them.
    grouped: bool = False

    @property
    def name(self) -> str:
        parts = [self.dataset, self.variant.replace("+", "-"), f"seed{self.seed}"]
        return "__".join(parts + ([self.setting] if self.setting else []) + (["grouped"] if self.grouped else []))


# --------------------------------------------------------------------------------------------
# The two protocols
# --------------------------------------------------------------------------------------------

LEA_VARIANTS = ("vanilla", "vanilla+typo", "lea+typo")
NOISE_VARIANTS = ("clean", "naive", "signals")
# Not in the default protocol list (run with --variants detect,forward): the loss-based detectors,
# measured at full budget below naive or barely above it (docs/benchmarks/noise_protocol.md).
NOISE_EXTRA_VARIANTS = ("detect", "forward")
# The label-free detector (training/noise/signals.py): an EM label-noise model on the pretrained
# bi-encoder cosine and the pair signals, fitted once before training (flip AUC 0.97-0.99 on these
# flips, docs/benchmarks/noise.md); the model then trains on the clean-label posterior.
SIGNALS = {"noise": "signals", "noise_action": "relabel", "noise_options": {}}
# The best detection measured on the reduced budget (docs/benchmarks/noise.md): beta mixture on
# the losses after a 3-epoch warm-up, flags gated by the model's own disagreement, flagged pairs
# dropped, then a fresh model trained for the full budget on the rest.
DETECTOR = {
    "noise": "bmm",
    "noise_action": "downweight",
    "noise_options": {"warmup_epochs": 3, "require_disagreement": True, "restart": True, "hard_flags": True},
}
# Forward loss correction: the same detection after the same warm-up only estimates the two flip
# rates; every label stays and the loss models the flips (no restart: 8 epochs in all).
FORWARD = {
    "noise": "bmm",
    "noise_action": "forward",
    "noise_options": {"warmup_epochs": 3, "require_disagreement": True, "hard_flags": True},
}
FLIP_SEED = 0


def lea_runs(datasets: list[str], variants: list[str], seeds: list[int], grouped: bool = False) -> list[Run]:
    return [Run("lea", d, v, s, grouped=grouped) for d in datasets for s in seeds for v in variants]


def noise_runs(rates: list[float], variants: list[str], seeds: list[int], grouped: bool = False) -> list[Run]:
    runs = []
    for seed in seeds:
        if "clean" in variants:
            runs.append(Run("noise", "abt-buy", "clean", seed, grouped=grouped))
        for rate in rates:
            runs += [
                Run("noise", "abt-buy", v, seed, f"flip{round(100 * rate)}", grouped=grouped)
                for v in variants
                if v != "clean"
            ]
    return runs


# --------------------------------------------------------------------------------------------
# Locks and result files
# --------------------------------------------------------------------------------------------


def result_path(run: Run, root: Path = RESULT_ROOT) -> Path:
    return root / run.protocol / f"{run.name}.json"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def try_lock(path: Path) -> bool:
    """Take ``path`` (a lock file holding the owner's pid); a lock of a dead process is taken over."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                owner = int(path.read_text().strip() or 0)
            except (OSError, ValueError):
                owner = 0
            if owner and _pid_alive(owner):
                return False
            path.unlink(missing_ok=True)  # stale: its process is gone
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(str(os.getpid()))
        return True
    return False


def pending(runs: list[Run], root: Path = RESULT_ROOT) -> Iterator[Run]:
    for run in runs:
        if not result_path(run, root).exists():
            yield run


def write_result(run: Run, payload: dict[str, Any], root: Path = RESULT_ROOT) -> Path:
    path = result_path(run, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def read_results(protocol: str, root: Path = RESULT_ROOT) -> list[dict[str, Any]]:
    folder = root / protocol
    results = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))]
    for r in results:
        r.setdefault("grouped", False)
    return results


# --------------------------------------------------------------------------------------------
# Running one run
# --------------------------------------------------------------------------------------------


def _train_and_eval(
    run: Run, dataset: PairDataset, clean: PairDataset, args: argparse.Namespace, **train_kwargs: Any
) -> dict[str, Any]:
    from training.eval_matcher import evaluate_matcher
    from training.train_matcher import train_matcher

    work = args.work / run.protocol / run.name
    folder = work / "model"
    t0 = time.perf_counter()
    summary = train_matcher(
        dataset,
        folder,
        fields=DATASETS[run.dataset].title_field,
        epochs=args.epochs,
        batch_size=32,
        lr=5e-5,
        max_length=64,
        seed=run.seed,
        threads=args.threads,
        precision=args.precision,
        length_grouping=run.grouped,
        checkpoint_dir=work / "checkpoint",
        progress=args.progress,
        max_train_pairs=args.max_train_pairs,
        **train_kwargs,
    )
    t1 = time.perf_counter()
    noise_seeds = [1, 2, 3] if run.protocol == "lea" else []
    ev = evaluate_matcher(folder, clean, "test", noise_seeds=noise_seeds)
    t2 = time.perf_counter()
    return {
        "run": run.name,
        **dataclasses.asdict(run),
        "valid_f1": summary["valid_f1"],
        "best_epoch": summary["best_epoch"],
        "threshold": summary["threshold"],
        "test_f1": ev["f1_clean"],
        "test_precision": ev["precision"],
        "test_recall": ev["recall"],
        "test_pr_auc": ev["pr_auc"],
        "test_f1_noisy": ev["f1_noisy"],
        "test_f1_noisy_per_seed": ev["f1_noisy_per_seed"],
        "test_pairs": ev["pairs"],
        "train_pairs": summary["train_pairs"],
        "train_seconds": summary["train_seconds"],
        "train_wall_seconds": t1 - t0,
        "eval_seconds": t2 - t1,
        "history": summary["history"],
        "noise": summary.get("noise"),
        "noise_report": summary.get("noise_report"),
    }


def run_one(run: Run, args: argparse.Namespace) -> dict[str, Any]:
    clean = load_protocol_dataset(run.dataset, args.data)
    if run.protocol == "lea":
        arch, _, augment = run.variant.partition("+")
        out = _train_and_eval(run, clean, clean, args, arch=arch, augment=augment or None)
        settings: dict[str, Any] = {"arch": arch, "augment": augment or None}
    else:
        from training.noise import flip_labels

        dataset, flipped = clean, None
        if run.setting:
            rate = int(run.setting.removeprefix("flip")) / 100
            labels, flipped = flip_labels([p.label for p in clean.split("train")], rate, FLIP_SEED)
            train = [dataclasses.replace(p, label=int(y)) for p, y in zip(clean.split("train"), labels, strict=True)]
            dataset = dataclasses.replace(clean, splits={**clean.splits, "train": train})
        extra = {"detect": DETECTOR, "forward": FORWARD, "signals": SIGNALS}.get(run.variant, {})
        out = _train_and_eval(run, dataset, clean, args, arch="lea", keep_noise_report=bool(extra), **extra)
        settings = {"arch": "lea", "augment": None, "flip_seed": FLIP_SEED, **extra}
        if flipped is not None:
            out["flipped_in_train"] = int(flipped.sum())
            report = out.pop("noise_report", None)
            if report is not None:
                flags = np.asarray(report["flagged_pairs"], dtype=bool)
                truth = flipped[report["train_indices"]]
                tp = int((flags & truth).sum())
                out["detector"] = {
                    "flagged": int(flags.sum()),
                    "precision": tp / max(1, int(flags.sum())),
                    "recall": tp / max(1, int(truth.sum())),
                }
    out.pop("noise_report", None)
    out["settings"] = {
        **settings,
        "fields": DATASETS[run.dataset].title_field,
        "epochs": args.epochs,
        "batch_size": 32,
        "lr": 5e-5,
        "max_length": 64,
        "threads": args.threads,
        "precision": args.precision,
        "length_grouping": run.grouped,
        "backbone": "minilm (all-MiniLM-L6-v2)",
        "noise_seeds": [1, 2, 3] if run.protocol == "lea" else [],
        "max_train_pairs": args.max_train_pairs,
    }
    out["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    out["git"] = git_rev()
    out["machine"] = machine()
    return out


def run_protocol(runs: list[Run], args: argparse.Namespace) -> int:
    done = 0
    for run in pending(runs, args.results):
        lock = args.work / run.protocol / f"{run.name}.lock"
        if not try_lock(lock):
            logger.info("%s: another process is on it", run.name)
            continue
        try:
            if result_path(run, args.results).exists():  # finished while we waited for the lock
                continue
            logger.info("=== %s", run.name)
            out = run_one(run, args)
            path = write_result(run, out, args.results)
            done += 1
            logger.info(
                "%s: valid %.4f test %.4f noisy %s, %.0f s train -> %s",
                run.name,
                out["valid_f1"],
                out["test_f1"],
                out["test_f1_noisy"],
                out["train_seconds"],
                path,
            )
        finally:
            lock.unlink(missing_ok=True)
    return done


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


def _pct(values: list[float]) -> str:
    return "–" if not values else f"{100 * float(np.mean(values)):.2f}"


def _seeds(values: list[float]) -> str:
    return ", ".join(f"{100 * v:.2f}" for v in values) or "–"


def lea_table(results: list[dict[str, Any]]) -> str:
    from benchmarks.bench_matcher import ANCHORS_94

    lines = [
        "| dataset | variant | seeds | valid F1 | clean test F1 | noisy test F1 | per seed clean / noisy "
        "| anchor §9.4 clean / noisy | train min/run |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for ds in DATASETS:
        for variant in LEA_VARIANTS:
            rows = sorted((r for r in results if r["dataset"] == ds and r["variant"] == variant
                           and not r["setting"] and not r["grouped"]), key=lambda r: r["seed"])  # fmt: skip
            if not rows:
                continue
            anchor = ANCHORS_94.get(ds, {}).get(variant)
            anchor_txt = f"{anchor['clean']:.2f} / {anchor['noisy']:.2f}" if anchor else "–"
            clean = [r["test_f1"] for r in rows]
            noisy = [r["test_f1_noisy"] for r in rows if r["test_f1_noisy"] is not None]
            lines.append(
                f"| {DATASETS[ds].label} | {variant} | {','.join(str(r['seed']) for r in rows)} "
                f"| {_pct([r['valid_f1'] for r in rows])} | {_pct(clean)} | {_pct(noisy)} "
                f"| {_seeds(clean)} / {_seeds(noisy)} | {anchor_txt} "
                f"| {np.mean([r['train_seconds'] for r in rows]) / 60:.0f} |"
            )
    return "\n".join(lines)


def grouping_table(results: list[dict[str, Any]]) -> str:
    """Length-grouped runs beside the random-batch run of the same cell."""
    lines = [
        "| dataset | variant | seed | batches | valid F1 | clean test F1 | noisy test F1 | train min |",
        "|---|---|---|---|---|---|---|---|",
    ]
    grouped = sorted((r for r in results if r["grouped"]), key=lambda r: (r["dataset"], r["variant"], r["seed"]))
    for g in grouped:
        twin = next(
            (r for r in results if not r["grouped"] and (r["dataset"], r["variant"], r["seed"], r["setting"]) ==
             (g["dataset"], g["variant"], g["seed"], g["setting"])),
            None,
        )  # fmt: skip
        for label, row in (("length-grouped", g), ("random", twin)):
            if row is None:
                continue
            noisy = "–" if row["test_f1_noisy"] is None else f"{100 * row['test_f1_noisy']:.2f}"
            lines.append(
                f"| {DATASETS[row['dataset']].label} | {row['variant']} | {row['seed']} | {label} "
                f"| {100 * row['valid_f1']:.2f} | {100 * row['test_f1']:.2f} | {noisy} "
                f"| {row['train_seconds'] / 60:.0f} |"
            )
    return "\n".join(lines)


def noise_table(results: list[dict[str, Any]]) -> str:
    """One batch order's noise protocol (pass random-batch or length-grouped results, not both)."""
    lines = [
        "| flips | variant | seeds | test F1 (mean) | per seed | recovered share | detector P / R |",
        "|---|---|---|---|---|---|---|",
    ]
    clean = {r["seed"]: r["test_f1"] for r in results if r["variant"] == "clean"}
    settings = sorted({r["setting"] for r in results if r["setting"]})
    for setting in settings:
        naive = {r["seed"]: r["test_f1"] for r in results if r["variant"] == "naive" and r["setting"] == setting}
        for variant in ("naive", *NOISE_VARIANTS[2:], *NOISE_EXTRA_VARIANTS):
            rows = sorted((r for r in results if r["variant"] == variant and r["setting"] == setting),
                          key=lambda r: r["seed"])  # fmt: skip
            if not rows:
                continue
            f1 = [r["test_f1"] for r in rows]
            share = "–"
            common = [r["seed"] for r in rows if r["seed"] in clean and r["seed"] in naive]
            if variant != "naive" and common:
                lost = np.mean([clean[s] - naive[s] for s in common])
                gain = np.mean([r["test_f1"] - naive[r["seed"]] for r in rows if r["seed"] in common])
                share = f"{gain / lost:.2f}" if lost > 0 else "n/a (nothing lost)"
            det = [r["detector"] for r in rows if r.get("detector")]
            det_txt = (
                f"{100 * np.mean([d['precision'] for d in det]):.1f} / {100 * np.mean([d['recall'] for d in det]):.1f}"
                if det
                else "–"
            )
            lines.append(
                f"| {setting.removeprefix('flip')} % | {variant} | {','.join(str(r['seed']) for r in rows)} "
                f"| {_pct(f1)} | {_seeds(f1)} | {share} | {det_txt} |"
            )
    if clean:
        lines.append(
            f"| 0 % | clean | {','.join(str(s) for s in sorted(clean))} | {_pct(list(clean.values()))} "
            f"| {_seeds([clean[s] for s in sorted(clean)])} | | |"
        )
    return "\n".join(lines)


def train_test_overlap(name: str, root: Path | None = None) -> dict[str, int]:
    """Title-only test pairs whose exact text pair also occurs in train, and how many flip label."""
    from models.product_text import serialize

    dataset = load_protocol_dataset(name, root)
    field = DATASETS[name].title_field
    train: dict[tuple[str, str], set[int]] = {}
    for p in dataset.split("train"):
        train.setdefault((serialize(p.left, field), serialize(p.right, field)), set()).add(int(p.label))
    shared = opposite = 0
    for p in dataset.split("test"):
        labels = train.get((serialize(p.left, field), serialize(p.right, field)))
        if labels is not None:
            shared += 1
            opposite += int(int(p.label) not in labels)
    return {"test_pairs": len(dataset.split("test")), "also_in_train": shared, "opposite_label": opposite}


def overlap_note(names: list[str]) -> str:
    parts = []
    for name in names:
        o = train_test_overlap(name)
        label = DATASETS[name].label
        parts.append(f"{label} {o['also_in_train']} of {o['test_pairs']} ({o['opposite_label']} with the other label)")
    return "Title-only test pairs whose exact text pair is also a training pair: " + "; ".join(parts) + "."


def update_markdown(path: Path, protocol: str, body: str) -> None:
    """Replace the block between ``<!-- protocol:NAME -->`` and ``<!-- /protocol:NAME -->`` in ``path``."""
    start, end = f"<!-- protocol:{protocol} -->", f"<!-- /protocol:{protocol} -->"
    text = path.read_text(encoding="utf-8")
    if start not in text or end not in text:
        raise SystemExit(f"{path} has no {start} ... {end} block")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{start}\n{body}\n{end}{tail}", encoding="utf-8")


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def _csv(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def _known(names: list[str], known: tuple[str, ...], what: str) -> list[str]:
    """``names`` if each is one of ``known``; else a clear error before any run starts (a typo
    would otherwise surface minutes later, inside the first training run)."""
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown {what} {unknown}: choose from {', '.join(known)}")
    return names


def protocol_runs(args: argparse.Namespace) -> list[Run]:
    if args.protocol == "lea":
        return lea_runs(
            _known(_csv(args.datasets), tuple(DATASETS), "datasets"),
            _known(_csv(args.variants or ",".join(LEA_VARIANTS)), LEA_VARIANTS, "lea variants"),
            [int(s) for s in _csv(args.seeds or "1,2")],
            args.length_grouping,
        )
    return noise_runs(
        [float(r) for r in _csv(args.rates)],
        _known(
            _csv(args.variants or ",".join(NOISE_VARIANTS)), NOISE_VARIANTS + NOISE_EXTRA_VARIANTS, "noise variants"
        ),
        [int(s) for s in _csv(args.seeds or "1,2,3")],
        args.length_grouping,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=("run", "status", "table"))
    p.add_argument("protocol", choices=("lea", "noise"))
    p.add_argument("--datasets", default=",".join(DATASETS), help="lea protocol only")
    p.add_argument("--variants", default=None, help="default: every variant of the protocol")
    p.add_argument("--seeds", default=None, help="default: 1,2 (lea), 1,2,3 (noise)")
    p.add_argument("--rates", default="0.2,0.4", help="noise protocol: flip rates")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"))
    p.add_argument(
        "--length-grouping",
        action="store_true",
        help="length-grouped batches (runs named '...__grouped', the ablation; protocol runs default to random)",
    )
    p.add_argument("--data", type=Path, default=None, help="data root (default: PRODUCTMATCH_DATA or ../shared/data)")
    p.add_argument("--results", type=Path, default=RESULT_ROOT)
    p.add_argument("--work", type=Path, default=WORK_ROOT)
    p.add_argument("--progress", action="store_true")
    p.add_argument("--max-train-pairs", type=int, default=None, help="smoke runs only (use another --results)")
    p.add_argument(
        "--update", type=Path, default=None, help="table: rewrite the protocol's block in this Markdown file"
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    runs = protocol_runs(args)
    if args.command == "run":
        n = run_protocol(runs, args)
        logger.info("%d runs finished by this process; %d left", n, len(list(pending(runs, args.results))))
        return 0
    results = read_results(args.protocol, args.results)
    if args.command == "status":
        names = {r["run"] for r in results}
        for run in runs:
            lock = args.work / run.protocol / f"{run.name}.lock"
            state = "done" if run.name in names else ("running" if lock.exists() else "to do")
            print(f"{state:8s} {run.name}")
        return 0
    random_batches = [r for r in results if not r["grouped"]]
    body = lea_table(results) if args.protocol == "lea" else noise_table(random_batches)
    datasets = sorted({r["dataset"] for r in results}, key=list(DATASETS).index)
    if datasets:
        body += "\n\n" + overlap_note(datasets)
    if args.update is not None:
        update_markdown(args.update, args.protocol, body)
        if args.protocol == "lea" and any(r["grouped"] for r in results):
            update_markdown(args.update, "grouped", grouping_table(results))
        if args.protocol == "noise" and any(r["grouped"] for r in results):
            update_markdown(args.update, "noise-grouped", noise_table([r for r in results if r["grouped"]]))
    print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
