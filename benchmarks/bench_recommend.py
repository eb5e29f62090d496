"""Recommender benchmark on WDC Products: zero-shot MiniLM, NGAME, PRIME, PRIME + ALC / TCM.

Offers -> product clusters, seen (000un), half-unseen (050un) and unseen (100un) test sets
(training/recommend/benchmark.py). Every trained model starts from the packaged MiniLM with the
same CPU budget: ``--epochs`` passes over the 1,500 training offers, batch ``--batch-size``,
only the top ``--trainable-layers`` transformer layers trained (the frozen bottom is computed
once per text and shared by every run, zero-shot included). Writes
``benchmarks/results/recommend.json`` and ``docs/benchmarks/recommend.md``.

    .venv/bin/python benchmarks/bench_recommend.py --seeds 0,1 --epochs 1 --budget-minutes 33

Smoke test on a subset: ``--subset 60 --out /tmp/rec.json --md /tmp/rec.md``.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import RESULTS, git_rev, machine  # noqa: E402
from models.bi_encoder import BiEncoder  # noqa: E402
from models.recommender import RecommenderModel  # noqa: E402
from training.recommend.benchmark import QuerySet, RecommendBenchmark, load_benchmark  # noqa: E402
from training.recommend.cache import FrozenBottomCache  # noqa: E402
from training.recommend.evaluate import evaluate_recommender  # noqa: E402
from training.recommend.train import train_recommender  # noqa: E402

logger = logging.getLogger("bench_recommend")
DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "recommend.md"
# Every switch spelt out: the trainer's defaults (PRIME with ALC) are not what "prime" names here.
CONFIGS: dict[str, dict[str, Any]] = {
    "ngame": {"method": "ngame", "alc": False, "tcm": False},
    "prime": {"method": "prime", "alc": False, "tcm": False},
    "prime+alc+tcm": {"method": "prime", "alc": True, "tcm": True},
    "prime+tcm": {"method": "prime", "alc": False, "tcm": True},
    "prime+alc": {"method": "prime", "alc": True, "tcm": False},
}
# Written after reading the results of the committed run; kept here so a re-render keeps them.
NOTES = """\
- **How the numbers were produced.** Two invocations with the same budget: the first
  (`--seeds 0,1 --epochs 1 --budget-minutes 33`, 22.7 min, load average ~9-11) finished zero-shot and
  seed 0 of NGAME, PRIME and PRIME+ALC+TCM and was stopped in NGAME seed 1, when the margin automation
  score was added; the second (the command above, 22.7 min) re-ran zero-shot and seed 1 and merged the
  first run's seed-0 models (`--merge`). Ranking metrics are therefore means of seeds 0 and 1; the
  coverage-by-score tables come from seed 1 only (seed 0 was scored with the top-1 cosine only, which
  automates nothing). The ablations PRIME+TCM and PRIME+ALC (seed 1), skipped there by the time
  budget, ran in a third invocation (`--configs "" --ablations prime+tcm,prime+alc --seeds 1`,
  10.7 min) and were merged into the same results file. Per-seed values are in
  `benchmarks/results/recommend.json` (`runs`). Reproducing everything in one go is `--seeds 0,1`
  without `--merge` (about 55 min on this shared VM).
- **Budget.** One pass over the 1,500 training offers (24 steps of 64 queries) per model, top 2 of 6
  MiniLM layers trained, max length 32, encoder lr 5e-5, LPN / free vectors / pair head lr 5e-4,
  10 warm-up steps; METHODS §4.8 suggests 40-60 epochs, so every trained number here is far from
  converged. The last epoch is kept (no per-epoch validation; validation chooses the thresholds).
