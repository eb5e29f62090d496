"""``MODEL_CARD.md`` of a default-matcher folder, generated from its manifest alone."""

from __future__ import annotations

from typing import Any

from models.artefacts import Manifest


def _pct(value: Any) -> str:
    return "–" if value is None else f"{100 * float(value):.1f}"


def model_card(manifest: Manifest) -> str:
    s, m = manifest.settings, manifest.metrics
    cfg = s.get("config", {})
    pooled = m.get("valid_pooled", {}).get("cross_fitted", {})
    best = pooled.get("best_f1", {})
    lines = [
        "# Default product matcher",
        "",
        "A LEA cross-encoder (MiniLM-L6) with a calibrated logistic head, trained by "
        "`productmatch train default` to match offers against catalogues it never saw.",
        "",
        "## Use",
        "",
        "```python",
        "from models.default_matcher import load_default_matcher",
        "matcher = load_default_matcher(folder)",
        "probs = matcher.score(offer, candidates)  # product mappings: title, brand, category, price, description",
        "matches = probs >= matcher.threshold",
        "```",
        "",
        f"Input: `serialize_product` over {', '.join(s.get('fields', []))}, max length {s.get('max_length')} "
        f"tokens; weights {s.get('weights_dtype')}, served in {s.get('precision')}. Head features: "
        f"{', '.join(s.get('head_features', []))}; bi-encoder for the cosine: `{s.get('bi_encoder')}`.",
        "",
        "## Training data",
        "",
        "| source | format | train pairs | per epoch | mined negatives | licence (as stated in SOURCES.md) |",
        "|---|---|---:|---:|---:|---|",
    ]
    for src in s.get("sources", []):
        lines.append(
            f"| {src['name']} (`{src['path']}`) | {src['format']} | {src['train_pairs']} | {src['pairs_per_epoch']} "
            f"| {src['mined_negatives']} | {src['licence']} |"
        )
    excluded = s.get("excluded") or []
    lines += [
        "",
        f"Left out: {', '.join(excluded) if excluded else 'nothing'}. Test splits are never read. The original "
        "publishers' terms apply besides the repositories' licences; cite the benchmarks' papers.",
        "",
        "## Recipe",
        "",
        f"- {cfg.get('epochs')} epochs x {cfg.get('pairs_per_epoch')} pairs, sources weighted by "
        f"size^{cfg.get('alpha')} "
        f"(cap {cfg.get('max_share')} of an epoch, {cfg.get('max_repeats')}x a source's size); "
        f"{cfg.get('hard_negative_share')} of a source's quota from mined hard negatives where clusters allow.",
        f"- Attribute dropout {cfg.get('dropout')}; typo noise on {cfg.get('typo_p_side')} of the sides.",
        f"- Batch {cfg.get('batch_size')}, lr {cfg.get('lr')}, linear schedule with {cfg.get('warmup_ratio')} warm-up, "
        f"seed {cfg.get('seed')}; kept epoch {m.get('kept_epoch')} ({cfg.get('select_epoch')}).",
        f"- Head: logistic regression on {s.get('valid_pairs')} pooled validation pairs, sources weighted equally; "
        f"thresholds from {pooled.get('folds')}-fold cross-fitted probabilities.",
        f"- Code: commit `{s.get('git_commit')}`; training took {float(m.get('train_seconds', 0)) / 60:.0f} min.",
        *_init_line(s.get("init")),
        "",
        "## Validation (pooled, per-source balanced; in-domain, not a transfer estimate)",
        "",
        f"Best-F1 cut {float(m.get('threshold', 0)):.4f}: F1 {_pct(best.get('f1'))}, precision "
        f"{_pct(best.get('precision'))}, recall {_pct(best.get('recall'))}; PR-AUC {_pct(pooled.get('pr_auc'))}.",
        "",
        "| precision target | cut | precision (95 % interval) | recall | pairs accepted |",
        "|---|---:|---|---:|---:|",
    ]
    for target, choice in (pooled.get("for_precision") or {}).items():
        if choice is None:
            lines.append(f"| {target} | – | not reached | – | – |")
            continue
        lines.append(
            f"| {target} | {choice['threshold']:.4f} | {_pct(choice['precision'])} "
            f"({_pct(choice['precision_low'])}–{_pct(choice['precision_high'])}) | {_pct(choice['recall'])} "
            f"| {choice['n_accepted']} |"
        )
    lines += ["", "| source | pairs | F1 at the pooled cut | F1 at its own best cut |", "|---|---:|---:|---:|"]
    for name, row in (m.get("valid_pooled", {}).get("per_source") or {}).items():
        lines.append(f"| {name} | {row['pairs']} | {_pct(row['f1'])} | {_pct(row.get('oracle_f1'))} |")
    lines += _top1_section(m.get("valid_pooled", {}).get("top1"))
    lines += [
        "",
        "Transfer to unseen catalogues is measured by leaving each benchmark out "
        "(`benchmarks/bench_default_loo.py`, docs/benchmarks/default_loo.md), not by these numbers.",
        "",
    ]
    return "\n".join(lines)


def _init_line(init: dict[str, Any] | None) -> list[str]:
    """The release a continued run started from (``--init``): these epochs come on top of its own."""
    if not init:
        return []
    return [
        f"- Started from the cross-encoder of `{init.get('path')}` (created {init.get('created_at')}, weights "
        f"SHA-256 `{str(init.get('weights_sha256'))[:16]}…`): the epochs above come on top of that release's own."
    ]


def _top1_section(top1: dict[str, Any] | None) -> list[str]:
    """The serving cuts: top-1 decisions over ranked validation lists (training/default_recipe/ranked.py)."""
    if not top1:
        return []
    settings = top1.get("settings") or {}
    best = top1.get("best_f1") or {}
    lines = [
        "",
        "## Serving cuts: the top candidate of ranked lists",
        "",
        f"{settings.get('offers_per_source')} validation offers per source ranked like the service ranks them "
        f"(hybrid top-{settings.get('k')}), {_pct(settings.get('absent_share'))} % of those with a known match "
        f"meeting the catalogue without it; each source scored by a head fitted without it ({top1.get('scored_by')}); "
        f"cuts chosen on {', '.join(top1.get('cuts_from') or [])}. Precision is of the judged top-1 decisions, "
        "coverage of the offers whose match is in the catalogue.",
        "",
        "| cut | threshold | precision (95 % interval) | coverage | offers matched |",
        "|---|---:|---|---:|---:|",
    ]
    rows = [("best offer-F1 (HEAD_MATCH_CUT=f1)", best)]
    rows += [(f"precision {k}", v) for k, v in (top1.get("for_precision") or {}).items()]
    for name, stats in rows:
        if not stats:
            lines.append(f"| {name} | – | not reached | – | – |")
            continue
        low, high = stats.get("precision_ci95") or (None, None)
        lines.append(
            f"| {name} | {stats['threshold']:.4f} | {_pct(stats['precision'])} ({_pct(low)}–{_pct(high)}) "
            f"| {_pct(stats['coverage'])} | {stats['matched']} |"
        )
    return lines


__all__ = ["model_card"]
