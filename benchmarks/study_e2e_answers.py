"""Studies on the answers `bench_e2e.py` saved (`benchmarks/results/e2e_answers/`), no service needed.

* **oracle cut**: the best pairwise F1 any single match cut reaches on a run's saved ranking,
  i.e. what the scorer could do if the cut were chosen on the test labels (an upper bound for
  every calibration; the ranking does not depend on the cut).
* **rerank depth**: what the scorer would have decided had it scored only the blocking's first
  N candidates (a cheaper rerank), from the saved scores and blocking ranks.
* **unsupervised cut**: can a catalogue's match cut adapt to it with no labels at all? From the
  top-1 scores of its own offers alone, the cut with the best *expected* F1, the chance that a
  top candidate is right taken either as its score (the head's calibration, "plug-in") or as the
  posterior of the higher of a two-component beta mixture fitted to those scores ("mixture",
  :class:`training.noise.bmm.BetaMixture`); reported beside the served cut's F1.
* **audit study**: would an audit sample of automatic matches help the per-catalogue refit?
  A reviewer labels the review items in queue order plus a deterministic share of the ``match``
  decisions (hash of the offer), the thresholds are refitted on those labels, either as the
  service does (:func:`app.pipeline.calibration.fit_catalogue`, precision target) or at the best
  F1 of the labels weighted by the inverse sampling share, and the offers left are decided again.

    .venv/bin/python benchmarks/study_e2e_answers.py --data ../shared/data/promap-en/promapen-test_data.csv \\
        --answers benchmarks/results/e2e_answers/e2e_promapen.json --audit

The scorers' own cuts come from the result file beside the answers (``benchmarks/results/<same
name>``). Result: ``benchmarks/results/e2e_answer_studies/<answers name>``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from benchmarks.bench_e2e import read_benchmark  # noqa: E402
from benchmarks.common import RESULTS, git_rev  # noqa: E402
from benchmarks.e2e_metrics import (  # noqa: E402
    MATCH,
    REVIEW,
    Benchmark,
    OfferResult,
    evaluate,
    redecide,
    restrict,
    reviewer_label,
    truths,
)

logger = logging.getLogger("study_e2e_answers")


def _score(value: Any) -> float | None:
    return None if value is None else float(value)


def load_answers(path: Path) -> dict[str, dict[str, OfferResult]]:
    """Per scorer, per offer key: the saved decision and ranked candidates with their scores (and,
    in files written since session 17, each candidate's place in the blocking list)."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    out: dict[str, dict[str, OfferResult]] = {}
    for scorer, answers in raw.items():
        out[scorer] = {
            key: OfferResult(
                decision,
                tuple(str(entry[0]) for entry in ranked),
                _score(ranked[0][1]) if ranked else None,
                tuple(_score(entry[1]) for entry in ranked),
                tuple(int(entry[2]) for entry in ranked) if ranked and len(ranked[0]) > 2 else (),
            )
            for key, (decision, ranked) in answers.items()
        }
    return out


def oracle_cut(results: Mapping[str, OfferResult], bench: Benchmark) -> dict[str, Any]:
    """The match cut with the best pairwise F1 on the test labels, and the figures there."""
    best: tuple[float, dict[str, Any]] | None = None
    for cut in np.unique([r.top_score for r in results.values() if r.top_score is not None]):
        metrics = evaluate(redecide(results, float(cut), float(cut)), bench.pairs, bench.known)
        if best is None or metrics["pairwise"]["f1"] > best[1]["pairwise"]["f1"]:
            best = (float(cut), metrics)
    if best is None:
        return {"cut": None}
    cut, m = best
    return {"cut": cut, "pairwise": m["pairwise"], "auto_match_precision": m["auto_match_precision"],
            "coverage": m["coverage"]}  # fmt: skip


def _audited(key: str, share: float) -> bool:
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16) / 2**32 < share


