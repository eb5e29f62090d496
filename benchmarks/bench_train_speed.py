"""Training speed of the real matcher loop: fp32 vs bf16, random vs length-grouped batches.

For each architecture (vanilla, LEA) it trains ``training.train_matcher`` for one epoch on the
same training pairs in three settings, in one run on the same machine:

* ``fp32-random``: fp32, random batches (the loop as it was before bf16 and grouping; it
  already tokenises once per dataset, so it is, if anything, faster than the old loop);
* ``fp32-grouped``: fp32, length-grouped batches;
* ``bf16-random``: bf16 autocast on AMX, random batches (``--no-length-grouping``);
* ``bf16-grouped``: bf16 and length-grouped batches (the trainer's default where bf16 is native);
* ``baseline``: the loop of ``--baseline-rev`` (the fp32 loop this work started from), run
  from a git worktree of that revision in a subprocess, on the same pairs and settings.

It reports training pairs/s (the epoch's training time, validation excluded), the validation F1
after that epoch (same seed, same pairs: the precision must not cost quality), the padding
share of each batch order, and the share of this machine's bf16 matmul ceiling (a 2048 x 2048
bf16 matmul, measured in the same run) that the training step reaches.

    python benchmarks/bench_train_speed.py                         # Abt-Buy, all train pairs, 1 epoch
    python benchmarks/bench_train_speed.py --pairs 600 --archs lea  # quick look
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.common import OUT, RESULTS, git_rev, machine  # noqa: E402
from benchmarks.protocol import DATASETS, load_protocol_dataset  # noqa: E402
from models.precision import cpu_bf16_flags  # noqa: E402

logger = logging.getLogger("bench_train_speed")

# The loop before bf16, grouping and encode-once: the commit this work started from.
BASELINE_REV = "dbb651e"

SETTINGS: dict[str, tuple[str, bool]] = {
    "fp32-random": ("fp32", False),
    "fp32-grouped": ("fp32", True),
    "bf16-random": ("bf16", False),
    "bf16-grouped": ("bf16", True),
}


def matmul_gflops(dtype: torch.dtype, n: int = 2048, repeats: int = 7) -> float:
    """Median GFLOP/s of an n x n matmul in ``dtype`` on this process's threads."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    for _ in range(2):
        a @ b
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e9


def train_flops_per_token(config: Any, seq_len: float) -> float:
    """Forward + backward FLOPs per token of a BERT-style encoder (3x the forward's matmuls)."""
    h, inter, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    linear = 2 * (4 * h * h + 2 * h * inter)  # Q, K, V, O and the two feed-forward matmuls
    attention = 2 * 2 * seq_len * h  # QK^T and PV, per token
    return 3.0 * layers * (linear + attention)


def padded_tokens(lengths: list[int], batch_size: int, seed: int, grouped: bool) -> tuple[int, float]:
    """Tokens the first epoch computes (batch max x batch size, summed) and its padding share."""
    from training.length_grouping import padding_share
    from training.pseudo_labels import plan_batches

    plan = plan_batches(len(lengths), 0, batch_size, 1.0, np.random.default_rng(seed), lengths if grouped else None)
    order = np.concatenate([lab for lab, _ in plan])
    lens = np.asarray(lengths)
    total = sum(int(lens[lab].max()) * len(lab) for lab, _ in plan)
    return total, padding_share(lengths, order, batch_size)


def baseline_epoch(rev: str, worktree: Path, args: argparse.Namespace, arch: str, fields: str, threads: int) -> dict:
    """One epoch of the training loop as it was at ``rev`` (a git worktree, same venv, subprocess)."""
    if not (worktree / ".git").exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(worktree), rev], check=True, cwd=ROOT)
    spec = DATASETS[args.dataset]
    code = f"""
import json, sys, logging
sys.path.insert(0, {str(worktree)!r})
logging.basicConfig(level=logging.WARNING)
from training.data.readers import data_root, load_dataset
from training.train_matcher import train_matcher
ds = load_dataset(data_root() / {spec.path!r}, {spec.fmt!r}, **{spec.reader_kwargs!r})
s = train_matcher(ds, {str(args.work / f"{arch}-baseline")!r}, arch={arch!r}, augment={augment_of(args)!r},
                  fields={fields!r}, epochs=1, batch_size={args.batch_size}, seed={args.seed},
                  max_train_pairs={args.pairs!r}, threads={threads}, progress=False)
print("RESULT" + json.dumps(s["history"][0]))
"""
    from training.data.readers import data_root

    env = {**os.environ, "PRODUCTMATCH_DATA": str(data_root())}  # the worktree's default root differs
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=worktree, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"baseline loop at {rev} failed:\n{out.stderr[-3000:]}")
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("RESULT"))
    return json.loads(line.removeprefix("RESULT"))


