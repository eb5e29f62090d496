"""Encoder throughput against the machine's FLOP limits, and what bf16 and int8 cost in quality.

    .venv/bin/python benchmarks/bench_encoder.py --n 2000 --threads 2 --repeats 5

1. Measures the machine's fp32 and bf16 matrix-multiply rates with torch (square matmuls, the
   same thread count): the practical FLOP/s ceilings of these cores. On a CPU with AMX-BF16 the
   bf16 one is the real ceiling of a model served in bf16 (``PRECISION=bf16`` / ``auto``).
2. Counts the FLOPs per product of the encoder at its real token lengths (no padding):
   per layer 2*n*(4H^2 + 2HI) for the projections and feed-forward plus 4*n^2*H for attention.
3. Times, interleaved in the same run on the same texts: plain sentence-transformers on the
   same weights and max length, our encoder (length-bucketed batches) in fp32, in bf16
   (autocast; the ``PRECISION=bf16`` serving path) and in int8 (dynamic per-channel int8 Linear
   layers). Reports products/s, the ratio to sentence-transformers and to our fp32, and the share
   of the fp32 and the bf16 matmul ceilings reached. ``--whole-bf16`` adds a candidate that is
   not served: the whole backbone in bf16 (its vectors differ from the served bf16 ones).
4. Recall@1/5/20 of the zero-shot blocker on Abt-Buy and Amazon-Google (test queries against
   the whole right table, title-only serving text, max length 64) in fp32, bf16 and int8.
5. With ``--cross-encoder DIR`` (a folder from ``productmatch train matcher``): the same for the
   reranker. Pairs/s on the dataset's test pairs for sentence-transformers' ``CrossEncoder`` on
   the folder's HF weights (no LEA bias) and our cross-encoder in fp32, bf16 and int8
   (interleaved), the FLOPs per pair at the real pair lengths, and test F1 / PR-AUC (clean and
   one typo-noised copy) in each precision at the folder's stored threshold and calibration.
   ``--reference-attention`` adds fp32 and bf16 variants whose LEA layers run the training
   path's attention (``serving_attention`` off): the served attention's before, in the same run.
   ``--unfused`` adds the bf16 paths served before session 22, in the same run: the bi-encoder
   under bf16 autocast (not the fused forward) and the cross-encoder with plain ``nn.Linear``
   layers (not prepacked for oneDNN).
   ``--request-pairs N`` also times request-sized calls: consecutive groups of N pairs (a
   ``/v1/match`` rerank at ``top_k`` N), each group scored by every variant in a rotating order;
   p50 / p99 ms per variant.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.catalogue_gen import catalogue  # noqa: E402
from benchmarks.common import machine, median, write_result  # noqa: E402
from models.precision import cpu_bf16_flags  # noqa: E402

logger = logging.getLogger("bench_encoder")
warnings.filterwarnings("ignore", category=UserWarning)


PRECISIONS = ("fp32", "bf16", "int8")


def matmul_flops(threads: int, size: int = 1024, repeats: int = 20, dtype: torch.dtype = torch.float32) -> float:
    """Best-of-repeats GEMM rate (FLOP/s) in ``dtype`` of this machine with ``threads`` threads."""
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    for _ in range(3):
        torch.mm(a, b)
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * size**3 / (time.perf_counter() - t))
    return best


def flops_per_text(config: Any, lengths: list[int]) -> float:
    """Mean forward FLOPs per text of a BERT-style encoder at the given token lengths."""
    h, i, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    per = [layers * (2 * n * (4 * h * h + 2 * h * i) + 4 * n * n * h) for n in lengths]
    return float(np.mean(per))


def timed(fn, texts: list[str]) -> float:  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    fn(texts)
    return time.perf_counter() - t


def speed(
    texts: list[str], max_length: int, repeats: int, batch_size: int, whole_bf16: bool = False, unfused: bool = False
) -> dict[str, Any]:
    from sentence_transformers import SentenceTransformer

    from models.backbones import minilm_path

    models = bi_encoders(max_length, whole_bf16, unfused)
    fp32 = models["fp32"]
    st = SentenceTransformer(str(minilm_path()), device="cpu")
    st.max_seq_length = max_length
    variants: dict[str, Any] = {
        "sentence-transformers": lambda x: st.encode(
            x, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False
        ),
    }
    for name, model in models.items():
        variants[f"productmatch-{name}"] = lambda x, m=model: m.encode(x, batch_size=batch_size)
    for fn in variants.values():  # warm-up
        fn(texts[:batch_size])
    seconds: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(repeats):  # interleaved: every variant sees the same machine state
        for name, fn in variants.items():
            seconds[name].append(timed(fn, texts))
    lengths = [len(ids) for ids in fp32.tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
    per_text = flops_per_text(fp32.backbone.config, lengths)
    return {
        "texts": len(texts),
        "repeats": repeats,
        "batch_size": batch_size,
        "max_length": max_length,
        "mean_tokens": round(float(np.mean(lengths)), 2),
        "gflops_per_text": round(per_text / 1e9, 4),
        "seconds_median": {k: round(median(v), 3) for k, v in seconds.items()},
        "texts_per_s": {k: round(len(texts) / median(v), 1) for k, v in seconds.items()},
        "_per_text_flops": per_text,
    }


def bi_encoders(max_length: int, whole_bf16: bool = False, unfused: bool = False) -> dict[str, Any]:
    """The packaged MiniLM in each serving precision, as the service applies it; with
    ``whole_bf16`` also a candidate that is not served: the whole backbone in bf16 (LayerNorms,
    embeddings and residual stream too), whose vectors differ from the served ones; with
    ``unfused`` also ``bf16-autocast``, the bf16 path served before the fused forward."""
    from torch import nn

    from models.bi_encoder import BiEncoder
    from models.serving_precision import serve_bi_encoder

    out = {p: serve_bi_encoder(BiEncoder.from_pretrained("minilm", max_length=max_length), p) for p in PRECISIONS}
    if whole_bf16:
        whole = BiEncoder.from_pretrained("minilm", max_length=max_length)
        whole.precision = "bf16"
        nn.Module.to(whole.backbone, torch.bfloat16)
        out["bf16-whole"] = whole
    if unfused:
        out["bf16-autocast"] = serve_bi_encoder(
            BiEncoder.from_pretrained("minilm", max_length=max_length), "bf16", fuse=False
        )
    return out


def recall(max_length: int, datasets: list[str], whole_bf16: bool = False, unfused: bool = False) -> dict[str, Any]:
    from training.blocking_tasks import build_blocking_task
    from training.data.readers import data_root, load_dataset
    from training.evaluate import recall_from_embeddings

    models = bi_encoders(max_length, whole_bf16, unfused)
    out: dict[str, Any] = {}
    for name in datasets:
        dataset = load_dataset(data_root() / name, "deepmatcher")
        task = build_blocking_task(dataset, "test")
        out[name] = {"queries": len(task.queries), "corpus_size": len(task.corpus), "fields": task.fields}
        for label, model in models.items():
            q, c = model.encode(task.queries), model.encode(task.corpus)
            r = recall_from_embeddings(q, c, task.query_targets, [1, 5, 20], task.query_exclude or None)
            out[name][label] = {k: round(v, 4) for k, v in r.items() if k.startswith("recall@")}
    return out


def _add_ratios(section: dict[str, Any], flops_per_item: float, peaks: dict[str, float], rate_key: str) -> None:
    """Shares of the fp32 and bf16 matmul ceilings (int8 counted as fp32-equivalent FLOPs) and
    speed ratios to sentence-transformers and to our fp32."""
    rates = section[rate_key]
    for dtype, peak in peaks.items():
        key = "share_of_matmul_peak" if dtype == "fp32" else f"share_of_{dtype}_matmul_peak"
        section[key] = {k: round(v * flops_per_item / peak, 3) for k, v in rates.items()}
    for key, base in (("sentence_transformers", "sentence-transformers"), ("productmatch_fp32", "productmatch-fp32")):
        section[f"ratio_to_{key}"] = {k: round(v / rates[base], 3) for k, v in rates.items()}


REFERENCE = "-reference-attention"
UNPACKED = "-unpacked"


def serve_variant(model: Any, variant: str) -> Any:
    """A freshly loaded cross-encoder as served in ``variant``: a precision, or a precision with
    :data:`REFERENCE` appended (its LEA layers on the training path's attention) or
    :data:`UNPACKED` (its Linear layers not prepacked)."""
    from models.serving_precision import serve_cross_encoder

    precision = variant.removesuffix(REFERENCE).removesuffix(UNPACKED)
    model = serve_cross_encoder(model, precision, prepack=not variant.endswith(UNPACKED))
    model.serving_attention = not variant.endswith(REFERENCE)
    return model


def matcher_quality(folder: str, dataset: Any, variant: str, batch_size: int) -> dict[str, float]:
    """Test F1 (P / R), PR-AUC and typo-noised (copy 1) F1 of the matcher served in ``variant``
    (:func:`serve_variant`), at its stored threshold and calibration, as
    ``CrossEncoderScorer`` serves it."""
    from models.matcher_io import load_matcher, score_pairs
    from training.data.typos import noisy_copy
    from training.metrics import pr_auc, scores_at
    from training.train_matcher import serialize_pairs

    model, calibrator, calibration, _ = load_matcher(folder)
    model = serve_variant(model, variant)
    rows = serialize_pairs(dataset.split("test"), calibration.get("fields", "title"))
    labels = np.asarray([y for _, _, y in rows], dtype=np.int64)
    left, right = [a for a, _, _ in rows], [b for _, b, _ in rows]
    threshold = float(calibration["threshold"])
    _, probs = score_pairs(model, calibrator, list(zip(left, right)), batch_size=batch_size)
    clean = scores_at(probs, labels, threshold)
    noisy_left, noisy_right = noisy_copy(left, right, 1)
    _, noisy_probs = score_pairs(model, calibrator, list(zip(noisy_left, noisy_right)), batch_size=batch_size)
    return {
        "f1_clean": round(float(clean.f1), 4),
        "precision": round(float(clean.precision), 4),
        "recall": round(float(clean.recall), 4),
        "pr_auc": round(float(pr_auc(probs, labels)), 4),
        "f1_noisy": round(float(scores_at(noisy_probs, labels, threshold).f1), 4),
    }


def request_latency(variants: dict[str, Any], pairs: list[tuple[str, str]], size: int) -> dict[str, Any]:
    """p50 / p99 ms per variant of scoring consecutive groups of ``size`` pairs, one call each;
    every group goes through all variants, the order rotating so none always runs first."""
    names = list(variants)
    seconds: dict[str, list[float]] = {k: [] for k in names}
    groups = [pairs[i : i + size] for i in range(0, len(pairs) - size + 1, size)]
    for g, group in enumerate(groups):
        for name in names[g % len(names) :] + names[: g % len(names)]:
            seconds[name].append(timed(variants[name], group))  # type: ignore[arg-type]
    return {
        "pairs_per_request": size,
        "requests": len(groups),
        "p50": {k: round(1000 * float(np.percentile(v, 50)), 1) for k, v in seconds.items()},
        "p99": {k: round(1000 * float(np.percentile(v, 99)), 1) for k, v in seconds.items()},
    }


def cross_encoder(
    folder: str,
    dataset_name: str,
    n_pairs: int,
    repeats: int,
    batch_size: int,
    reference_attention: bool = False,
    request_pairs: int = 0,
    unfused: bool = False,
) -> dict[str, Any]:
    from sentence_transformers import CrossEncoder

    from models.matcher_io import load_matcher
    from training.data.readers import data_root, load_dataset
    from training.train_matcher import serialize_pairs

    _, _, calibration, manifest = load_matcher(folder)
    variants_served = list(PRECISIONS)
    if reference_attention:
        variants_served += [f"fp32{REFERENCE}", f"bf16{REFERENCE}"]
    if unfused:
        variants_served.append(f"bf16{UNPACKED}")
    # Each precision set explicitly: load_matcher alone serves the one the manifest was trained in.
    models = {v: serve_variant(load_matcher(folder)[0], v) for v in variants_served}
    fp32 = models["fp32"]
    dataset = load_dataset(data_root() / dataset_name, "deepmatcher")
    rows = serialize_pairs(dataset.split("test"), calibration.get("fields", "title"))
    rng = np.random.default_rng(0)
    pairs = [(rows[i][0], rows[i][1]) for i in rng.permutation(len(rows))[:n_pairs]]
    st = CrossEncoder(folder, device="cpu", max_length=fp32.max_length)
    variants: dict[str, Any] = {
        "sentence-transformers": lambda x: st.predict(x, batch_size=batch_size, show_progress_bar=False),
    }
    for name, model in models.items():
        variants[f"productmatch-{name}"] = lambda x, m=model: m.predict_logits(x, batch_size=batch_size)
    for fn in variants.values():
        fn(pairs[:batch_size])
    seconds: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            seconds[name].append(timed(fn, pairs))  # type: ignore[arg-type]
    requests = request_latency(variants, pairs, request_pairs) if request_pairs else None
    enc = fp32.tokenizer([a for a, _ in pairs], [b for _, b in pairs], truncation=True, max_length=fp32.max_length)
    lengths = [len(ids) for ids in enc["input_ids"]]
    quality = {v: matcher_quality(folder, dataset, v, batch_size) for v in variants_served}
    return {
        "folder": folder,
        "arch": manifest.settings.get("arch"),
        "trained_precision": manifest.settings.get("precision") or "fp32",
        "dataset": dataset_name,
        "test_pairs": len(rows),
        "timed_pairs": len(pairs),
        "repeats": repeats,
        "max_length": fp32.max_length,
        "mean_tokens": round(float(np.mean(lengths)), 2),
        "gflops_per_pair": round(flops_per_text(fp32.model.config, lengths) / 1e9, 4),
        "seconds_median": {k: round(median(v), 3) for k, v in seconds.items()},
        "pairs_per_s": {k: round(len(pairs) / median(v), 1) for k, v in seconds.items()},
        "request_ms": requests,
        "threshold": float(calibration["threshold"]),
        "quality": quality,
        "_per_pair_flops": flops_per_text(fp32.model.config, lengths),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=2000, help="generated catalogue titles to embed")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--datasets", default="abt-buy,amazon-google", help="recall check ('' to skip)")
    p.add_argument(
        "--whole-bf16", action="store_true", help="also time and recall-check a bi-encoder wholly in bf16 (not served)"
    )
    p.add_argument("--skip-bi-encoder", action="store_true", help="only the cross-encoder part")
    p.add_argument("--cross-encoder", default=None, metavar="DIR", help="matcher folder: also bench the reranker")
    p.add_argument("--pairs-dataset", default="abt-buy", help="deepmatcher folder whose test pairs it scores")
    p.add_argument("--pairs", type=int, default=600, help="test pairs per timed pass")
    p.add_argument(
        "--reference-attention",
        action="store_true",
        help="also time the cross-encoder with its LEA layers on the training path's attention",
    )
    p.add_argument(
        "--request-pairs", type=int, default=0, help="also time request-sized calls of this many pairs (0: off)"
    )
    p.add_argument(
        "--unfused",
        action="store_true",
        help="also time the bf16 paths served before: bi-encoder under autocast, cross-encoder unpacked",
    )
    p.add_argument("--name", default="encoder", help="results file: benchmarks/results/NAME.json")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    peaks = {"fp32": matmul_flops(args.threads), "bf16": matmul_flops(args.threads, dtype=torch.bfloat16)}
    texts = [row["title"] if not row.get("brand") else f"{row['brand']} {row['title']}" for row in catalogue(args.n)]
    result: dict[str, Any] = {
        "settings": vars(args),
        "matmul_gflops": round(peaks["fp32"] / 1e9, 2),
        "bf16_matmul_gflops": round(peaks["bf16"] / 1e9, 2),
        "cpu_bf16_flags": list(cpu_bf16_flags()),
    }
    if not args.skip_bi_encoder:
        result["speed"] = s = speed(
            texts, args.max_length, args.repeats, args.batch_size, args.whole_bf16, args.unfused
        )
        _add_ratios(s, s.pop("_per_text_flops"), peaks, "texts_per_s")
        datasets = [d for d in args.datasets.split(",") if d]
        if datasets:
            result["recall"] = recall(args.max_length, datasets, args.whole_bf16, args.unfused)
    if args.cross_encoder:
        result["cross_encoder"] = c = cross_encoder(
            args.cross_encoder,
            args.pairs_dataset,
            args.pairs,
            args.repeats,
            args.batch_size,
            args.reference_attention,
            args.request_pairs,
            args.unfused,
        )
        _add_ratios(c, c.pop("_per_pair_flops"), peaks, "pairs_per_s")
    result["matmul_gflops_after"] = round(matmul_flops(args.threads) / 1e9, 2)
    result["bf16_matmul_gflops_after"] = round(matmul_flops(args.threads, dtype=torch.bfloat16) / 1e9, 2)
    result["load_average_before"] = [round(x, 2) for x in load_before]
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    result["machine"] = machine()
    path = write_result(args.name, result)
    logger.info("wrote %s", path)
    print(result.get("speed"), result.get("recall"), result.get("cross_encoder"))


if __name__ == "__main__":
    main()