- **Seen products (000un, and the seen half of 050un):** PRIME beats both baselines on P@1 in both
  seeds (000un 72.8 / 72.6 vs NGAME 71.0 / 71.4 vs zero-shot 57.2; 050un seen 74.8 / 73.9 vs
  72.1 / 72.4 vs 54.8). The gain over NGAME is small at this budget (+1.5 P@1) and comes mostly from
  the prototypes (centroids of the product's training offers). PRIME+ALC+TCM is +0.7 higher again on
  000un and +1.6 on 050un-seen, but lower on unseen products (100un 56.6 vs 58.6).
- **Unseen products (100un)** are served by their text embedding; training still helps them (42.2
  zero-shot -> 55.8 NGAME -> 58.6 PRIME), because the encoder is shared. Prototype vectors of the
  500 seen products compete with the unseen products' text vectors in the same index and did not
  crowd them out at this budget.
- **Coverage.** With the top-1 cosine as the automation score *no* model automates anything at 0.95
  or 0.98: on the validation queries the highest cosines include wrong products (WDC Products is
  80 % corner cases: near-identical titles of different products), so no score threshold reaches
  95 % precision. The gap between the top-1 and top-2 scores ("margin", an inference-time analogue
  of ALC's hardest negative) is a usable automation score: PRIME automates 43.0 % of the 000un
  queries at the 0.95 threshold (test precision 92.1 %) and 29.2 % at 0.98 (96.6 %), NGAME 28.2 %
  (95.0 %) and 21.4 % (96.7 %). Thresholds chosen on valid do not hold exactly on test: test
  precision is 0-12 points below the target, most on 100un, whose products are all unseen while
  every validation query is of a seen product.
- **ALC / TCM did not improve coverage at this budget.** With the margin score at the 0.95 / 0.98
  thresholds on 000un (seed 1): PRIME 43.0 % (test precision 92.1 %) / 29.2 % (96.6 %); +TCM
  40.4 % (93.1 %) / 25.6 % (97.7 %); +ALC 42.1 % (92.9 %) / 26.3 % (97.7 %); +ALC+TCM 42.8 % (93.0 %)
  / 28.6 % (96.5 %). Each auxiliary term trades a little coverage for about one point of test
  precision, i.e. moves along the same coverage-precision curve rather than above it; on 050un and
  100un the order changes from set to set. All within what one seed can show. The ALC pair
  head's probability as the automation score automates almost nothing (0.3 %): after 24 steps the
  head separates the positive from the hardest negative only weakly (BCE 0.67, chance 0.69). TCM's
  term averaged 0.29 over the single epoch: the absolute cosine levels barely moved (m+ = 0.9,
  m- = 0.5, the defaults, not tuned on validation). The claim "higher coverage at equal precision" is
  therefore not shown at this budget. **At a larger budget it is** (`recommend_full_layers.md`: 3
  epochs, every layer trained, seeds 0 and 1): on 000un PRIME+ALC+TCM automates 63.6 % of the
  queries at 95.8 % test precision against PRIME's 59.9 % at 95.6 %, and 43.0 % at 98.0 % against
  37.4 % at 97.9 %, in both seeds; the ablations there put the gain on ALC.
- P@5 is at most 20 % because every WDC offer belongs to exactly one product (one positive label
  per query); R@10 / R@100 are the useful recall figures.
- Latency: in-process ASGI client (no network, no uvicorn), one request at a time, on the same loaded
  VM; the batch endpoint encodes 32 titles per call; the first call after a catalogue or model change
  builds the label index (encodes every product the model has no prototype for). Read the absolute
  numbers as pessimistic.
- The ViXML demo ran at the same time as the second invocation (its train times are inflated); it
  shows the mechanism (the image tokens carry the colour the title lacks: 49.2 -> 68.3 P@1 against a
  text-only ceiling of 50), not a product-data result.
- SmolLM2 decoder fusion in the ViXML demo was only loaded and timed (one forward of 32 queries
  with image tokens took 46.5 s on the loaded AMD VM, fp32 after GGUF dequantisation, LoRA
  unmerged; METHODS §5.5 measured 1.9 s for 33 x 32 tokens on an idle CPU without LoRA).
- **Decoder text backbone, trained** (section above, quiet Intel VM): SmolLM2-135M + rsLoRA (r 16,
  4.9M trained parameters) reaches P@1 53.3 on 000un after 2 epochs, from 22.9 zero-shot (mean
  pooling over a chat-tuned decoder is a poor embedding before training); MiniLM trained whole on
  the same batches reaches 77.3 from 57.2. The decoder costs 6.9x more per training step (6.5 s vs
  0.95 s for 32 queries + their labels) and encodes 13x slower (22 vs 291 texts/s). At this budget
  (94 steps, one seed, one LoRA learning rate, 2e-4) the decoder is far behind; METHODS §5.5 trains
  it for many epochs on a GPU. On a 2-core CPU MiniLM stays the serving backbone; the decoder is an
  offline option (`DecoderFusionEncoder`) for a GPU.
"""
SCORES = ("cosine", "margin", "pair")
METRICS = ("p@1", "p@5", "r@10", "r@100", "coverage@0.95", "precision@0.95", "coverage@0.98", "precision@0.98")


def _memo(fn):  # type: ignore[no-untyped-def]
    """Memoise a fixed model's text encoder: the three test sets share valid queries and labels."""
    store: dict[str, np.ndarray] = {}

    def encode(texts: list[str]) -> np.ndarray:
        todo = [t for t in dict.fromkeys(texts) if t not in store]
        if todo:
            for t, v in zip(todo, fn(todo)):
                store[t] = v
        return np.stack([store[t] for t in texts]) if texts else fn([])

    return encode


def _subset(bench: RecommendBenchmark, n_labels: int) -> RecommendBenchmark:
    """Smoke-test size: queries of the first ``n_labels`` seen labels (+ as many unseen)."""
    seen = np.flatnonzero(bench.label_seen)[:n_labels]
    unseen = np.flatnonzero(~bench.label_seen)[:n_labels]
    keep = set(seen.tolist()) | set(unseen.tolist())

    def cut(qs: QuerySet | None) -> QuerySet | None:
        if qs is None:
            return None
        return qs.subset([i for i, t in enumerate(qs.targets) if t[0] in keep])

    train = cut(bench.train)
    assert train is not None
    return RecommendBenchmark(
        bench.name, bench.test_name, bench.label_keys, bench.label_texts, bench.label_seen,
        train, cut(bench.valid), cut(bench.test) or bench.test, dict(bench.notes),
    )  # fmt: skip


def _evaluate_all(model: RecommenderModel, benches: dict[str, RecommendBenchmark]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, bench in benches.items():
        out[name] = evaluate_recommender(model, bench)  # coverage for every automation score
        logger.info("%s %s", name, {k: out[name][k] for k in METRICS})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="wdc-products-80cc20rnd")
    ap.add_argument("--tests", default="000un,050un,100un")
    ap.add_argument("--configs", default="ngame,prime,prime+alc+tcm", help="run for every seed")
    ap.add_argument("--ablations", default="prime+tcm,prime+alc", help="run for the first seed, after the rest")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--trainable-layers", type=int, default=2)
    ap.add_argument("--max-steps-per-epoch", type=int, default=None)
    ap.add_argument("--budget-minutes", type=float, default=33.0, help="no new run starts after this")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--subset", type=int, default=None, help="smoke test: labels kept per test set")
    ap.add_argument("--out", default=str(RESULTS / "recommend.json"))
    ap.add_argument("--md", default=str(DOC))
    ap.add_argument("--merge", default=None, help="a results JSON of an earlier run: its trained runs join the summary")
    ap.add_argument("--latency", action="store_true", help="measure API latency and add it to --out / --md")
    ap.add_argument("--latency-requests", type=int, default=200)
    ap.add_argument("--latency-catalogue", type=int, default=None, help="smoke test: fewer products")
    ap.add_argument("--vixml", action="store_true", help="run the generated-image ViXML demo, add it to --out / --md")
    ap.add_argument("--smollm2", action="store_true", help="time the SmolLM2 fusion decoder, add it to the ViXML part")
    ap.add_argument(
        "--backbones",
        default=None,
        help="e.g. minilm,smollm2: train each text encoder on the same data (NGAME loss), add P@1 and cost to --out",
    )
    ap.add_argument("--backbone-test", default="000un", help="test set of the backbone comparison")
    ap.add_argument("--backbone-train-queries", type=int, default=None, help="training offers (default: all)")
    ap.add_argument("--backbone-test-queries", type=int, default=None, help="test offers (default: all)")
    ap.add_argument("--backbone-epochs", type=int, default=1)
    ap.add_argument("--backbone-batch-size", type=int, default=32)
    ap.add_argument("--lora-r", type=int, default=16)
    ap.add_argument("--lora-lr", type=float, default=2e-4)
    ap.add_argument("--minilm-lr", type=float, default=5e-5)
    ap.add_argument("--vixml-products", type=int, default=30)
    ap.add_argument("--vixml-epochs", type=int, default=2)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stdout)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    if args.smollm2:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stdout)
        torch.set_num_threads(args.threads)
        payload = json.loads(Path(args.out).read_text())
        payload.setdefault("vixml", {})["smollm2"] = smollm2_check()
        Path(args.out).write_text(json.dumps(payload, indent=2))
        Path(args.md).write_text(render_markdown(payload))
        return 0
    if args.backbones:
        payload = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
        payload["backbones"] = backbones(args)
        payload["backbones"]["command"] = "python benchmarks/bench_recommend.py " + " ".join(argv or sys.argv[1:])
        payload["backbones"]["machine"] = machine()
        payload["backbones"]["date"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        Path(args.out).write_text(json.dumps(payload, indent=2))
        if "summary" in payload:
            Path(args.md).write_text(render_markdown(payload))
        return 0
    if args.latency or args.vixml:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stdout)
        torch.set_num_threads(args.threads)
        payload = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
        key = "latency" if args.latency else "vixml"
        keep = payload.get(key, {}).get("smollm2")
        payload[key] = latency(args) if args.latency else vixml(args)
        if keep is not None and key == "vixml":
            payload[key]["smollm2"] = keep
        payload[key]["command"] = "python benchmarks/bench_recommend.py " + " ".join(argv or sys.argv[1:])
        payload[key]["machine"] = machine()
        Path(args.out).write_text(json.dumps(payload, indent=2))
        if "summary" in payload:
            Path(args.md).write_text(render_markdown(payload))
        return 0
    command = "python benchmarks/bench_recommend.py " + " ".join(argv if argv is not None else sys.argv[1:])

    benches = {t: load_benchmark(args.data, t) for t in args.tests.split(",")}
    if args.subset:
        benches = {t: _subset(b, args.subset) for t, b in benches.items()}
    train_bench = next(iter(benches.values()))  # the train split is the same file for every test set
    base = BiEncoder.from_pretrained("minilm", max_length=32)
    n_layers = len(base.backbone.encoder.layer)
    cache = FrozenBottomCache(base, n_layers - args.trainable_layers, batch_size=128)

    runs: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    zero = RecommenderModel(base, "zero-shot", settings={"name": "minilm-zero-shot"})
    zero.encode_fn = _memo(lambda texts: cache.encode(base, texts))
    runs.append({"model": "zero-shot", "seed": None, "results": _evaluate_all(zero, benches)})
    runs[-1]["seconds"] = round(time.perf_counter() - t0, 1)
    logger.info("zero-shot done in %.0fs (cache %d texts)", runs[-1]["seconds"], len(cache))

    if args.merge:
        # Same budget, other seeds: the earlier run's trained models join the means (zero-shot is deterministic).
        earlier = json.loads(Path(args.merge).read_text())
        for run in earlier["runs"]:
            if run["model"] != "zero-shot":
                runs.append({**run, "merged_from": f"{args.merge} ({earlier['date']}, {earlier['command']})"})
    skipped: list[str] = []
    last_run = 0.0
    seeds = [int(s) for s in args.seeds.split(",")]
    plan = [(name, seed) for seed in seeds for name in args.configs.split(",") if name]
    plan += [(name, seeds[0]) for name in args.ablations.split(",") if name]
    for name, seed in plan:
        elapsed = (time.perf_counter() - started) / 60
        if elapsed + last_run / 60 > args.budget_minutes:
            skipped.append(f"{name} seed {seed}")
            logger.info("budget: skipping %s seed %d (%.1f min elapsed)", name, seed, elapsed)
            continue
        t0 = time.perf_counter()
        encoder = copy.deepcopy(base)
        model, metrics = train_recommender(
            train_bench, None, encoder, cache=cache, seed=seed, epochs=args.epochs,
            batch_size=args.batch_size, trainable_layers=args.trainable_layers,
            max_steps_per_epoch=args.max_steps_per_epoch, calibrate=False, progress=False,
            **CONFIGS[name],
        )  # fmt: skip
        train_s = time.perf_counter() - t0
        model.encode_fn = _memo(model.encode_fn)  # type: ignore[arg-type]
        results = _evaluate_all(model, benches)
        last_run = time.perf_counter() - t0
        runs.append(
            {"model": name, "seed": seed, "train_seconds": round(train_s, 1), "seconds": round(last_run, 1),
             "history": metrics["history"], "results": results}
        )  # fmt: skip
        logger.info("%s seed %d done in %.0fs", name, seed, last_run)
        _write(args, runs, benches, skipped, command, started)
    _write(args, runs, benches, skipped, command, started)
    return 0