def augment_of(args: argparse.Namespace) -> str | None:
    return None if args.augment == "none" else args.augment


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="abt-buy", choices=sorted(DATASETS))
    p.add_argument("--pairs", type=int, default=None, help="stratified subsample of the train split (default all)")
    p.add_argument("--archs", default="vanilla,lea")
    p.add_argument("--settings", default=",".join(SETTINGS))
    p.add_argument("--augment", default="typo", choices=("typo", "none"))
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--rounds", type=int, default=1, help="repeat every setting this often, interleaved; medians")
    p.add_argument(
        "--baseline-rev",
        default=BASELINE_REV,
        help="also time the loop of this git revision (the fp32 loop before this work); '' to skip",
    )
    p.add_argument("--out", type=Path, default=RESULTS / "train_speed.json")
    p.add_argument("--work", type=Path, default=OUT / "train_speed")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from models.precision import default_threads
    from training.train_matcher import build_model, serialize_pairs, subsample_indices, train_matcher

    threads = args.threads or default_threads()
    torch.set_num_threads(threads)
    dataset = load_protocol_dataset(args.dataset)
    fields = DATASETS[args.dataset].title_field
    ceiling = {"fp32": matmul_gflops(torch.float32), "bf16": matmul_gflops(torch.bfloat16)}
    logger.info("matmul ceiling, %d threads: fp32 %.0f, bf16 %.0f GFLOP/s", threads, ceiling["fp32"], ceiling["bf16"])

    train_pairs = dataset.split("train")
    idx = subsample_indices([int(p.label) for p in train_pairs], args.pairs)
    texts = serialize_pairs([train_pairs[i] for i in idx], fields)
    settings = args.settings.split(",") + (["baseline"] if args.baseline_rev else [])
    epochs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    meta: dict[str, Any] = {}
    for arch in args.archs.split(","):
        model = build_model(arch, "minilm", 64)
        meta[arch] = {
            "lengths": [len(e) for e in model.collator.encode([(a, b) for a, b, _ in texts])],
            "config": model.model.config,
        }
        del model
    for rnd in range(args.rounds):
        for arch in args.archs.split(","):
            for name in settings:
                if name == "baseline":
                    epoch = baseline_epoch(args.baseline_rev, args.work / "baseline-src", args, arch, fields, threads)
                else:
                    precision, grouped = SETTINGS[name]
                    summary = train_matcher(
                        dataset,
                        args.work / f"{arch}-{name}",
                        arch=arch,
                        augment=augment_of(args),
                        fields=fields,
                        epochs=1,
                        batch_size=args.batch_size,
                        seed=args.seed,
                        max_train_pairs=args.pairs,
                        threads=threads,
                        precision=precision,
                        length_grouping=grouped,
                        progress=False,
                    )
                    epoch = summary["history"][0]
                epochs.setdefault((arch, name), []).append(epoch)
                logger.info("round %d %s %s: %.1f pairs/s", rnd + 1, arch, name, len(texts) / epoch["train_seconds"])

    runs: list[dict[str, Any]] = []
    for (arch, name), eps in epochs.items():
        precision, grouped = SETTINGS.get(name, ("fp32", False))
        train_s = statistics.median(e["train_seconds"] for e in eps)
        tokens, pad_share = padded_tokens(meta[arch]["lengths"], args.batch_size, args.seed, grouped)
        achieved = train_flops_per_token(meta[arch]["config"], tokens / len(texts)) * tokens / train_s / 1e9
        runs.append(
            {
                "arch": arch,
                "setting": name,
                "precision": precision,
                "length_grouping": grouped,
                "train_pairs": len(texts),
                "train_seconds_median": train_s,
                "train_seconds_all": [e["train_seconds"] for e in eps],
                "pairs_per_s": len(texts) / train_s,
                "valid_seconds_median": statistics.median(e["valid_seconds"] for e in eps),
                "valid_f1": eps[0]["valid_f1"],
                "valid_f1_all": [e["valid_f1"] for e in eps],
                "valid_pr_auc": eps[0]["valid_pr_auc"],
                "loss": eps[0]["loss"],
                "padding_share": pad_share,
                "gflops_achieved": achieved,
                "share_of_bf16_ceiling": achieved / ceiling["bf16"],
            }
        )
    for row in runs:
        # The reference: the old loop when timed, else fp32-random, else the arch's first setting.
        same_arch = [r for r in runs if r["arch"] == row["arch"]]
        base = next(
            (r for name in ("baseline", "fp32-random") for r in same_arch if r["setting"] == name), same_arch[0]
        )
        row["speedup_base"] = base["setting"]
        row["speedup"] = row["pairs_per_s"] / base["pairs_per_s"]
        row["valid_f1_minus_base"] = row["valid_f1"] - base["valid_f1"]
    payload = {
        "benchmark": "train_speed",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git": git_rev(),
        "command": " ".join(sys.argv),
        "machine": {**machine(), "cpu_bf16_flags": list(cpu_bf16_flags()), "loadavg_at_end": os.getloadavg()},
        "settings": {
            "dataset": args.dataset,
            "fields": fields,
            "pairs": len(texts),
            "augment": args.augment,
            "epochs": 1,
            "batch_size": args.batch_size,
            "seed": args.seed,
            "threads": threads,
            "rounds": args.rounds,
            "baseline": args.baseline_rev or None,
            "backbone": "minilm (all-MiniLM-L6-v2)",
            "max_length": 64,
        },
        "matmul_ceiling_gflops": ceiling,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(table(payload))
    return 0


def table(payload: dict[str, Any]) -> str:
    lines = [
        "| arch | setting | pairs/s | speed-up | valid F1 (1 epoch) | ΔF1 | padding | share of bf16 ceiling |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in payload["runs"]:
        lines.append(
            f"| {r['arch']} | {r['setting']} | {r['pairs_per_s']:.1f} | {r['speedup']:.2f}x "
            f"| {100 * r['valid_f1']:.2f} | {100 * r['valid_f1_minus_base']:+.2f} "
            f"| {100 * r['padding_share']:.0f} % | {100 * r['share_of_bf16_ceiling']:.0f} % |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
