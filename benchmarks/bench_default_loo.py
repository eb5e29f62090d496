"""Leave-one-dataset-out evaluation of the default matcher recipe (issue 15, item 5).

For each held-out benchmark X (Abt-Buy, Amazon-Google, WDC Products 100 % unseen) the recipe is
trained without X (``--exclude X``; WDC Block goes with WDC Products, it was cut from it) and
tested on X's test split: at the recipe's own threshold (chosen on its pooled validation, X
decides nothing) and, labelled oracle, at the best threshold on X's test labels; the
cross-encoder alone and the service's zero-shot scorer (bi-encoder cosine + lexical signals,
``app/pipeline/scoring.py``) on the same pairs beside it.

Resumable like ``benchmarks/protocol.py``: one result file per run in
``benchmarks/results/default_loo/``, a run with a result file is skipped, a live lock file
leaves a run to the process holding it, and an interrupted training continues from its last
epoch (model folders and checkpoints in ``benchmarks/out/default_loo/``, not committed).

    nohup .venv/bin/python benchmarks/bench_default_loo.py run >> benchmarks/out/default_loo.log 2>&1 &
    .venv/bin/python benchmarks/bench_default_loo.py run --budget smoke --targets abt-buy   # minutes
    .venv/bin/python benchmarks/bench_default_loo.py run --variant margin      # an ablation
    .venv/bin/python benchmarks/bench_default_loo.py status
    .venv/bin/python benchmarks/bench_default_loo.py table
    .venv/bin/python benchmarks/bench_default_loo.py indomain --model artefacts/default-matcher

``indomain`` judges one model folder (the shipped one, trained on every source) on the test
splits of the sources it trained on (WDC Products: its seen-products test), beside the zero-shot
scorer and the published Ditto figures; one result file per model in
``benchmarks/results/default_indomain/``. The test splits never fed training or the head.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import OUT, RESULTS, git_rev, machine  # noqa: E402
from benchmarks.protocol import pending, read_results, result_path, try_lock, write_result  # noqa: E402
from training.default_recipe.config import BUDGETS, DEFAULT_SOURCES  # noqa: E402
from training.default_recipe.loo import LOO_TARGETS  # noqa: E402

logger = logging.getLogger("default_loo")

PROTOCOL = "default_loo"
INDOMAIN = "default_indomain"
WORK_ROOT = OUT / PROTOCOL


@dataclass(frozen=True)
class InDomainTest:
    """A training source's own test split and the published in-domain Ditto F1 on it."""

    source: str
    reader_overrides: dict[str, Any]
    label: str
    ditto_f1: float


#: Ditto (Li et al., 2020; WDC Products: Peeters et al., 2024, 80 % corner cases, seen).
IN_DOMAIN_TESTS: dict[str, InDomainTest] = {
    "abt-buy": InDomainTest("abt-buy", {}, "Abt-Buy", 89.33),
    "amazon-google": InDomainTest("amazon-google", {}, "Amazon-Google", 75.58),
    "wdc-products-seen": InDomainTest("wdc-products", {"test": "000un"}, "WDC Products seen", 79.08),
}


#: Ablations of the recipe, as config overrides: the head with the candidate margin (off by
#: default: the benchmarks' candidate lists are their labelled pairs, 1-5 per offer, not the
#: service's top 10) and the head without the pair signals.
VARIANTS: dict[str, dict[str, Any]] = {
    "": {},
    "margin": {"margin": True},
    "no-signals": {"signals": "none"},
    # Batch composition, named explicitly: grouped by token length (the recipe's default since
    # session 18; rows before it were random batches) or random.
    "length-grouping": {"length_grouping": True},
    "random-batches": {"length_grouping": False},
}


@dataclass(frozen=True)
class LooRun:
    """One held-out benchmark, seed, budget and variant; ``name`` is its result file's stem."""

    target: str
    seed: int
    budget: str = "full"
    variant: str = ""
    protocol: str = PROTOCOL

    @property
    def name(self) -> str:
        parts = [self.target, f"seed{self.seed}"] + ([self.budget] if self.budget != "full" else [])
        return "__".join(parts + ([self.variant] if self.variant else []))


