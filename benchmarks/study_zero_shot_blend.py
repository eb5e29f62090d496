"""Would averaging the default matcher with the zero-shot scorer transfer better? A study on saved scores.

Held out of the recipe, Abt-Buy's test pairs are ranked far better by the zero-shot scorer than
by the default matcher (`docs/benchmarks/default_loo.md`). Averaging the two probabilities,
``w * default + (1 - w) * zero_shot``, needs no training; this study reads every saved per-pair
score file of a benchmark neither model was fitted on and reports, for each weight ``w``, the
PR-AUC, the oracle F1 (best cut on the test labels) and the F1 at the fixed cut 0.5:

* leave one dataset out (`benchmarks/results/default_loo/scores/`): the recipe trained without the
  target; its ``head_probability`` and the service's ``zero_shot`` score on the target's test pairs;
* ProMap (`benchmarks/results/promap_scores/`): the shipped model (``default``) and zero-shot on the
  Walmart-Amazon, -Sears and -Target pairs nobody trained on (specification serialisation).

No compute beyond the metrics; nothing is sampled.

    .venv/bin/python benchmarks/study_zero_shot_blend.py

Result: ``benchmarks/results/zero_shot_blend.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from benchmarks.common import RESULTS, write_result  # noqa: E402
from training.metrics import best_f1_threshold, f1_at, pr_auc  # noqa: E402

logger = logging.getLogger("study_zero_shot_blend")

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
FIXED_CUT = 0.5


def blend_rows(default: np.ndarray, zero_shot: np.ndarray, labels: np.ndarray) -> list[dict[str, float]]:
    """PR-AUC, oracle F1 and F1 at :data:`FIXED_CUT` of each blend weight (1.0: the default alone)."""
    rows = []
    for w in WEIGHTS:
        scores = w * default + (1.0 - w) * zero_shot
        rows.append({
            "weight_default": w,
            "pr_auc": round(100 * pr_auc(scores, labels), 1),
            "oracle_f1": round(100 * best_f1_threshold(scores, labels).f1, 1),
            "f1_at_0.5": round(100 * f1_at(scores, labels, FIXED_CUT), 1),
        })  # fmt: skip
    return rows


def loo_sets(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    out = {}
    for path in sorted(folder.glob("*.json")):
        raw = json.loads(path.read_text(encoding="utf-8"))
        labels = np.asarray([int(p[2]) for p in raw["pairs"]])
        out[f"loo:{path.stem}"] = (np.asarray(raw["head_probability"]), np.asarray(raw["zero_shot"]), labels)
    return out


def promap_sets(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    raw = json.loads(path.read_text(encoding="utf-8"))
    out = {}
    for name, by_serialisation in raw.items():
        scores = by_serialisation["specification"]
        out[f"promap:{name}"] = (np.asarray(scores["default"]), np.asarray(scores["zero_shot"]),
                                 np.asarray(scores["label"]))  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--loo-scores", type=Path, default=RESULTS / "default_loo" / "scores")
    p.add_argument("--promap-scores", type=Path, default=RESULTS / "promap_scores" / "promap_transfer_v2.json")
    p.add_argument("--out", default="zero_shot_blend")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sets = {**loo_sets(args.loo_scores), **promap_sets(args.promap_scores)}
    results: dict[str, Any] = {}
    for name, (default, zero_shot, labels) in sets.items():
        results[name] = {"pairs": int(labels.size), "matches": int(labels.sum()),
                         "rows": blend_rows(default, zero_shot, labels)}  # fmt: skip
        for row in results[name]["rows"]:
            logger.info("%-50s w=%.2f PR-AUC %5.1f oracle F1 %5.1f F1@0.5 %5.1f", name, row["weight_default"],
                        row["pr_auc"], row["oracle_f1"], row["f1_at_0.5"])  # fmt: skip
    path = write_result(args.out, {
        "command": "benchmarks/study_zero_shot_blend.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "inputs": {"loo_scores": str(args.loo_scores), "promap_scores": str(args.promap_scores)},
        "fixed_cut": FIXED_CUT,
        "sets": results,
    })  # fmt: skip
    logger.info("wrote %s", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
