"""Print the per-dataset markdown tables of docs/benchmarks/blocker.md from blocker.json (or the file given).

After each dataset's table comes the hybrid-blocking weight grid (valid and test, clean queries,
mean over seeds) when the file has hybrid runs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "blocker.json"
LABEL = {
    "zero-shot": "zero-shot MiniLM",
    "lexical": "token_set_ratio",
    "bm25": "BM25",
    "mnrl": "MNRL",
    "block-scl": "Block-SCL",
    "block-scl-wise": "Block-SCL + interpolation",
    "zero-shot-hybrid": "zero-shot MiniLM + BM25 (hybrid)",
    "block-scl-hybrid": "Block-SCL + interpolation + BM25 (hybrid)",
}
ORDER = list(LABEL)  # table row order
#: block-scl-hybrid records name the trained blocker they re-score.
BASE_LABEL = {"block-scl": "Block-SCL + BM25 (hybrid)", "block-scl-wise": LABEL["block-scl-hybrid"]}
KS = (1, 5, 10, 20, 50)


def fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS
    runs = json.loads(path.read_text())["runs"]
    for name, entries in runs.items():
        task = entries.get("task", {})
        size = f"{task.get('queries')} queries, {task.get('corpus_size')} candidates, fields {task.get('fields')}"
        out = [f"### {name} ({size})", ""]
        out.append("| method | seed | " + " | ".join(f"R@{k}" for k in KS) + " | noisy R@1 / R@5 / R@20 | train s |")
        out.append("|---|---|" + "---|" * len(KS) + "---|---|")
        for method in ORDER:
            keys = [k for k in entries if k == method or k.startswith(method + "/seed")]
            rows = [entries[k] for k in keys]
            label = BASE_LABEL.get(rows[0].get("base", ""), LABEL[method]) if rows else LABEL[method]
            for k, r in zip(keys, rows):
                seed = k.split("seed")[1] if "seed" in k else "-"
                noisy = " / ".join(fmt(r.get(f"recall_noisy@{x}")) for x in (1, 5, 20))
                cells = " | ".join(fmt(r.get(f"recall@{x}")) for x in KS)
                train = f"{r['train_seconds']:.0f}" if r.get("train_seconds") else "-"
                out.append(f"| {label} | {seed} | {cells} | {noisy} | {train} |")
            if len(rows) > 1:
                mean = {x: sum(r[f"recall@{x}"] for r in rows) / len(rows) for x in KS}
                noisy_mean = " / ".join(
                    fmt(sum(r.get(f"recall_noisy@{x}", 0) for r in rows) / len(rows)) for x in (1, 5, 20)
                )
                cells = " | ".join(f"**{mean[x]:.3f}**" for x in KS)
                out.append(f"| **{label} mean** | {len(rows)} seeds | {cells} | {noisy_mean} | |")
        out.extend(grid_table(entries))
        sys.stdout.write("\n".join(out) + "\n\n")


def grid_table(entries: dict) -> list[str]:
    """Mean recall over the hybrid runs' seeds for every BM25 weight, valid and test."""
    grids = [v["grid"] for k, v in entries.items() if k.startswith("block-scl-hybrid") and "grid" in v]
    if not grids:
        return []
    head = " | ".join(f"R@{k}" for k in KS)
    out = [
        "",
        f"Hybrid weight grid (clean queries, mean of {len(grids)} seeds; weight 0 = the dense blocker alone):",
        "",
    ]
    out.append(f"| BM25 weight | valid {head} | test {head} |")
    out.append("|---|" + "---|" * (2 * len(KS)))
    for weight in grids[0]["valid"]:
        cells = []
        for split in ("valid", "test"):
            for k in KS:
                cells.append(fmt(sum(g[split][weight][f"recall@{k}"] for g in grids) / len(grids)))
        out.append(f"| {weight} | " + " | ".join(cells) + " |")
    return out


if __name__ == "__main__":
    main()