def zero_shot_scores(pairs: list[Any], max_length: int) -> tuple[list[float], dict[str, float]]:
    """The service's zero-shot scorer on each pair, and its decision thresholds from the settings."""
    from app.core.config import Settings
    from app.pipeline.scoring import ZeroShotScorer
    from models.bi_encoder import BiEncoder
    from models.product_text import embed_text

    encoder = BiEncoder.from_pretrained("minilm", max_length=max_length)
    left = encoder.encode([embed_text(p.left) for p in pairs])
    right = encoder.encode([embed_text(p.right) for p in pairs])
    scorer = ZeroShotScorer()
    scores = [
        scorer.score(p.left, [p.right], [float(a @ b)])[0].score for p, a, b in zip(pairs, left, right, strict=True)
    ]
    fields = Settings.model_fields
    thresholds = {k: float(fields[k].default) for k in ("match_threshold", "review_threshold")}
    return scores, thresholds


def run_one(run: LooRun, args: argparse.Namespace) -> dict[str, Any]:
    from models.default_matcher import load_default_matcher
    from training.default_recipe.config import budget_config
    from training.default_recipe.loo import load_target_test, loo_config
    from training.default_recipe.train import train_default

    work = args.work / run.name
    folder = work / "model"
    base = budget_config(run.budget, seed=run.seed, threads=args.threads, **VARIANTS[run.variant])
    config = loo_config(run.target, base)
    t0 = time.perf_counter()
    if (folder / "head.json").is_file() and (folder / "manifest.json").is_file():
        logger.info("%s: model folder complete, evaluating it", run.name)
    else:
        train_default(folder, config, data_root=args.data, work_dir=work / "model.work", progress=args.progress)
    t1 = time.perf_counter()
    matcher = load_default_matcher(folder)
    result, zero_shot, per_pair = judge(matcher, load_target_test(run.target, args.data))
    t2 = time.perf_counter()
    write_pair_scores(args.results / PROTOCOL, run.name, per_pair)
    manifest = matcher.manifest
    return {
        "run": run.name,
        "target": run.target,
        "target_label": LOO_TARGETS[run.target].label,
        "seed": run.seed,
        "budget": run.budget,
        "variant": run.variant,
        "excluded": sorted(config.excluded()),
        "test": result,
        "zero_shot": zero_shot,
        "delta_f1_own_threshold_vs_zero_shot_match": result["head"]["f1"] - zero_shot["match_threshold"]["f1"],
        "delta_oracle_f1_vs_zero_shot_oracle": result["head"]["oracle_f1"] - zero_shot["match_threshold"]["oracle_f1"],
        "pooled_valid": manifest.metrics.get("valid_pooled"),
        "history": manifest.metrics.get("history"),
        "max_length": manifest.settings.get("max_length"),
        "train_seconds": manifest.metrics.get("train_seconds"),
        "train_wall_seconds": t1 - t0,
        "eval_seconds": t2 - t1,
        "config": manifest.settings.get("config"),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git": git_rev(),
        "machine": machine(),
    }