def _best_f1_cut(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> float | None:
    best: tuple[float, float] | None = None
    for cut in np.unique(scores):
        accepted = scores >= cut
        tp = float((weights * accepted * labels).sum())
        fp = float((weights * accepted * (1 - labels)).sum())
        fn = float((weights * ~accepted * labels).sum())
        f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
        if best is None or f1 > best[1]:
            best = (float(cut), f1)
    return None if best is None else best[0]


def audit_study(
    results: Mapping[str, OfferResult],
    bench: Benchmark,
    own: tuple[float, float],
    shares: Sequence[float],
    steps: Sequence[int],
    target_precision: float,
) -> list[dict[str, Any]]:
    """One row per (audit share, labels, refit): F1 of the offers not labelled, before and after."""
    from app.pipeline.calibration import UnfittableLabels, fit_catalogue
    from app.pipeline.scoring import Decider

    truth = truths(bench.known)
    rows = []
    for share in shares:
        for n in steps:
            labelled: list[tuple[float, float, float]] = []
            keys: set[str] = set()
            for key, res in results.items():  # queue order: the offers' order
                queued = res.decision == REVIEW or (res.decision == MATCH and share > 0 and _audited(key, share))
                label = reviewer_label(res.top, truth.get(key)) if queued and res.top is not None else None
                if label is None or res.top_score is None:
                    continue
                weight = 1.0 if res.decision == REVIEW else 1.0 / share
                labelled.append((res.top_score, float(label == MATCH), weight))
                keys.add(key)
                if len(labelled) >= n:
                    break
            scores, labels, weights = (np.asarray(c) for c in zip(*labelled, strict=True)) if labelled else (
                np.zeros(0), np.zeros(0), np.zeros(0))  # fmt: skip
            rest = {k: r for k, r in results.items() if k not in keys}
            pairs = restrict(bench.pairs, rest.keys())
            before = evaluate(rest, pairs, bench.known)["pairwise"]["f1"]
            cuts: dict[str, tuple[float, float]] = {}
            try:
                fit = fit_catalogue(scores, labels, target_precision, 0.2, Decider(*own))
                cuts["service refit"] = (fit.match_threshold, fit.review_threshold)
            except UnfittableLabels:
                cuts["service refit"] = own
            f1_cut = _best_f1_cut(scores, labels, weights) if labels.size and labels.min() != labels.max() else None
            cuts["weighted best-F1 cut"] = own if f1_cut is None else (f1_cut, min(own[1], f1_cut))
            for refit, (match_at, review_at) in cuts.items():
                after = evaluate(redecide(rest, match_at, review_at), pairs, bench.known)["pairwise"]["f1"]
                rows.append({"audit_share": share, "labels_requested": n, "labels": len(labelled), "refit": refit,
                             "match_cut": match_at, "f1_before": before, "f1_after": after})  # fmt: skip
    return rows


def at_rerank_depth(
    results: Mapping[str, OfferResult], depth: int, cuts: tuple[float, float]
) -> dict[str, OfferResult]:
    """The answers had the scorer seen only the first ``depth`` candidates of the blocking list.

    Exact for a scorer whose score of a pair does not depend on the offer's other candidates (the
    zero-shot scorer, a matcher, a default-matcher head without the margin feature): the others'
    scores are the ones saved, so only the choice among them changes, decided at the same cuts.
    """
    from app.pipeline.scoring import Decider

    decider = Decider(*cuts)
    out: dict[str, OfferResult] = {}
    for key, r in results.items():
        if len(r.retrieval_ranks) != len(r.candidates):
            raise ValueError("these answers carry no blocking ranks (saved before session 17): rerun bench_e2e.py")
        # The saved order is the service's (score, then cosine, then id): filtering keeps its ties.
        kept = [(c, sc, k) for c, sc, k in zip(r.candidates, r.scores, r.retrieval_ranks, strict=True) if k <= depth]
        if any(sc is None for _, sc, _ in kept):
            raise ValueError(f"depth {depth} is deeper than the RERANK_DEPTH these answers were served with")
        top = kept[0][1] if kept else None
        out[key] = OfferResult(
            decider.decide(top),
            tuple(c for c, _, _ in kept),
            top,
            tuple(sc for _, sc, _ in kept),
            tuple(k for _, _, k in kept),
        )
    return out


def rerank_depth_study(
    results: Mapping[str, OfferResult], bench: Benchmark, cuts: tuple[float, float], depths: Sequence[int]
) -> list[dict[str, Any]]:
    """F1, automatic share, automatic-match precision and coverage at each rerank depth."""
    rows = []
    for depth in depths:
        m = evaluate(at_rerank_depth(results, depth, cuts), bench.pairs, bench.known)
        rows.append(
            {
                "depth": depth,
                "f1": m["pairwise"]["f1"],
                "precision": m["pairwise"]["precision"],
                "recall": m["pairwise"]["recall"],
                "auto_share": m["auto_share"],
                "auto_match_precision": m["auto_match_precision"],
                "coverage": m["coverage"],
            }
        )
    return rows


def expected_f1_cut(scores: np.ndarray, p_right: np.ndarray) -> float | None:
    """The cut on ``scores`` with the best F1 if each top candidate is right with ``p_right``."""
    best: tuple[float, float] | None = None
    for cut in np.unique(scores):
        accepted = scores >= cut
        tp, fp, fn = p_right[accepted].sum(), (1.0 - p_right[accepted]).sum(), p_right[~accepted].sum()
        f1 = float(2 * tp / (2 * tp + fp + fn)) if tp > 0 else 0.0
        if best is None or f1 > best[1]:
            best = (float(cut), f1)
    return None if best is None else best[0]


def unsupervised_cut_study(
    results: Mapping[str, OfferResult], bench: Benchmark, cuts: tuple[float, float]
) -> dict[str, Any]:
    """F1 at the served cut and at the two label-free expected-F1 cuts (review cut kept below)."""
    from training.noise.bmm import BetaMixture

    scores = np.asarray([r.top_score for r in results.values() if r.top_score is not None], dtype=np.float64)
    mixture = BetaMixture(iterations=50).fit(scores)
    right = int(np.argmax(mixture.means()))
    chosen = {
        "served": cuts[0],
        "plug-in": expected_f1_cut(scores, scores),
        "mixture": expected_f1_cut(scores, mixture.posterior(scores, component=right)),
    }
    out: dict[str, Any] = {"beta_mixture": {**mixture.to_dict(), "right_component": right}}
    for name, cut in chosen.items():
        if cut is None:
            out[name] = {"cut": None}
            continue
        m = evaluate(redecide(results, cut, min(cut, cuts[1])), bench.pairs, bench.known)
        out[name] = {"cut": cut, "f1": m["pairwise"]["f1"], "precision": m["pairwise"]["precision"],
                     "recall": m["pairwise"]["recall"]}  # fmt: skip
    return out


def own_cuts(answers: Path) -> dict[str, tuple[float, float]]:
    """Each scorer's (match, review) cuts, from the result file beside the answers file."""
    result = json.loads((answers.parent.parent / answers.name).read_text(encoding="utf-8"))
    return {run["scorer"]: (run["thresholds"]["match"], run["thresholds"]["review"]) for run in result["runs"]}


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="the benchmark the answers are for (as bench_e2e)")
    p.add_argument("--answers", type=Path, required=True, help="a file of benchmarks/results/e2e_answers/")
    p.add_argument("--audit", action="store_true", help="run the audit study too")
    p.add_argument("--shares", default="0,0.1,0.2,0.3")
    p.add_argument("--steps", default="25,50,100")
    p.add_argument("--target-precision", type=float, default=0.95)
    p.add_argument("--unsupervised-cut", action="store_true", help="label-free per-catalogue cuts too")
    p.add_argument("--rerank-depths", default="", help="e.g. 3,5,7,10: score only the blocking's first N")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    bench = read_benchmark(args.data)
    out: dict[str, Any] = {"git": git_rev(), "settings": {k: str(v) for k, v in vars(args).items()}, "scorers": {}}
    cuts = own_cuts(args.answers)
    for scorer, results in load_answers(args.answers).items():
        entry: dict[str, Any] = {"oracle": oracle_cut(results, bench)}
        logger.info("%s: oracle cut %s, F1 %.3f", scorer, entry["oracle"]["cut"],
                    entry["oracle"].get("pairwise", {}).get("f1", float("nan")))  # fmt: skip
        if args.audit:
            shares = [float(s) for s in args.shares.split(",")]
            steps = [int(s) for s in args.steps.split(",")]
            entry["audit"] = audit_study(results, bench, cuts[scorer], shares, steps, args.target_precision)
            for row in entry["audit"]:
                logger.info("%s audit %.1f, %d labels, %s: F1 %.3f -> %.3f (cut %.3f)", scorer,
                            row["audit_share"], row["labels"], row["refit"], row["f1_before"], row["f1_after"],
                            row["match_cut"])  # fmt: skip
        if args.unsupervised_cut:
            entry["unsupervised_cut"] = unsupervised_cut_study(results, bench, cuts[scorer])
            for name in ("served", "plug-in", "mixture"):
                row = entry["unsupervised_cut"][name]
                logger.info("%s %s cut %s: F1 %s", scorer, name, row["cut"], row.get("f1"))
        if args.rerank_depths:
            depths = [int(d) for d in args.rerank_depths.split(",")]
            entry["rerank_depth"] = rerank_depth_study(results, bench, cuts[scorer], depths)
            for row in entry["rerank_depth"]:
                logger.info("%s rerank depth %d: F1 %.3f, auto %.3f, auto-match precision %s, coverage %s", scorer,
                            row["depth"], row["f1"], row["auto_share"], row["auto_match_precision"],
                            row["coverage"])  # fmt: skip
        out["scorers"][scorer] = entry
    target = args.out or RESULTS / "e2e_answer_studies" / args.answers.name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(f"written {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