def latency(args: argparse.Namespace) -> dict[str, Any]:
    """p50 / p99 of POST /v1/recommend (one query) and /batch (32 queries), in-process ASGI, 2 threads.

    Catalogue = the 1,000 products of the 100un benchmark (500 seen, 500 unseen), ingested
    through POST /v1/ingest. Two models: zero-shot (serving MiniLM) and a PRIME folder (its
    weights barely trained: latency depends on the architecture, not on the quality).
    """
    import tempfile

    from fastapi.testclient import TestClient

    from app.core.config import Settings
    from app.db.migrate import upgrade
    from app.main import create_app
    from app.pipeline.encoder import Encoder
    from benchmarks.common import percentile

    bench = load_benchmark(args.data, "100un")
    rows = [{"external_id": k, "title": t} for k, t in zip(bench.label_keys, bench.label_texts)]
    rows = rows[: args.latency_catalogue] if args.latency_catalogue else rows
    feed = "\n".join(json.dumps(r) for r in rows).encode()
    queries = bench.test.texts + bench.valid.texts if bench.valid is not None else bench.test.texts
    tmp = Path(tempfile.mkdtemp(prefix="bench-rec-"))
    prime_dir = tmp / "prime"
    base = BiEncoder.from_pretrained("minilm", max_length=32)
    train_recommender(
        bench, prime_dir, base, method="prime", alc=False, epochs=1, max_steps_per_epoch=2, trainable_layers=2,
        calibrate=False, progress=False,
    )  # fmt: skip
    out: dict[str, Any] = {"catalogue": len(rows), "requests": args.latency_requests, "client": "in-process ASGI"}
    encoder = Encoder.load("minilm", max_length=32, threads=args.threads)
    for name, model_dir in (("zero-shot", None), ("prime", prime_dir)):
        db = tmp / f"{name}.db"
        upgrade(f"sqlite:///{db}")
        settings = Settings(
            _env_file=None, environment="test", data_dir=tmp / f"var-{name}", database_url=f"sqlite:///{db}",
            load_demo_catalogue=False, redis_url=None, recommend_model_dir=model_dir, admin_token="x" * 32,
        )  # type: ignore[call-arg]  # fmt: skip
        app = create_app(settings, encoder=encoder, background_load=False)
        with TestClient(app) as client:
            job = client.post("/v1/ingest", files={"file": ("cat.jsonl", feed)}, data={"format": "jsonl"}).json()
            deadline = time.monotonic() + 1800
            while client.get(f"/v1/jobs/{job['job_id']}").json()["state"] not in (
                "completed",
                "completed_with_errors",
                "failed",
            ):
                if time.monotonic() > deadline:
                    raise SystemExit("ingest did not finish")
                time.sleep(0.5)
            t0 = time.perf_counter()
            first = client.post("/v1/recommend", json={"query": {"text": queries[0]}})
            build_s = time.perf_counter() - t0  # first call builds the label index
            assert first.status_code == 200, first.text
            single: list[float] = []
            for q in queries[1 : 1 + args.latency_requests]:
                t = time.perf_counter()
                res = client.post("/v1/recommend", json={"query": {"text": q}, "top_k": 10})
                single.append((time.perf_counter() - t) * 1000)
                assert res.status_code == 200
            batch: list[float] = []
            for start in range(0, min(len(queries), 32 * 10), 32):
                items = [{"query": {"text": q}, "top_k": 10} for q in queries[start : start + 32]]
                t = time.perf_counter()
                assert client.post("/v1/recommend/batch", json={"items": items}).status_code == 200
                batch.append((time.perf_counter() - t) * 1000)
        out[name] = {
            "label_index_build_s": round(build_s, 2),
            "single_p50_ms": round(percentile(single, 50), 1),
            "single_p99_ms": round(percentile(single, 99), 1),
            "batch32_p50_ms": round(percentile(batch, 50), 1),
            "batch32_p99_ms": round(percentile(batch, 99), 1),
        }
        logger.info("latency %s: %s", name, out[name])
    out["loadavg_after"] = list(os.getloadavg())
    return out


