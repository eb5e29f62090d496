"""Which head and which cut carry over to a catalogue the default matcher never saw?

For a default-matcher folder, every training source's validation offers are ranked like the
service ranks them (hybrid top-k over the source's catalogue, ``training/default_recipe/ranked.py``)
and scored by the folder's cross-encoder. Then, for each source S in turn, a head is fitted
*without S* and the match cut is chosen on the *other* sources' top-1 decisions; the figures are
S's top-1 decisions at that cut. That is the transfer a new catalogue gets, measured per source.

Variants: the head fitted on the pooled validation pairs (today's recipe), on the ranked lists'
judged candidates, or on both; each with and without the candidate-margin features (the margin
to the best other candidate of the same list). Cuts: best offer-F1, and the lowest cut whose
precision envelope reaches 0.9 / 0.95. Baseline: the folder's stored head at its pairwise cut
for HEAD_PAIR_PRECISION 0.9 (what served before; fitted with every source, so optimistic).

    .venv/bin/python benchmarks/bench_head_ranked.py --model artefacts/default-matcher
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import machine  # noqa: E402
from models.default_matcher import load_default_matcher  # noqa: E402
from models.match_head import BASE_FEATURES, MARGIN_FEATURES, candidate_margins  # noqa: E402
from training.default_recipe.decide import ranked_features  # noqa: E402
from training.default_recipe.head import fit_logistic, leave_source_out  # noqa: E402
from training.default_recipe.mixture import pooled_validation, source_weights  # noqa: E402
from training.default_recipe.ranked import (  # noqa: E402
    UNKNOWN,
    RankedList,
    TopDecisions,
    decision_stats,
    ranked_validation,
    subset,
    top1_cuts,
    top_of_lists,
)
from training.default_recipe.refit import config_from_manifest  # noqa: E402
from training.default_recipe.sources import load_sources  # noqa: E402
from training.default_recipe.train import head_inputs  # noqa: E402

logger = logging.getLogger("bench_head_ranked")
TARGETS = (0.9, 0.95)


def _keys(lists: list[RankedList]) -> list[str]:
    return [f"{r.source}\t{r.offer_id}\t{c}" for r in lists for c in r.candidate_ids]


def _base_rows(matcher: Any, lists: list[RankedList], keys: list[str], known: dict[str, np.ndarray]) -> np.ndarray:
    """Logit, cosine and signal rows of every candidate; those not in ``known`` are scored (and added)."""
    missing = []
    for r in lists:
        todo = [i for i, c in enumerate(r.candidate_ids) if _key(r, c) not in known]
        if todo:
            missing.append(replace(
                r,
                candidate_ids=tuple(r.candidate_ids[i] for i in todo),
                candidates=tuple(r.candidates[i] for i in todo),
                cosines=tuple(r.cosines[i] for i in todo),
                labels=tuple(r.labels[i] for i in todo),
            ))  # fmt: skip
    if missing:
        logger.info("scoring %d new candidates", sum(len(r.candidates) for r in missing))
        rows = ranked_features(matcher.model, missing, matcher.fields, matcher.signals, matcher.head.n_signals, False)
        known.update(zip(_keys(missing), rows, strict=True))
    return np.stack([known[k] for k in keys])


def _key(r: RankedList, candidate: str) -> str:
    return f"{r.source}\t{r.offer_id}\t{candidate}"


def _keys(lists: list[RankedList]) -> list[str]:
    return [_key(r, c) for r in lists for c in r.candidate_ids]


def features(args: argparse.Namespace) -> dict[str, Any]:
    """Pair and ranked-list feature rows (margin columns last) and the lists' labels.

    The lists and their labels are rebuilt every run (a labelling change needs no rescoring);
    logit/cosine/signal rows are cached in ``--cache`` by (source, offer, candidate).
    """
    cache = Path(args.cache)
    cached = dict(np.load(cache, allow_pickle=False)) if cache.is_file() and not args.refresh else {}
    matcher = load_default_matcher(args.model)
    cfg = config_from_manifest(matcher.manifest.settings)
    sources = load_sources(cfg.active_sources(), args.data_root)
    valid = pooled_validation(sources, cfg.valid_per_source, seed=cfg.seed)
    n_signals = matcher.head.n_signals
    t0 = time.perf_counter()
    if "pair_x" in cached and len(cached["pair_x"]) == len(valid):
        pair_x = cached["pair_x"]
    else:
        pair_x, _ = head_inputs(matcher.model, matcher.bi_encoder, valid, matcher.fields, matcher.signals, n_signals,
                                True, 128)  # fmt: skip
    lists = ranked_validation(sources, matcher.bi_encoder, k=args.k, offers_per_source=args.offers,
                              absent_share=args.absent, seed=cfg.seed)  # fmt: skip
    keys = _keys(lists)
    known = dict(zip(cached.get("ranked_keys", np.zeros(0, dtype=str)).tolist(), cached.get("ranked_base", [])))
    base = _base_rows(matcher, lists, keys, known)
    groups = [(r.source, r.offer_id) for r in lists for _ in r.candidates]
    ranked_x = np.concatenate([base, candidate_margins(base[:, 0], groups)], axis=1)
    logger.info("features of %d pairs and %d ranked candidates in %.0f s", len(valid), len(keys),
                time.perf_counter() - t0)  # fmt: skip
    cache.parent.mkdir(parents=True, exist_ok=True)
    order = sorted(known)
    np.savez(cache, pair_x=pair_x, ranked_keys=np.asarray(order), ranked_base=np.stack([known[k] for k in order]))
    stored = matcher.head
    return {
        "pair_x": pair_x,
        "pair_y": np.asarray([p.label for p in valid], dtype=np.float64),
        "pair_src": np.asarray([p.source for p in valid]),
        "ranked_x": ranked_x,
        "ranked_y": np.asarray([y for r in lists for y in r.labels], dtype=np.int64),
        "ranked_src": np.asarray([r.source for r in lists for _ in r.candidates]),
        "list_sizes": np.asarray([len(r.candidates) for r in lists], dtype=np.int64),
        "list_src": np.asarray([r.source for r in lists]),
        "list_has_match": np.asarray([r.has_match for r in lists], dtype=bool),
        "list_judged": np.asarray([r.fully_judged for r in lists], dtype=bool),
        "stored_cut": float(stored.thresholds_for_precision.get("0.9") or stored.threshold),
        "stored_probs": stored.apply(ranked_x[:, : len(stored.feature_names)]) if not stored.margin else None,
        "feature_names": list(BASE_FEATURES) + list(stored.feature_names[2 : 2 + n_signals]) + list(MARGIN_FEATURES),
    }


class Lists:
    """The cached list structure: top-1 decisions from per-candidate probabilities."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.sizes = data["list_sizes"]
        self.src = data["list_src"]
        self.has_match = data["list_has_match"]
        self.labels = data["ranked_y"]
        self.judged = data["list_judged"]

    def top(self, probs: np.ndarray) -> TopDecisions:
        return top_of_lists(self.sizes, self.labels, self.has_match, list(self.src), probs)


