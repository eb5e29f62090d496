"""Label-noise detectors measured on their own: flipped Abt-Buy training labels, no matcher training.

The ``signals`` detector (:mod:`training.noise.signals`) reads only label-free pair signals, so
it can be judged without training anything: flip ``--rates`` of the Abt-Buy **training** labels
uniformly at random (``training.noise.flip_labels``, flip seeds ``--seeds``), run the detector on
the flipped labels and compare with the known flips. Per (rate, seed):

* flip-detection ROC AUC of ``p_noise`` (probability that the label is wrong);
* precision / recall of the flags (``p_noise >= 0.5``) against the true flips, also per label;
* the estimated flip rates ``P(label 1 | non-match)``, ``P(label 0 | match)`` against the true
  ones (from the fit, and as the trainer's ``forward`` action reads them, ``flip_rates``);
* the share of training labels that are correct before (the flipped labels) and after
  relabelling with the hard posterior (``P(clean match) >= 0.5``).

The signal features are computed once (they do not depend on the labels); ``--ablation`` adds
the noise model's stage 1 alone (cosine and identifier agreement, no logistic stage).

    python benchmarks/bench_noise_detectors.py                       # Abt-Buy, 20 % / 40 %, seeds 1-3
    python benchmarks/bench_noise_detectors.py --rates 0.2 --seeds 1 --out benchmarks/out/nd.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # allow `python benchmarks/bench_noise_detectors.py` from a checkout
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.common import RESULTS, git_rev, machine  # noqa: E402
from models.bi_encoder import BiEncoder  # noqa: E402
from training.data.readers import data_root, load_dataset  # noqa: E402
from training.noise import NoiseConfig, NoiseReport, detect_noisy_pairs, flip_labels, flip_rates  # noqa: E402
from training.noise.signals import fit_label_noise, signal_features  # noqa: E402

logger = logging.getLogger("bench_noise_detectors")


def roc_auc(scores: np.ndarray, truth: np.ndarray) -> float:
    """Mann-Whitney ROC AUC with tied scores sharing their average rank."""
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(truth, dtype=bool)
    n1, n0 = int(t.sum()), int((~t).sum())
    if not n1 or not n0:
        return float("nan")
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    average_rank = np.cumsum(counts) - (counts - 1) / 2.0
    ranks = average_rank[inverse]
    return float((ranks[t].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def true_rates(clean: np.ndarray, noisy: np.ndarray) -> tuple[float, float]:
    """``(P(label 1 | clean 0), P(label 0 | clean 1))`` of a flipped label vector."""
    return float(noisy[clean == 0].mean()), float(1.0 - noisy[clean == 1].mean())


def score(
    report: NoiseReport, posterior: np.ndarray, clean: np.ndarray, noisy: np.ndarray, flipped: np.ndarray
) -> dict[str, Any]:
    """Everything the page reports for one detection against the known flips."""
    pr = report.precision_recall(flipped)
    by_label = {}
    for c in (0, 1):
        in_class = noisy == c
        flags, flips = report.flagged & in_class, flipped & in_class
        by_label[str(c)] = {
            "labelled": int(in_class.sum()),
            "flipped": int(flips.sum()),
            "flagged": int(flags.sum()),
            "flagged_flipped": int((flags & flips).sum()),
        }
    r01, r10 = true_rates(clean, noisy)
    fitted = report.rates if report.rates is not None else (float("nan"), float("nan"))
    implied = flip_rates(noisy, report)
    return {
        "auc": roc_auc(report.p_noise, flipped),
        "precision": pr["precision"],
        "recall": pr["recall"],
        "f1": pr["f1"],
        "flagged": pr["flagged"],
        "flipped": pr["noisy"],
        "by_label": by_label,
        "rate_01": {"true": r01, "fitted": fitted[0], "flip_rates": implied[0]},
        "rate_10": {"true": r10, "fitted": fitted[1], "flip_rates": implied[1]},
        "match_rate": {"true": float(clean.mean()), "labels": float(noisy.mean()), "fitted": float(posterior.mean())},
        "label_accuracy_before": float((noisy == clean).mean()),
        "label_accuracy_after": float(((posterior >= 0.5).astype(np.int64) == clean).mean()),
        "fit": report.signals_fit,
    }


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="DeepMatcher folder (default: <data root>/abt-buy)")
    parser.add_argument("--rates", type=_floats, default=[0.2, 0.4], help="flip rates (default: 0.2,0.4)")
    parser.add_argument("--seeds", type=_ints, default=[1, 2, 3], help="flip seeds (default: 1,2,3)")
    parser.add_argument("--encoder", default="minilm", help="bi-encoder of the cosine signal (default: minilm)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the encoder (default: 1)")
    parser.add_argument("--ablation", action="store_true", help="also the noise model's stage 1 alone")
    parser.add_argument("--out", type=Path, default=RESULTS / "noise_detectors.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    folder = args.data or data_root() / "abt-buy"
    train = load_dataset(folder, "deepmatcher").split("train")
    clean = np.asarray([p.label for p in train], dtype=np.int64)
    t0 = time.perf_counter()
    encoder = BiEncoder.from_pretrained(args.encoder)
    features = signal_features([p.left.fields for p in train], [p.right.fields for p in train], encoder)
    feature_seconds = time.perf_counter() - t0
    logger.info("signal features of %d pairs in %.1f s", len(train), feature_seconds)
    runs: list[dict[str, Any]] = []
    for rate in args.rates:
        for seed in args.seeds:
            noisy, flipped = flip_labels(clean, rate, seed)
            t1 = time.perf_counter()
            report = detect_noisy_pairs(noisy, features=features, config=NoiseConfig(method="signals"))
            fit_seconds = time.perf_counter() - t1
            assert report.posterior is not None
            row = {"rate": rate, "seed": seed, "detector": "signals", "seconds": fit_seconds}
            main_row = {**row, **score(report, report.posterior, clean, noisy, flipped)}
            runs.append(main_row)
            if args.ablation:
                stage1 = fit_label_noise(features, noisy, logistic=False)
                p = stage1.p_noise(noisy)
                ablated = NoiseReport(
                    method="signals-stage1",
                    labels=noisy,
                    p_noise=p,
                    flagged=p >= 0.5,
                    posterior=stage1.posterior,
                    rates=(stage1.rate_01, stage1.rate_10),
                    signals_fit=stage1.summary(),
                )
                runs.append(
                    {**row, "detector": "signals-stage1", **score(ablated, stage1.posterior, clean, noisy, flipped)}
                )
            logger.info(
                "rate %.2f seed %d: AUC %.3f, P %.3f R %.3f, rates %.3f/%.3f (true %.3f/%.3f), accuracy %.3f -> %.3f",
                rate,
                seed,
                main_row["auc"],
                main_row["precision"],
                main_row["recall"],
                main_row["rate_01"]["fitted"],
                main_row["rate_10"]["fitted"],
                main_row["rate_01"]["true"],
                main_row["rate_10"]["true"],
                main_row["label_accuracy_before"],
                main_row["label_accuracy_after"],
            )
    payload = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git": git_rev(),
        "command": " ".join(["python", "benchmarks/bench_noise_detectors.py", *(argv or sys.argv[1:])]),
        "machine": machine(),
        "settings": {
            "data": str(folder),
            "split": "train",
            "pairs": len(train),
            "true_matches": int(clean.sum()),
            "rates": args.rates,
            "seeds": args.seeds,
            "encoder": args.encoder,
            "flip": "training.noise.flip_labels: exactly round(rate * n) labels, uniformly at random",
            "flag_threshold": NoiseConfig().flag_threshold,
        },
        "feature_seconds": feature_seconds,
        "total_seconds": time.perf_counter() - started,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    logger.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