def vixml(args: argparse.Namespace) -> dict[str, Any]:
    """ViXML on the generated colour-variant data (synthetic images), and a SmolLM2 fusion timing."""
    from models.vixml import ImageFeatureExtractor
    from training.recommend.train import freeze_lower_layers
    from training.recommend.vixml_demo import run_demo

    def encoder() -> BiEncoder:
        model = BiEncoder.from_pretrained("minilm", max_length=32)
        freeze_lower_layers(model, args.trainable_layers)
        return model

    out = run_demo(encoder, ImageFeatureExtractor.packaged(), n_products=args.vixml_products, epochs=args.vixml_epochs)
    out["trainable_layers"] = args.trainable_layers
    logger.info("vixml: %s", out)
    return out


def backbones(args: argparse.Namespace) -> dict[str, Any]:
    """MiniLM (fine-tuned whole) against SmolLM2-135M + LoRA on the same WDC data, batches and steps."""
    from training.recommend.backbone_compare import Arm, CompareConfig, compare_backbones

    def minilm() -> Arm:
        t0 = time.perf_counter()
        model = BiEncoder.from_pretrained("minilm", max_length=32)
        return Arm(
            "minilm", model, lambda texts: model(**model.tokenize(texts)), args.minilm_lr,
            time.perf_counter() - t0, "all-MiniLM-L6-v2, every weight trained, max length 32",
        )  # fmt: skip

    def smollm2() -> Arm:
        from models.vixml import DecoderFusionEncoder

        t0 = time.perf_counter()
        dec = DecoderFusionEncoder.from_smollm2(lora_r=args.lora_r, max_length=32)
        dec.project.requires_grad_(False)  # text only: the image projection gets no gradient
        return Arm(
            "smollm2", dec, lambda texts: dec(texts), args.lora_lr, time.perf_counter() - t0,
            f"SmolLM2-135M-Instruct (packaged Q4_1 GGUF dequantised to fp32), rsLoRA r = alpha = {args.lora_r} on "
            "q/k/v/o/gate/up/down, ViXML text template, mean pooled, max length 32 text tokens",
        )  # fmt: skip

    factories = {"minilm": minilm, "smollm2": smollm2}
    unknown = [b for b in args.backbones.split(",") if b not in factories]
    if unknown:
        raise SystemExit(f"unknown backbones {unknown}; choose from {sorted(factories)}")
    bench = load_benchmark(args.data, args.backbone_test)
    base = BiEncoder.from_pretrained("minilm", max_length=32)
    cfg = CompareConfig(
        epochs=args.backbone_epochs, batch_size=args.backbone_batch_size, seed=0,
        max_train_queries=args.backbone_train_queries, max_test_queries=args.backbone_test_queries,
    )  # fmt: skip
    return compare_backbones(
        bench, {b: factories[b] for b in args.backbones.split(",")}, lambda texts: base.encode(texts), cfg
    )


