"""Would pulling the shipped cross-encoder toward other weights transfer better?

More epochs on the recipe's sources rank those sources better and the ProMap catalogues nobody
trained on worse (`docs/benchmarks.md`, "Two more epochs on top of release c"). Weight-space
interpolation between the pretrained and the fine-tuned model (WiSE-FT, Wortsman et al. 2022)
is the known cheap remedy for that trade: ``alpha * fine_tuned + (1 - alpha) * pretrained`` for
every transformer weight that has a pretrained counterpart, with no training. The classifier and
the LEA bias tables have none and stay as trained. With ``--toward DIR`` the other end is the
cross-encoder of another trained default-matcher folder instead (a "model soup" of two runs of
the recipe from the same pretrained start, Wortsman et al. 2022), and every tensor is averaged.

For each ``alpha`` this study scores, with the interpolated cross-encoder and the release's own
head (not refitted), every labelled pair of

* the ProMap files (Walmart-Amazon, -Sears, -Target; never trained on; specifications sent as
  attributes, as ``bench_promap.py`` and ``bench_e2e.py`` send them), and
* the Abt-Buy and Amazon-Google test splits (in domain: their training splits are recipe sources),

and reports the PR-AUC and oracle F1 of the cross-encoder's logits (its ranking of the pairs,
which no cut or head hides) and the PR-AUC of the head's probabilities. No cut is chosen on these
labels; nothing is sampled.

    .venv/bin/python benchmarks/study_weight_interpolation.py --alphas 1.0,0.9,0.8,0.7,0.5
    .venv/bin/python benchmarks/study_weight_interpolation.py --toward var/release-e --alphas 1.0,0.5,0.0 \
        --out weight_soup

Result: ``benchmarks/results/weight_interpolation.json``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.bench_default_loo import pct  # noqa: E402
from benchmarks.bench_promap import read_promap  # noqa: E402
from benchmarks.common import machine, write_result  # noqa: E402
from models.default_matcher import DefaultMatcher, load_default_matcher  # noqa: E402
from training.default_recipe.loo import load_target_test, score_default_matcher  # noqa: E402
from training.default_recipe.sources import ProductPair  # noqa: E402
from training.metrics import best_f1_threshold, pr_auc  # noqa: E402
from training.train_matcher import build_model  # noqa: E402

logger = logging.getLogger("study_weight_interpolation")

IN_DOMAIN = ("abt-buy", "amazon-google")


def interpolated_state(
    fine_tuned: dict[str, torch.Tensor], other: dict[str, torch.Tensor], alpha: float, prefix: str = ""
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """``alpha * fine_tuned + (1 - alpha) * other`` for the floating tensors under ``prefix`` that
    ``other`` holds in the same shape, in each tensor's own dtype; the rest stay fine-tuned (their
    names are returned: the classifier against a pretrained backbone)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    out, kept = {}, []
    for name, tuned in fine_tuned.items():
        base = other.get(name)
        if base is None or base.shape != tuned.shape or not tuned.is_floating_point() or not name.startswith(prefix):
            out[name] = tuned
            kept.append(name)
            continue
        mixed = alpha * tuned.float() + (1.0 - alpha) * base.float()
        out[name] = mixed.to(tuned.dtype)
    return out, kept


def pair_sets(promap: Path, data_root: Path | None) -> dict[str, list[ProductPair]]:
    sets = {f"promap:{stem.removesuffix('-test_data')}": pairs
            for stem, pairs in read_promap(promap, attributes=True).items()}  # fmt: skip
    for name in IN_DOMAIN:
        sets[f"in-domain:{name}"] = load_target_test(name, data_root)
    return sets


def judge(matcher: DefaultMatcher, pairs: list[ProductPair]) -> dict[str, Any]:
    scores = score_default_matcher(matcher, pairs)
    labels = np.asarray([p.label for p in pairs])
    return {
        "pairs": len(pairs),
        "positives": int(labels.sum()),
        "logit_pr_auc": pr_auc(scores.logits, labels),
        "logit_oracle_f1": best_f1_threshold(scores.logits, labels).f1,
        "head_pr_auc": pr_auc(scores.probabilities, labels),
    }


def table(rows: list[dict[str, Any]]) -> str:
    names = list(rows[0]["sets"])
    head = "| alpha | " + " | ".join(n.split(":", 1)[1] for n in names) + " | mean of the ProMap files |"
    lines = [head, "|---" * (len(names) + 2) + "|"]
    for row in rows:
        cells = [f"{pct(row['sets'][n]['logit_pr_auc'])} / {pct(row['sets'][n]['head_pr_auc'])}" for n in names]
        lines.append(f"| {row['alpha']} | " + " | ".join(cells) + f" | {row['promap_mean_logit_pr_auc']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=ROOT / "artefacts" / "default-matcher")
    p.add_argument(
        "--toward",
        type=Path,
        default=None,
        help="a trained default-matcher folder as the other end (default: the pretrained backbone)",
    )
    p.add_argument("--alphas", default="1.0,0.9,0.8,0.7,0.5", help="comma-separated weights of the fine-tuned model")
    p.add_argument("--promap", type=Path, default=ROOT.parent / "shared" / "data" / "promap-en")
    p.add_argument("--data-root", type=Path, default=None, help="benchmark folder (default: PRODUCTMATCH_DATA)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="weight_interpolation")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    alphas = [float(a) for a in args.alphas.split(",")]

    matcher = load_default_matcher(args.model)
    fine_tuned = {k: v.detach().clone() for k, v in matcher.model.state_dict().items()}
    settings = matcher.manifest.settings
    if args.toward is None:
        other = build_model(str(settings["arch"]), str(settings["backbone"]), matcher.model.max_length)
    else:
        other = load_default_matcher(args.toward).model
        if other.max_length != matcher.model.max_length:
            raise SystemExit(f"{args.toward}: max length {other.max_length}, {args.model}: {matcher.model.max_length}")
    base = {k: v.detach() for k, v in other.state_dict().items()}
    # A fresh model's LEA bias tables are a random start, not pretrained knowledge: kept as trained.
    prefix = "model." if args.toward is None else ""
    sets = pair_sets(args.promap, args.data_root)
    rows, kept = [], []
    for alpha in alphas:
        state, kept = interpolated_state(fine_tuned, base, alpha, prefix)
        matcher.model.load_state_dict(state, strict=True)
        started = time.perf_counter()
        judged = {name: judge(matcher, pairs) for name, pairs in sets.items()}
        promap = [v["logit_pr_auc"] for k, v in judged.items() if k.startswith("promap:")]
        rows.append({"alpha": alpha, "sets": judged, "promap_mean_logit_pr_auc": pct(float(np.mean(promap))),
                     "seconds": round(time.perf_counter() - started, 1)})  # fmt: skip
        logger.info("alpha %.2f: ProMap mean logit PR-AUC %s (%.0f s)", alpha, rows[-1]["promap_mean_logit_pr_auc"],
                    rows[-1]["seconds"])  # fmt: skip
    result = {
        "machine": machine(),
        "settings": {**{k: str(v) for k, v in vars(args).items()}, "kept_fine_tuned": kept,
                     "other_end": "pretrained backbone" if args.toward is None else str(args.toward),
                     "precision": matcher.model.precision, "head": "the release's own, not refitted"},
        "rows": rows,
        "table": table(rows),
    }  # fmt: skip
    path = write_result(args.out, result)
    print(result["table"])
    logger.info("wrote %s", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
