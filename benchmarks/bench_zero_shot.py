"""Zero-shot pairwise F1: cosine + token_set_ratio (the old blend) against cosine + pair signals.

The service's untrained scorer (``app.pipeline.scoring.ZeroShotScorer``) blends the cosine of
the packaged MiniLM bi-encoder with a lexical score. This scores every labelled pair of the
valid and test splits of Abt-Buy, Amazon-Google and WDC Products with

* ``old``: cosine blended with rapidfuzz ``token_set_ratio`` (``lexical="token_set"``);
* ``new``: the default scorer, cosine blended with the soft F1 of :mod:`models.pair_signals`
  plus the model-number agreement terms;
* and, for reference, each part alone: ``cosine``, ``token_set``, ``signals_lexical`` (the new
  lexical score: the offer-weighted soft F-beta of the token coverages).

Records are what the service stores of a product: title (Abt-Buy's ``name``), brand (or
Amazon-Google's ``manufacturer``), price and currency; the left table is the offer side, the
right table the catalogue. The cosine is that of :func:`models.product_text.embed_text`, the text
the service embeds, with every distinct text embedded once. The threshold is the best-F1 one on
the valid split, applied unchanged to test; ``oracle`` is the best threshold on test itself.

    .venv/bin/python benchmarks/bench_zero_shot.py            # -> benchmarks/results/zero_shot.json
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from app.pipeline.scoring import ZeroShotScorer  # noqa: E402
from benchmarks.common import machine, write_result  # noqa: E402
from models.bi_encoder import BiEncoder  # noqa: E402
from models.product_text import embed_text, title_of  # noqa: E402
from training.data.readers import data_root, load_dataset  # noqa: E402
from training.data.records import Pair  # noqa: E402
from training.metrics import best_f1_threshold, scores_at  # noqa: E402

logger = logging.getLogger("bench_zero_shot")

#: name -> (reader format, reader options)
DATASETS: dict[str, tuple[str, dict[str, Any]]] = {
    "abt-buy": ("deepmatcher", {}),
    "amazon-google": ("deepmatcher", {}),
    "wdc-products-80cc20rnd": ("wdc-products", {"train_size": None, "valid_size": "medium", "test": "000un"}),
}
SPLITS = ("valid", "test")
BLENDS = ("old", "new")
ENCODER_MAX_LENGTH = 64  # the service's ENCODER_MAX_LENGTH default


def service_record(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A benchmark record as the service stores a product (app/schemas/product.py)."""
    return {
        "title": title_of(fields),
        "brand": fields.get("brand") or fields.get("manufacturer"),
        "price": fields.get("price"),
        "currency": fields.get("priceCurrency") or fields.get("currency"),
    }


@dataclass
class SplitPairs:
    offers: list[dict[str, Any]]
    products: list[dict[str, Any]]
    cosines: np.ndarray
    labels: np.ndarray


def embed_pairs(encoder: BiEncoder, splits: Mapping[str, Sequence[Pair]], batch_size: int) -> dict[str, SplitPairs]:
    """Service records and cosines of every pair; each distinct embedded text is encoded once."""
    records = {
        name: ([service_record(p.left.fields) for p in pairs], [service_record(p.right.fields) for p in pairs])
        for name, pairs in splits.items()
    }
    texts = sorted({embed_text(r) for offers, products in records.values() for r in offers + products})
    vectors = encoder.encode(texts, batch_size=batch_size)
    row = {text: i for i, text in enumerate(texts)}
    out: dict[str, SplitPairs] = {}
    for name, (offers, products) in records.items():
        left = vectors[[row[embed_text(r)] for r in offers]]
        right = vectors[[row[embed_text(r)] for r in products]]
        labels = np.asarray([p.label for p in splits[name]], dtype=np.int64)
        out[name] = SplitPairs(offers, products, np.sum(left * right, axis=1), labels)
    return out


PairScore = Callable[[Mapping[str, Any], Mapping[str, Any], float], float]


def variants(lexical_weight: float) -> dict[str, PairScore]:
    """The scores compared: the two blends and each of their parts alone."""
    old = ZeroShotScorer(lexical_weight, lexical="token_set")
    new = ZeroShotScorer(lexical_weight)
    return {
        "old": lambda o, p, c: old.pair_score(o, p, c)[0],
        "new": lambda o, p, c: new.pair_score(o, p, c)[0],
        "cosine": lambda o, p, c: float(c),
        "token_set": lambda o, p, c: old.pair_score(o, p, c)[1],
        "signals_lexical": lambda o, p, c: new.pair_score(o, p, c)[1],
    }