def smollm2_check() -> dict[str, Any]:
    """Load SmolLM2-135M (GGUF, LoRA) as a fusion decoder and time one forward of 32 queries with images."""
    from models.vixml import DecoderFusionEncoder

    try:
        t0 = time.perf_counter()
        dec = DecoderFusionEncoder.from_smollm2(lora_r=64)
        load_s = time.perf_counter() - t0
        texts = [f"Acme t-shirt model {i}00X - free shipping" for i in range(32)]
        feats, mask = torch.randn(32, 3, 1280), torch.zeros(32, 3, dtype=torch.bool)
        mask[:, 0] = True
        with torch.inference_mode():
            t0 = time.perf_counter()
            dec.eval()(texts, feats, mask)
            fwd_ms = (time.perf_counter() - t0) * 1000
        trainable = sum(p.numel() for p in dec.parameters() if p.requires_grad)
        out = {"load_s": round(load_s, 1), "forward_32_ms": round(fwd_ms, 1), "trainable_params": trainable}
    except Exception as exc:  # noqa: BLE001 - optional backbone; record why it did not run
        out = {"error": f"{type(exc).__name__}: {exc}"}
    logger.info("smollm2: %s", out)
    return out


def _by_score(run: dict[str, Any], test: str) -> dict[str, Any]:
    return run["results"][test].get("coverage_by_score") or {}


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return round(float(np.mean(kept)), 4) if kept else None