def transfer(top: TopDecisions, lists: Lists) -> dict[str, Any]:
    """Each source at the cuts chosen on the *other* fully judged sources' decisions (what
    ``decide.py`` does with all of them); the summary averages the fully judged sources."""
    per_source: dict[str, Any] = {}
    for name in sorted(set(lists.src)):
        own = lists.src == name
        basis = subset(top, ~own & lists.judged) if (~own & lists.judged).any() else subset(top, ~own)
        best, table = top1_cuts(basis, TARGETS)
        mine = subset(top, own)
        row: dict[str, Any] = {"fully_judged": bool(lists.judged[own].all()),
                               "best_f1": decision_stats(mine, best["threshold"])}  # fmt: skip
        for target, stats in table.items():
            row[f"p{target}"] = None if stats is None else decision_stats(mine, stats["threshold"])
        row["oracle"] = top1_cuts(mine, ())[0]
        per_source[name] = row
    summary = {}
    for cut in ("best_f1", *(f"p{t}" for t in TARGETS), "oracle"):
        rows = [
            r[cut] or {"precision": 0.0, "coverage": 0.0, "f1": 0.0} for r in per_source.values() if r["fully_judged"]
        ]
        summary[cut] = {k: float(np.mean([r[k] for r in rows])) for k in ("precision", "coverage", "f1")}
    return {"summary": summary, "per_source": per_source}