def _metrics(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    r = scores_at(scores, labels, threshold)
    return {"f1": round(100 * r.f1, 2), "precision": round(100 * r.precision, 2), "recall": round(100 * r.recall, 2)}


def evaluate(pairs: Mapping[str, SplitPairs], score: PairScore, fixed: float | None = None) -> dict[str, Any]:
    """Valid-chosen threshold applied to test, the oracle test threshold, and test at ``fixed``."""
    started = time.perf_counter()
    scores = {
        name: np.asarray([score(o, p, float(c)) for o, p, c in zip(sp.offers, sp.products, sp.cosines)])
        for name, sp in pairs.items()
    }
    per_pair_us = 1e6 * (time.perf_counter() - started) / sum(len(sp.labels) for sp in pairs.values())
    valid, test = pairs["valid"], pairs["test"]
    chosen = best_f1_threshold(scores["valid"], valid.labels).threshold
    oracle = best_f1_threshold(scores["test"], test.labels).threshold
    result = {
        "threshold": round(float(chosen), 4),
        "valid": _metrics(scores["valid"], valid.labels, chosen),
        "test": _metrics(scores["test"], test.labels, chosen),
        "oracle": {"threshold": round(float(oracle), 4), **_metrics(scores["test"], test.labels, oracle)},
        "score_us_per_pair": round(per_pair_us, 1),
    }
    if fixed is not None:
        result["test_at_match_threshold"] = {"threshold": fixed, **_metrics(scores["test"], test.labels, fixed)}
    return result


def run_dataset(
    name: str, encoder: BiEncoder, root: Path, lexical_weight: float, match_threshold: float, batch_size: int
) -> dict[str, Any]:
    fmt, options = DATASETS[name]
    dataset = load_dataset(root / name, fmt, **options)
    started = time.perf_counter()
    pairs = embed_pairs(encoder, {s: dataset.split(s) for s in SPLITS}, batch_size)
    embed_s = time.perf_counter() - started
    started = time.perf_counter()
    # The blends are what the service decides with, so they are also read at its MATCH_THRESHOLD.
    results = {
        key: evaluate(pairs, score, match_threshold if key in BLENDS else None)
        for key, score in variants(lexical_weight).items()
    }
    logger.info(
        "%s: test F1 old %.1f -> new %.1f (oracle %.1f -> %.1f)",
        name,
        results["old"]["test"]["f1"],
        results["new"]["test"]["f1"],
        results["old"]["oracle"]["f1"],
        results["new"]["oracle"]["f1"],
    )
    return {
        "reader": {"format": fmt, **options},
        "pairs": {s: {"rows": len(p.labels), "positives": int(p.labels.sum())} for s, p in pairs.items()},
        "embed_seconds": round(embed_s, 1),
        "score_seconds": round(time.perf_counter() - started, 1),
        "results": results,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, default=None, help="folder holding the benchmark folders")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--lexical-weight", type=float, default=0.3, help="the service's LEXICAL_WEIGHT")
    parser.add_argument("--match-threshold", type=float, default=0.85, help="the service's MATCH_THRESHOLD")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="zero_shot", help="results file name under benchmarks/results/")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    root = args.data_root or data_root()
    encoder = BiEncoder.from_pretrained("minilm", max_length=ENCODER_MAX_LENGTH)
    scorer = ZeroShotScorer(args.lexical_weight)
    datasets = {
        name: run_dataset(name, encoder, root, args.lexical_weight, args.match_threshold, args.batch_size)
        for name in args.datasets
    }
    path = write_result(
        args.out,
        {
            "benchmark": "zero-shot pairwise F1, old (cosine + token_set_ratio) vs new (cosine + pair signals)",
            "command": "python benchmarks/bench_zero_shot.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "settings": {
                "encoder": f"minilm (packaged all-MiniLM-L6-v2), max_length {ENCODER_MAX_LENGTH}",
                "lexical_weight": args.lexical_weight,
                "beta": scorer.beta,
                "identifier_bonus": scorer.identifier_bonus,
                "identifier_penalty": scorer.identifier_penalty,
                "threshold": "best F1 on valid, applied to test; oracle = best F1 on test",
                "match_threshold": args.match_threshold,
                "records": "title, brand (or manufacturer), price, currency; left = offer, right = product",
                "f1": "match-class F1 in %, score >= threshold",
            },
            "machine": machine(),
            "datasets": datasets,
        },
    )
    logger.info("wrote %s", path)


if __name__ == "__main__":
    main()