def _summary(runs: list[dict[str, Any]], tests: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for model in dict.fromkeys(r["model"] for r in runs):
        mine = [r for r in runs if r["model"] == model]
        out[model] = {"seeds": [r["seed"] for r in mine]}
        for t in tests:
            row: dict[str, Any] = {}
            for key in METRICS:
                vals = [r["results"][t][key] for r in mine if r["results"][t].get(key) is not None]
                row[key] = round(float(np.mean(vals)), 4) if vals else None
            for part in ("seen", "unseen"):
                vals = [r["results"][t][part]["p@1"] for r in mine if part in r["results"][t]]
                row[f"{part}_p@1"] = round(float(np.mean(vals)), 4) if vals else None
            for score in SCORES:
                got = [(r["seed"], _by_score(r, t)[score]) for r in mine if score in _by_score(r, t)]
                if got:
                    row[f"coverage_by_{score}"] = {k: _mean([g[k] for _, g in got]) for k in METRICS[4:]}
                    row[f"coverage_by_{score}"]["seeds"] = [seed for seed, _ in got]
            out[model][t] = row
    return out


def _write(args, runs, benches, skipped, command, started) -> None:  # type: ignore[no-untyped-def]
    tests = list(benches)
    previous = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
    payload = {
        "benchmark": "recommend",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git": git_rev(),
        "machine": machine(),
        "command": command,
        "budget": {
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "trainable_layers": args.trainable_layers,
            "max_steps_per_epoch": args.max_steps_per_epoch,
            "seeds": args.seeds,
            "budget_minutes": args.budget_minutes,
            "subset": args.subset,
            "max_length": 32,
        },  # fmt: skip
        "data": {t: b.describe() for t, b in benches.items()},
        "wall_seconds": round(time.perf_counter() - started, 1),
        "skipped_for_budget": skipped,
        "summary": _summary(runs, tests),
        "runs": runs,
    }
    # Latency and the ViXML demo come from separate invocations: keep them.
    payload.update({k: previous[k] for k in ("latency", "vixml") if k in previous})
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(payload, indent=2))
    Path(args.md).parent.mkdir(parents=True, exist_ok=True)
    Path(args.md).write_text(render_markdown(payload))


