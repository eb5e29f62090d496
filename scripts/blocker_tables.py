"""Print the per-dataset markdown tables of docs/benchmarks/blocker.md from blocker.json (or the file given)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "blocker.json"
ORDER = ["zero-shot", "lexical", "mnrl", "block-scl", "block-scl-wise"]
LABEL = {
    "zero-shot": "zero-shot MiniLM",
    "lexical": "token_set_ratio",
    "mnrl": "MNRL",
    "block-scl": "Block-SCL",
    "block-scl-wise": "Block-SCL + interpolation",
}
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
            for k, r in zip(keys, rows):
                seed = k.split("seed")[1] if "seed" in k else "-"
                noisy = " / ".join(fmt(r.get(f"recall_noisy@{x}")) for x in (1, 5, 20))
                cells = " | ".join(fmt(r.get(f"recall@{x}")) for x in KS)
                train = f"{r['train_seconds']:.0f}" if r.get("train_seconds") else "-"
                out.append(f"| {LABEL[method]} | {seed} | {cells} | {noisy} | {train} |")
            if len(rows) > 1:
                mean = {x: sum(r[f"recall@{x}"] for r in rows) / len(rows) for x in KS}
                noisy_mean = " / ".join(
                    fmt(sum(r.get(f"recall_noisy@{x}", 0) for r in rows) / len(rows)) for x in (1, 5, 20)
                )
                cells = " | ".join(f"**{mean[x]:.3f}**" for x in KS)
                out.append(f"| **{LABEL[method]} mean** | {len(rows)} seeds | {cells} | {noisy_mean} | |")
        sys.stdout.write("\n".join(out) + "\n\n")


if __name__ == "__main__":
    main()