def judge(matcher: Any, test: list[Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The default matcher and the zero-shot scorer (at each of its two cuts) on the same pairs,
    and every pair's scores (:func:`pair_scores`)."""
    import numpy as np

    from app.core.config import Settings
    from training.default_recipe.loo import binary_metrics, evaluate_default_matcher, score_default_matcher

    scores = score_default_matcher(matcher, test)
    result = evaluate_default_matcher(matcher, test, scores)
    zs, thresholds = zero_shot_scores(test, int(Settings.model_fields["encoder_max_length"].default))
    labels = np.asarray([p.label for p in test])
    zero_shot = {name: binary_metrics(np.asarray(zs), labels, thr) for name, thr in thresholds.items()}
    return result, zero_shot, pair_scores(test, scores, zs)


def pair_scores(pairs: list[Any], scores: Any, zero_shot: list[float]) -> dict[str, Any]:
    """Each test pair's ids, label and scores, in test order: what a later blend or stacking
    study needs without the model folder (gone with the session) or another hour of inference."""
    return {
        "pairs": [[p.left_id, p.right_id, int(p.label)] for p in pairs],
        "head_probability": [round(float(x), 6) for x in scores.probabilities],
        "cross_encoder_logit": [round(float(x), 5) for x in scores.logits],
        "cosine": [round(float(x), 6) for x in scores.cosines],
        "zero_shot": [round(float(x), 6) for x in zero_shot],
    }


def write_pair_scores(folder: Path, name: str, payload: dict[str, Any]) -> Path:
    """``<folder>/scores/<name>.json``: beside the result files, outside their glob."""
    path = folder / "scores" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, separators=(",", ":")) + "\n", encoding="utf-8")
    return path


def runs_for(args: argparse.Namespace) -> list[LooRun]:
    return [LooRun(t, s, args.budget, args.variant) for t in args.targets for s in args.seeds]


def cmd_run(args: argparse.Namespace) -> int:
    done = 0
    for run in pending(runs_for(args), args.results):
        lock = args.work / f"{run.name}.lock"
        if not try_lock(lock):
            logger.info("%s: another process is on it", run.name)
            continue
        try:
            if result_path(run, args.results).exists():
                continue
            logger.info("=== %s", run.name)
            out = run_one(run, args)
            path = write_result(run, out, args.results)
            done += 1
            head, zs = out["test"]["head"], out["zero_shot"]["match_threshold"]
            logger.info("%s: F1 %.4f (oracle %.4f) vs zero-shot %.4f (oracle %.4f) -> %s", run.name, head["f1"],
                        head["oracle_f1"], zs["f1"], zs["oracle_f1"], path)  # fmt: skip
        finally:
            lock.unlink(missing_ok=True)
    logger.info("%d runs finished", done)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    for run in runs_for(args):
        state = "done" if result_path(run, args.results).exists() else "to do"
        if state == "to do" and (args.work / f"{run.name}.lock").exists():
            state = "running (lock)"
        print(f"{run.name}: {state}")
    return 0


def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| held out | variant | budget | seed | test pairs | default F1 @ own cut (P / R) | default oracle F1 "
        "| cross-encoder alone F1 / oracle | zero-shot F1 @ match cut / oracle | Δ F1 vs zero-shot (own cuts) "
        "| train min |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(results, key=lambda r: (r["target"], r.get("variant") or "", r["budget"], r["seed"])):
        h, ce, zs = r["test"]["head"], r["test"].get("cross_encoder_only") or {}, r["zero_shot"]["match_threshold"]
        lines.append(
            f"| {r['target_label']} | {r.get('variant') or 'recipe'} | {r['budget']} | {r['seed']} "
            f"| {r['test']['pairs']} "
            f"| {pct(h['f1'])} ({pct(h['precision'])} / {pct(h['recall'])}) | {pct(h['oracle_f1'])} "
            f"| {pct(ce.get('f1'))} / {pct(ce.get('oracle_f1'))} | {pct(zs['f1'])} / {pct(zs['oracle_f1'])} "
            f"| {100 * r['delta_f1_own_threshold_vs_zero_shot_match']:+.1f} "
            f"| {float(r['train_seconds'] or 0) / 60:.0f} |"
        )
    return "\n".join(lines)


def cmd_table(args: argparse.Namespace) -> int:
    print(table(read_results(PROTOCOL, args.results)))
    indomain = read_results(INDOMAIN, args.results)
    if indomain:
        print()
        print(indomain_table(indomain))
    return 0