def variants(data: dict[str, Any], l2: float) -> dict[str, Any]:
    lists = Lists(data)
    n_base = data["pair_x"].shape[1] - len(MARGIN_FEATURES)
    judged = data["ranked_y"] != UNKNOWN
    out: dict[str, Any] = {}
    if data["stored_probs"] is not None:
        top = lists.top(data["stored_probs"])
        out["stored head, pairwise-0.9 cut (in-source)"] = {
            "per_source": {
                n: decision_stats(subset(top, lists.src == n), data["stored_cut"]) for n in sorted(set(lists.src))
            },
        }
    for fit in ("pairs", "ranked", "both"):
        for margin in (False, True):
            cols = slice(None) if margin else slice(0, n_base)
            xs, ys, ss = [], [], []
            if fit in ("pairs", "both"):
                xs.append(data["pair_x"][:, cols])
                ys.append(data["pair_y"])
                ss.append(data["pair_src"])
            if fit in ("ranked", "both"):
                xs.append(data["ranked_x"][judged][:, cols])
                ys.append(data["ranked_y"][judged].astype(np.float64))
                ss.append(data["ranked_src"][judged])
            x, y, src = np.concatenate(xs), np.concatenate(ys), np.concatenate(ss)
            w = source_weights(list(src))
            probs = leave_source_out(x, y, w, list(src), data["ranked_x"][:, cols], list(data["ranked_src"]), l2)
            name = f"fit on {fit}{', margin' if margin else ''}"
            top = lists.top(probs)
            out[name] = transfer(top, lists)
            # What decide.py stores: the cuts on every fully judged source's decisions at once.
            best, table = top1_cuts(subset(top, lists.judged), TARGETS)
            out[name]["recipe_cuts"] = {"best_f1": best, **{f"p{k}": v for k, v in table.items()}}
            _, _, coef, _ = fit_logistic(x, y, w, l2)
            names = data["feature_names"][: x.shape[1]]
            out[name]["coef_all_sources"] = dict(zip(names, [float(c) for c in coef], strict=True))
            s = out[name]["summary"]
            logger.info("%-24s best-F1 cut: P %.3f C %.3f F1 %.3f | p0.95 cut: P %.3f C %.3f F1 %.3f", name,
                        s["best_f1"]["precision"], s["best_f1"]["coverage"], s["best_f1"]["f1"],
                        s["p0.95"]["precision"], s["p0.95"]["coverage"], s["p0.95"]["f1"])  # fmt: skip
    return out


SHOWN = ("abt-buy", "amazon-google", "wdc-products")


def table(result: dict[str, Any]) -> str:
    """The markdown table of docs/benchmarks/default_loo.md: judged precision / coverage of the
    top-1 decisions of each fully judged source at the cut chosen without it."""

    def cell(stats: dict[str, Any] | None) -> str:
        return "–" if stats is None else f"{100 * stats['precision']:.1f} / {100 * stats['coverage']:.1f}"

    names = [n for n in SHOWN if any(n in v["per_source"] for v in result["variants"].values())]
    lines = [
        "| head fitted on | cut | " + " | ".join(f"{n} P / C" for n in names) + " | mean offer-F1 |",
        "|---|---|" + "---|" * len(names) + "---|",
    ]
    for name, v in result["variants"].items():
        if "summary" not in v:
            lines.append(f"| {name} | | " + " | ".join(cell(v["per_source"].get(n)) for n in names) + " | – |")
            continue
        for cut, label in (("best_f1", "top-1 best F1"), ("p0.95", "top-1 precision 0.95"), ("oracle", "oracle")):
            cells = " | ".join(cell(v["per_source"][n][cut]) for n in names)
            mean = 100 * v["summary"][cut]["f1"]
            lines.append(f"| {name.removeprefix('fit on ')} | {label} | {cells} | {mean:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(ROOT / "artefacts" / "default-matcher"))
    p.add_argument("--data-root", default=None)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--offers", type=int, default=300, help="validation offers per source")
    p.add_argument("--absent", type=float, default=0.5, help="share of offers whose product is taken out")
    p.add_argument("--l2", type=float, default=1.0)
    p.add_argument("--cache", default=str(ROOT / "benchmarks" / "out" / "head_ranked_features.npz"))
    p.add_argument("--refresh", action="store_true")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "head_ranked.json"))
    p.add_argument("--table", action="store_true", help="print the table of --out and stop")
    args = p.parse_args(argv)
    if args.table:
        print(table(json.loads(Path(args.out).read_text(encoding="utf-8"))))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    data = features(args)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "model": str(args.model),
        "settings": {
            "k": args.k,
            "offers_per_source": args.offers,
            "absent_share": args.absent,
            "l2": args.l2,
            "targets": TARGETS,
        },  # fmt: skip
        "variants": variants(data, args.l2),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2), encoding="utf-8")
    logger.info("wrote %s", args.out)
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
