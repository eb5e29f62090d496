"""Per-seed and mean test F1 of bench_noise.py result files that differ only in the training seed.

    .venv/bin/python scripts/noise_table.py benchmarks/results/noise.json \\
        benchmarks/results/noise_seed2.json benchmarks/results/noise_seed3.json \\
        --runs clean,naive@0.2,detect:bmm-downweight-w3-drh@0.2

Prints a Markdown table: one row per run with the F1 of each seed and the mean, then the
issue's target on the means: F1_detect - F1_naive >= 0.5 * (F1_clean - F1_naive).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

IGNORED_SETTINGS = {"seed", "flip_rates", "detectors"}


def load(paths: list[Path]) -> list[dict]:
    files = [json.loads(p.read_text(encoding="utf-8")) for p in paths]
    base = {k: v for k, v in files[0]["settings"].items() if k not in IGNORED_SETTINGS}
    for path, data in zip(paths, files):
        other = {k: v for k, v in data["settings"].items() if k not in IGNORED_SETTINGS}
        if other != base:
            diff = sorted(k for k in base.keys() | other.keys() if base.get(k) != other.get(k))
            raise SystemExit(f"{path}: settings differ from {paths[0]} in {diff}")
    return files


def table(files: list[dict], runs: list[str]) -> str:
    seeds = [f["settings"]["seed"] for f in files]
    head = "| run | " + " | ".join(f"seed {s}" for s in seeds) + " | mean |"
    lines = [head, "|---|" + "---|" * (len(seeds) + 1)]
    means: dict[str, float] = {}
    for run in runs:
        values = [f["runs"].get(run, {}).get("test_f1") for f in files]
        cells = ["–" if v is None else f"{100 * v:.2f}" for v in values]
        present = [v for v in values if v is not None]
        if len(present) == len(values):
            means[run] = statistics.fmean(present)
        mean = f"**{100 * means[run]:.2f}**" if run in means else "–"
        lines.append(f"| {run} | " + " | ".join(cells) + f" | {mean} |")
    out = "\n".join(lines)
    clean, naive, *detects = runs
    for det in detects:
        if {clean, naive, det} <= means.keys():
            lost = means[clean] - means[naive]
            gained = means[det] - means[naive]
            share = gained / lost if lost > 0 else float("nan")
            met = gained >= 0.5 * lost - 1e-9  # F1s are ratios of counts: no float noise at the boundary
            out += (
                f"\n\n{det}: mean F1 lost to the noise {100 * lost:.2f}, recovered {100 * gained:.2f} "
                f"(share {share:.2f}); target (share >= 0.5) {'met' if met else 'not met'}."
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("files", type=Path, nargs="+")
    parser.add_argument("--runs", required=True, help="clean run, naive run, then detection runs")
    args = parser.parse_args()
    runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    if len(runs) < 3:
        parser.error("--runs needs the clean run, the naive run and at least one detection run")
    print(table(load(args.files), runs))


if __name__ == "__main__":
    main()