def cmd_indomain(args: argparse.Namespace) -> int:
    """Judge ``--model`` on each training source's own test split; one result file per model."""
    from models.default_matcher import load_default_matcher
    from training.data.readers import data_root
    from training.default_recipe.loo import source_spec
    from training.default_recipe.sources import load_source

    def spec_path(source: str) -> str:
        return source_spec(source, DEFAULT_SOURCES).path

    root = args.data or data_root()

    if args.model is None:
        raise SystemExit("indomain needs --model DIR (a `productmatch train default` folder)")
    matcher = load_default_matcher(args.model)
    manifest = matcher.manifest
    excluded = set((manifest.settings.get("config") or {}).get("excluded") or [])
    tests: dict[str, Any] = {}
    scores: dict[str, Any] = {}
    for name, spec in IN_DOMAIN_TESTS.items():
        if spec.source in excluded:
            logger.info("%s: %s was left out of this model's training, not in-domain", name, spec.source)
            continue
        if not (root / spec_path(spec.source)).exists():
            logger.info("%s: no %s under %s, skipped", name, spec_path(spec.source), root)
            continue
        t0 = time.perf_counter()
        data = load_source(source_spec(spec.source, DEFAULT_SOURCES), args.data, **spec.reader_overrides)
        result, zero_shot, per_pair = judge(matcher, data.test)
        scores[name] = per_pair
        tests[name] = {
            "label": spec.label,
            "ditto_f1": spec.ditto_f1,
            "test": result,
            "zero_shot": zero_shot,
            "seconds": round(time.perf_counter() - t0, 1),
        }
        logger.info("%s: F1 %.4f (oracle %.4f), Ditto %.1f", name, result["head"]["f1"],
                    result["head"]["oracle_f1"], spec.ditto_f1)  # fmt: skip
    name = args.name or Path(args.model).resolve().name
    payload = {
        "run": name,
        "model": str(args.model),
        "model_created": manifest.created_at,
        "config": manifest.settings.get("config"),
        "tests": tests,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git": git_rev(),
        "machine": machine(),
    }
    path = args.results / INDOMAIN / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    write_pair_scores(args.results / INDOMAIN, name, scores)
    print(indomain_table([payload]))
    print(f"written {path}")
    return 0


def indomain_table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| model | test split | pairs | default F1 @ own cut (P / R) | default oracle F1 | zero-shot F1 @ match cut "
        "| published Ditto F1 | Δ vs Ditto |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for t in r["tests"].values():
            h, zs = t["test"]["head"], t["zero_shot"]["match_threshold"]
            lines.append(
                f"| {r['run']} | {t['label']} | {t['test']['pairs']} "
                f"| {pct(h['f1'])} ({pct(h['precision'])} / {pct(h['recall'])}) | {pct(h['oracle_f1'])} "
                f"| {pct(zs['f1'])} | {t['ditto_f1']:.1f} | {100 * h['f1'] - t['ditto_f1']:+.1f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=("run", "status", "table", "indomain"))
    p.add_argument("--targets", type=lambda s: [x for x in s.split(",") if x], default=list(LOO_TARGETS))
    p.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",") if x], default=[1])
    p.add_argument("--budget", choices=sorted(BUDGETS), default="full", help="a preset of the recipe config BUDGETS")
    p.add_argument("--variant", choices=sorted(VARIANTS), default="", help="an ablation of the recipe (default: none)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--data", type=Path, default=None, help="benchmark data root (default: ../shared/data)")
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--work", type=Path, default=WORK_ROOT)
    p.add_argument("--progress", action="store_true")
    p.add_argument("--model", type=Path, default=None, help="indomain: the model folder to judge")
    p.add_argument("--name", default=None, help="indomain: result file name (default: the folder's name)")
    args = p.parse_args(argv)
    unknown = sorted(set(args.targets) - set(LOO_TARGETS))
    if unknown:
        p.error(f"unknown targets {unknown}; known: {sorted(LOO_TARGETS)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    commands = {"run": cmd_run, "status": cmd_status, "table": cmd_table, "indomain": cmd_indomain}
    return commands[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