def _f(v: Any) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def render_markdown(p: dict[str, Any]) -> str:
    b, m = p["budget"], p["machine"]
    merged = {str(r["seed"]) for r in p["runs"] if r.get("merged_from")}
    lines = [
        "# Recommender benchmark: WDC Products, offers -> products (issue 6)",
        "",
        f"Date {p['date']} (git {p['git']}); machine: 2-core shared CPU VM ({m['cpu']}, {m['cores']} cores, "
        f"torch {m['torch']}, {m['torch_threads']} threads), load average at start "
        f"{', '.join(f'{x:.1f}' for x in m['loadavg_at_start'])} (other engineers' jobs on the same cores).",
        "",
        f"Command: `{p['command']}` (wall time {p['wall_seconds'] / 60:.1f} min).",
        "",
        f"CPU budget for every trained model: {b['epochs']} epoch(s) over the 1,500 training offers, batch "
        f"{b['batch_size']}, max length {b['max_length']}, only the top {b['trainable_layers']} of 6 MiniLM layers "
        f"trained (the frozen bottom is computed once per text), seeds {b['seeds']}"
        + (
            f" in this invocation, plus runs (seeds {', '.join(sorted(merged))}) merged from other invocations"
            " with the same budget (see the notes)"
            if merged
            else ""
        )
        + (f", subset {b['subset']} labels" if b["subset"] else "")
        + ". Numbers are means over the seeds that ran"
        + (f"; skipped for the time budget: {', '.join(p['skipped_for_budget'])}" if p["skipped_for_budget"] else "")
        + ".",
        "",
        "Metrics in percent. P@1 / P@5 / R@10 / R@100 over all test queries; seen / unseen P@1 split by whether "
        "the query's product has training offers; C@p = share of **all** test queries whose top-1 is automated at "
        "the threshold chosen on the validation split for precision p, with the test precision achieved there.",
        "",
    ]
    for t, d in p["data"].items():
        lines += [
            f"## Test set {t}: {d['test_queries']} queries ({d['test_queries_seen']} of seen products), "
            f"{d['labels']} products ({d['labels_seen']} seen)",
            "",
            "| model | seeds | P@1 | P@1 seen | P@1 unseen | P@5 | R@10 | R@100 |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for model, s in p["summary"].items():
            r = s[t]
            seeds = ",".join(str(x) for x in s["seeds"] if x is not None) or "-"
            lines.append(
                f"| {model} | {seeds} | {_f(r['p@1'])} | {_f(r['seen_p@1'])} | {_f(r['unseen_p@1'])} | {_f(r['p@5'])} "
                f"| {_f(r['r@10'])} | {_f(r['r@100'])} |"
            )
        lines += [
            "",
            f"Coverage on {t}, C@p (test precision at the valid threshold), by automation score: top-1 cosine, "
            "margin = top-1 minus top-2 cosine, pair = ALC pair-head probability (models trained with ALC only).",
            "",
            "| model | score | seeds | C@0.95 (prec) | C@0.98 (prec) |",
            "|---|---|---|---|---|",
        ]
        for model, s in p["summary"].items():
            for score in SCORES:
                c = s[t].get(f"coverage_by_{score}")
                if c:
                    lines.append(
                        f"| {model} | {score} | {','.join(str(x) for x in c['seeds'] if x is not None) or '-'} "
                        f"| {_f(c['coverage@0.95'])} ({_f(c['precision@0.95'])}) "
                        f"| {_f(c['coverage@0.98'])} ({_f(c['precision@0.98'])}) |"
                    )
        lines.append("")
    lat = p.get("latency")
    if lat:
        lm = lat["machine"]
        lines += [
            "## Latency of POST /v1/recommend",
            "",
            f"Command: `{lat['command']}`; {lat['client']} (no network), sequential requests, "
            f"{lat['requests']} single queries and 10 batches of 32, catalogue of {lat['catalogue']} products "
            f"(SQLite, FAISS flat), torch threads {lm['torch_threads']}, load average at start "
            f"{', '.join(f'{x:.1f}' for x in lm['loadavg_at_start'])}.",
            "",
            "| model | label index build (first call) | single p50 | single p99 | batch of 32 p50 | batch of 32 p99 |",
            "|---|---|---|---|---|---|",
        ]
        for name in ("zero-shot", "prime"):
            r = lat[name]
            lines.append(
                f"| {name} | {r['label_index_build_s']} s | {r['single_p50_ms']} ms | {r['single_p99_ms']} ms "
                f"| {r['batch32_p50_ms']} ms | {r['batch32_p99_ms']} ms |"
            )
        lines.append("")
    vx = p.get("vixml")
    if vx and "labels" in vx:
        lines += [
            "## ViXML image fusion on a generated dataset (synthetic images)",
            "",
            "**The images are generated, not product photos** (none are available offline): "
            f"{vx['labels'] // vx['colours_per_product']} base products in {vx['colours_per_product']} colour variants "
            "whose titles are identical; each catalogue product and each query offer has its own picture "
            "(a coloured shape, random shade / position / size / noise), so only the image says which variant it "
            f"is. {vx['train_queries']} training and {vx['test_queries']} test offers; MiniLM with the top "
            f"{vx['trainable_layers']} layers trained, frozen EfficientNet-Lite0 (1280-d) and a learned projection, "
            f"{vx['epochs']} epochs, seed {vx['seed']}. Command: `{vx['command']}`.",
            "",
            "| model | P@1 | R@10 | train time |",
            "|---|---|---|---|",
        ]
        for arm in ("text-only", "text+image"):
            r = vx[arm]
            lines.append(f"| {arm} | {_f(r['p@1'])} | {_f(r['r@10'])} | {r['train_seconds']} s |")
        sm = vx.get("smollm2", {})
        lines += [
            "",
            f"Text-only ceiling: {_f(vx['chance_p@1_text_only_ceiling'])} (the variants' titles tie). Decoder backbone "
            "check (SmolLM2-135M-Instruct Q4_1 GGUF dequantised to fp32, rsLoRA r = alpha = 64 via peft, image "
            "tokens spliced into the prompt): "
            + (
                f"loaded in {sm['load_s']} s, {sm['trainable_params']:,} trainable parameters (LoRA + projection), "
                f"one forward of 32 queries {sm['forward_32_ms']} ms on this CPU; not trained here (CPU budget)."
                if "load_s" in sm
                else (f"did not run: {sm['error']}." if "error" in sm else "not measured in this run.")
            ),
            "",
        ]
    lines += _backbones_markdown(p.get("backbones"))
    lines += ["## Notes", "", NOTES, ""]
    return "\n".join(lines)


def _backbones_markdown(bb: dict[str, Any] | None) -> list[str]:
    if not bb or not bb.get("arms"):
        return []
    st, m = bb["settings"], bb["machine"]
    lines = [
        "## Text backbone: MiniLM against the SmolLM2-135M decoder with LoRA",
        "",
        f"Date {bb['date']}; machine {m['cpu']}, {m['cores']} cores, torch {m['torch']}, {m['torch_threads']} threads, "
        f"load average at start {', '.join(f'{x:.1f}' for x in m['loadavg_at_start'])}. Command: `{bb['command']}`.",
        "",
        f"Same data for both: {bb['dataset']}, {bb['train_queries']} training offers -> {bb['labels']} products "
        f"(test set {bb['test_set']}, {bb['test_queries']} test offers, every product seen), the same cluster "
        f"batches of {st['batch_size']} (built once from zero-shot MiniLM embeddings, clusters of "
        f"{st['cluster_size']}), NGAME's fixed-margin triplet (margin {st['margin']}) on the in-batch hardest "
        f"negatives, {st['epochs']} epoch(s), {st['warmup_steps']} warm-up steps then linear decay, seed "
        f"{st['seed']}. Label text = the product's representative training title.",
        "",
        "| backbone | trained / all parameters | lr | P@1 zero-shot | P@1 trained | R@10 trained "
        "| train time (s per step) | encode texts/s | load |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, a in bb["arms"].items():
        lines.append(
            f"| {name} | {a['trainable_parameters'] / 1e6:.1f}M / {a['parameters'] / 1e6:.1f}M | {a['lr']:g} "
            f"| {_f(a['zero_shot']['p@1'])} | **{_f(a['trained']['p@1'])}** | {_f(a['trained']['r@10'])} "
            f"| {a['train_seconds'] / 60:.1f} min ({a['seconds_per_step']} s) | {a['trained']['encode_texts_per_s']} "
            f"| {a['load_seconds']} s |"
        )
    lines += ["", *[f"- {name}: {a['note']}." for name, a in bb["arms"].items()], ""]
    return lines


if __name__ == "__main__":
    sys.exit(main())
