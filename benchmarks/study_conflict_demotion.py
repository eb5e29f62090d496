"""Would a hard rule beat the default matcher's head on conflicting pairs? A study on the answers
`bench_e2e.py` saved (`benchmarks/results/e2e_answers/`), no service needed.

For each offer the default matcher matched automatically, the pair signals of the offer and its
top candidate (:func:`models.pair_signals.pair_signals`) are read; every automatic match whose
identifiers, quantities or colours conflict is sent to review instead, and the pairwise F1 is
computed again over the same test pairs. The head already weighs these signals (learned on the
recipe's validation pairs); the rule asks whether overruling it would help on catalogues it
never saw.

    .venv/bin/python benchmarks/study_conflict_demotion.py \\
        --set ../shared/data/promap-en/promapen-test_data.csv=e2e_promapen_labels_s13 \\
        --set ../shared/data/abt-buy=e2e_abt-buy_fp32_amx_s16

Result: ``benchmarks/results/<--name>.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_e2e import read_benchmark  # noqa: E402
from benchmarks.common import RESULTS, write_result  # noqa: E402
from benchmarks.e2e_metrics import MATCH, REVIEW, Benchmark, OfferResult, evaluate  # noqa: E402
from benchmarks.study_e2e_answers import load_answers  # noqa: E402
from models.pair_signals import CONFLICT, PairSignals, pair_signals  # noqa: E402

logger = logging.getLogger("study_conflict_demotion")

RULES: dict[str, Callable[[PairSignals], bool]] = {
    "identifier": lambda s: s.identifier == CONFLICT,
    "quantity": lambda s: s.quantity == CONFLICT,
    "colour": lambda s: s.colour == CONFLICT,
    "any": lambda s: CONFLICT in (s.identifier, s.quantity, s.colour),
}


def study(bench: Benchmark, answers: Mapping[str, OfferResult]) -> dict[str, Any]:
    products = {p["external_id"]: p for p in bench.products}
    offers = {o.key: o.fields for o in bench.offers}
    signals = {
        key: pair_signals(offers[key], products[r.candidates[0]])
        for key, r in answers.items()
        if r.decision == MATCH and key in offers and r.candidates
    }
    positives = {(key, product) for key, product, label in (bench.known or bench.pairs) if label == 1}
    base = evaluate(answers, bench.pairs, bench.known)
    out: dict[str, Any] = {
        "offers": len(offers),
        "automatic_matches": len(signals),
        "f1": round(100 * base["pairwise"]["f1"], 2),
        "rules": {},
    }
    for name, conflicts in RULES.items():
        hit = {key for key, s in signals.items() if conflicts(s)}
        redecided = {k: dataclasses.replace(r, decision=REVIEW) if k in hit else r for k, r in answers.items()}
        m = evaluate(redecided, bench.pairs, bench.known)
        wrong = sum(1 for k in hit if (k, answers[k].candidates[0]) not in positives)
        out["rules"][name] = {
            "demoted": len(hit),
            "demoted_wrong_matches": wrong,
            "f1": round(100 * m["pairwise"]["f1"], 2),
            "delta_f1": round(100 * (m["pairwise"]["f1"] - base["pairwise"]["f1"]), 2),
        }
    return out


def parse_set(text: str) -> tuple[Path, str]:
    data, _, answers = text.partition("=")
    if not answers:
        raise argparse.ArgumentTypeError(f"expected DATA=ANSWERS_NAME, got {text!r}")
    return Path(data), answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", type=parse_set, action="append", required=True, help="DATA=ANSWERS_NAME")
    parser.add_argument("--scorer", default="default", help="the run in the answers file")
    parser.add_argument("--name", default="conflict_demotion")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    results: dict[str, Any] = {}
    for data, answers_name in args.set:
        answers = load_answers(RESULTS / "e2e_answers" / f"{answers_name}.json")[args.scorer]
        results[answers_name] = {"data": str(data), **study(read_benchmark(data), answers)}
        logger.info("%s: %s", answers_name, results[answers_name])
    path = write_result(args.name, {"command": " ".join(sys.argv), "scorer": args.scorer, "sets": results})
    logger.info("wrote %s", path)


if __name__ == "__main__":
    main()
