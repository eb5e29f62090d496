"""End-to-end matching quality through the HTTP API, as a user meets it (issue 15, item 5).

Starts the real service (`productmatch serve`: uvicorn, embedded SQLite, in-process jobs) on a
free port with a fresh DATA_DIR, and talks to it over HTTP only:

1. the benchmark's right table is the catalogue, uploaded to `POST /v1/ingest` (JSON Lines);
2. the distinct left records of its test pairs are the offers, sent to `POST /v1/match/batch`
   (at most `--batch` per call, top_k 10);
3. metrics over the labelled test pairs (`benchmarks/e2e_metrics.py`);
4. with `--labels 25,50,...`: a reviewer who knows the truth walks `GET /v1/review` in queue
   order and labels each item's top candidate through `POST /v1/feedback` until N labels are
   given (an item it cannot judge is skipped: its pair is unlabelled and the offer has no known
   match), `POST /v1/admin/calibration` refits the thresholds (reported as not available where
   the service lacks the route), and the offers whose items were not labelled are matched again.

Scorers, each in its own run with its own DATA_DIR (labels given to one never reach another):

* `zero-shot`: `SCORER=zero-shot`, always;
* `default`: the shipped default matcher as a fresh service serves it (`SCORER=default`,
  `DEFAULT_MATCHER=--default-matcher`, the repository's `artefacts/default-matcher/` unless
  named), skipped with a log line when that folder holds no model or with `--no-default`;
* `matcher`: with `--matcher DIR`, that trained matcher registered (CLI, before the server
  starts: registering a folder has no HTTP route) and promoted through
  `POST /v1/admin/models/{version}/promote`, over the zero-shot scorer.

    .venv/bin/python benchmarks/bench_e2e.py --data ../shared/data/abt-buy --labels 25,50,100,200
    .venv/bin/python benchmarks/bench_e2e.py --data ../shared/data/promap-en/promapen-test_data.csv
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import RESULTS, git_rev, machine, percentile  # noqa: E402
from benchmarks.e2e_metrics import (  # noqa: E402
    UNSENT,
    Benchmark,
    Offer,
    OfferResult,
    Truth,
    evaluate,
    load_benchmark,
    offer_key,
    redecide,
    restrict,
    reviewer_label,
    truths,
)

logger = logging.getLogger("bench_e2e")
REPO = Path(__file__).resolve().parents[1]
TERMINAL = ("completed", "completed_with_errors", "failed")
# Under MAX_BODY_BYTES (1 MB): long descriptions can make 100 offers a larger body.
MAX_BATCH_BYTES = 900_000
# Settings that would point the service away from the embedded default (their defaults derive
# from DATA_DIR); removed from the server's environment.
NON_DEFAULT_ENV = ("INDEX_DIR", "MODEL_DIR", "UPLOAD_DIR", "RESULTS_DIR", "INGEST_ALLOWED_DIR", "ENCODER")
REVIEW_PAGE_MAX = 500


class ServiceError(RuntimeError):
    """The service died, refused a request the benchmark needs, or did not finish in time."""


# --------------------------------------------------------------------------- the server process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def service_settings_env() -> dict[str, str]:
    """The service settings this run's environment sets (PRECISION, MATCHER_QUANTIZE, ...), which
    every server it starts inherits: a result file says which configuration it measured."""
    from app.core.config import Settings

    names = {name.upper() for name in Settings.model_fields} - set(NON_DEFAULT_ENV) - {"ADMIN_TOKEN"}
    return {k: v for k, v in sorted(os.environ.items()) if k in names}


def service_env(data_dir: Path, admin_token: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in NON_DEFAULT_ENV}
    env.update(extra or {})
    env.update(
        DATA_DIR=str(data_dir),
        DATABASE_URL="",  # blank: SQLite under DATA_DIR
        REDIS_URL="",  # blank: the in-process job worker
        LOAD_DEMO_CATALOGUE="false",
        ADMIN_TOKEN=admin_token,
        LOG_LEVEL="WARNING",
    )
    return env


class Service:
    """`python -m app.cli serve` (the Makefile's `run`) on a free loopback port."""

    def __init__(
        self,
        data_dir: Path,
        admin_token: str,
        log: Path,
        ready_timeout_s: float = 600,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.env = service_env(data_dir, admin_token, extra_env)
        self.log = log
        self.ready_timeout_s = ready_timeout_s
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Service:
        cmd = [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(cmd, cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        self._wait_ready()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise ServiceError(f"the service was not ready in {self.ready_timeout_s:.0f} s:\n{self._log_tail()}")

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise ServiceError(f"the service exited with {self.proc.returncode}:\n{self._log_tail()}")

    def stop(self) -> None:
        """SIGTERM, as a user's Ctrl-C; killed only if it does not stop within a minute."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            logger.warning("the service did not stop within 60 s; killing pid %d", self.proc.pid)
            self.proc.kill()
            self.proc.wait(30)


def register_matcher(folder: Path, data_dir: Path, admin_token: str, extra_env: dict[str, str]) -> str:
    """`productmatch models register DIR` on the stopped service's DATA_DIR; the version name."""
    cmd = [sys.executable, "-m", "app.cli", "models", "register", str(folder)]
    env = service_env(data_dir, admin_token, extra_env)
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ServiceError(f"registering {folder} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return str(json.loads(done.stdout.strip().splitlines()[-1])["version"])


# --------------------------------------------------------------------------- HTTP calls


def _ok(res: httpx.Response, what: str) -> Any:
    if res.status_code >= 400:
        raise ServiceError(f"{what}: HTTP {res.status_code}: {res.text[:1000]}")
    return res.json()


def wait_job(client: httpx.Client, job_id: str, timeout_s: float = 1800) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        body = _ok(client.get(f"/v1/jobs/{job_id}"), "job status")
        if body["state"] in TERMINAL:
            return body
        time.sleep(0.5)
    raise ServiceError(f"job {job_id} did not finish in {timeout_s:.0f} s")


def wait_index(client: httpx.Client, size: int, timeout_s: float = 600) -> None:
    """Until `/readyz` reports ``size`` indexed products (the index follows the database)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        body = client.get("/readyz").json()
        if (body.get("index") or {}).get("size", 0) >= size:
            return
        time.sleep(0.5)
    raise ServiceError(f"the index did not reach {size} products in {timeout_s:.0f} s")


def ingest_catalogue(client: httpx.Client, products: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Upload the catalogue as JSON Lines; wait for the job and for the index."""
    body = "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in products).encode("utf-8")
    t0 = time.perf_counter()
    files = {"file": ("catalogue.jsonl", body, "application/x-ndjson")}
    accepted = _ok(client.post("/v1/ingest", files=files, data={"format": "jsonl"}), "ingest")
    job = wait_job(client, accepted["job_id"])
    if job["state"] == "failed":
        raise ServiceError(f"the ingestion job failed: {job.get('message')}")
    stored = int(job["rows_ok"]) + int(job["rows_unchanged"])
    wait_index(client, stored)
    return {
        "rows_total": job["progress"]["rows_total"],
        "rows_ok": job["rows_ok"],
        "rows_failed": job["rows_failed"],
        "errors": job["errors"][:5],
        "seconds": round(time.perf_counter() - t0, 2),
    }


def _body(items: Sequence[bytes]) -> bytes:
    return b'{"items":[' + b",".join(items) + b"]}"


def _batches(offers: Sequence[Offer], top_k: int, size: int) -> Iterator[tuple[list[Offer], bytes]]:
    """Bodies of at most ``size`` offers and MAX_BATCH_BYTES bytes."""
    chunk: list[Offer] = []
    items: list[bytes] = []
    used = 0
    for offer in offers:
        item = json.dumps({"offer": offer.fields, "top_k": top_k}).encode("utf-8")
        if chunk and (len(chunk) >= size or used + len(item) + 64 > MAX_BATCH_BYTES):
            yield chunk, _body(items)
            chunk, items, used = [], [], 0
        chunk.append(offer)
        items.append(item)
        used += len(item) + 1
    if chunk:
        yield chunk, _body(items)


@dataclass
class MatchRun:
    results: dict[str, OfferResult]
    latencies_ms: list[float]
    thresholds: dict[str, float]
    model_versions: dict[str, str]

    def latency(self) -> dict[str, Any]:
        n = len(self.results)
        total = sum(self.latencies_ms)
        return {
            "batches": len(self.latencies_ms),
            "batch_p50_ms": percentile(self.latencies_ms, 50),
            "batch_p95_ms": percentile(self.latencies_ms, 95),
            "ms_per_offer": total / n if n else None,
        }


def match_offers(client: httpx.Client, offers: Sequence[Offer], top_k: int, batch: int) -> MatchRun:
    run = MatchRun({}, [], {}, {})
    headers = {"content-type": "application/json"}
    for chunk, body in _batches(offers, top_k, batch):
        t0 = time.perf_counter()
        res = client.post("/v1/match/batch", content=body, headers=headers)
        run.latencies_ms.append((time.perf_counter() - t0) * 1000)
        answers = _ok(res, "match batch")["results"]
        for offer, answer in zip(chunk, answers, strict=True):
            ids = tuple(c["external_id"] for c in answer["candidates"])
            scores = tuple(None if c["score"] is None else float(c["score"]) for c in answer["candidates"])
            ranks = tuple(int(c["retrieval_rank"]) for c in answer["candidates"])
            run.results[offer.key] = OfferResult(answer["decision"], ids, scores[0] if scores else None, scores, ranks)
        run.thresholds, run.model_versions = answers[-1]["thresholds"], answers[-1]["model_versions"]
    return run


def promote(client: httpx.Client, admin: dict[str, str], version: str, timeout_s: float = 600) -> None:
    """Promote through the admin API; wait until the serving process answers with the version."""
    accepted = _ok(client.post(f"/v1/admin/models/{version}/promote", headers=admin), "promote")
    job = wait_job(client, accepted["job_id"])
    if job["state"] != "completed":
        raise ServiceError(f"promoting {version} failed: {job.get('message')}")
    deadline = time.monotonic() + timeout_s
    # A brand no product has: no candidates, so the probe's no_match never enters the review queue.
    probe = {"offer": {"title": "probe"}, "top_k": 1, "filters": {"brand": "bench-e2e-no-such-brand"}}
    while time.monotonic() < deadline:
        answer = _ok(client.post("/v1/match", json=probe), "probe match")
        if answer["model_versions"].get("scorer") == version:
            return
        time.sleep(1)
    raise ServiceError(f"the service did not switch to {version} in {timeout_s:.0f} s")


def refit_calibration(client: httpx.Client, admin: dict[str, str]) -> dict[str, Any]:
    """`POST /v1/admin/calibration {}`; a route the service lacks is reported, not raised."""
    res = client.post("/v1/admin/calibration", json={}, headers=admin)
    missing_route = res.status_code == 405 or (res.status_code == 404 and "Not Found" in res.text)
    if missing_route:
        return {"available": False, "status": res.status_code}
    if res.status_code >= 400:
        return {"available": True, "ok": False, "status": res.status_code, "detail": res.text[:500]}
    body = res.json()
    if isinstance(body, dict) and body.get("job_id") and res.status_code == 202:
        job = wait_job(client, body["job_id"])
        return {"available": True, "ok": job["state"] == "completed", "status": 202, "job": job.get("result")}
    return {"available": True, "ok": True, "status": res.status_code, "response": body}


# --------------------------------------------------------------------------- review labels


@dataclass
class LabelState:
    """Review items answered so far (cumulative over the steps)."""

    truth: dict[str, Truth]
    done: int = 0
    labelled: set[str] = field(default_factory=set)
    matches: int = 0
    no_matches: int = 0
    skipped: int = 0

    @property
    def labels(self) -> int:
        return self.matches + self.no_matches


def answer_item(client: httpx.Client, item: dict[str, Any], state: LabelState) -> None:
    """Label the item's top candidate with the truth through `POST /v1/feedback`, or skip it."""
    key = offer_key(item["offer"])
    top = item["candidates"][0]["external_id"] if item["candidates"] else None
    label = reviewer_label(top, state.truth.get(key)) if top is not None else None
    state.done += 1
    if label is None:
        state.skipped += 1
        return
    body = {"review_id": item["id"], "product_external_id": top, "label": label, "reviewer": "bench_e2e"}
    _ok(client.post("/v1/feedback", json=body), "feedback")
    state.labelled.add(key)
    state.matches += int(label == "match")
    state.no_matches += int(label == "no_match")


def label_study(
    client: httpx.Client,
    admin: dict[str, str],
    bench: Benchmark,
    first: MatchRun,
    steps: Sequence[int],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """For each N: walk the review queue in order until N labels are given (items the reviewer
    cannot judge are skipped), refit the calibration, re-match the offers not labelled."""
    page = _ok(client.get("/v1/review", params={"limit": REVIEW_PAGE_MAX}), "review queue")
    queue: list[dict[str, Any]] = page["items"]
    state = LabelState(truths(bench.known))
    out: dict[str, Any] = {"queue_items_read": len(queue), "available": True, "steps": []}
    for n in steps:
        if state.done >= len(queue) and out["steps"]:
            break  # the queue is exhausted: a larger N would repeat the last step
        while state.labels < n and state.done < len(queue):
            answer_item(client, queue[state.done], state)
        refit = refit_calibration(client, admin)
        step: dict[str, Any] = {
            "requested": n,
            "items_answered": state.done,
            "labels": state.labels,
            "label_match": state.matches,
            "label_no_match": state.no_matches,
            "skipped": state.skipped,
            "refit": refit,
        }
        out["steps"].append(step)
        if not refit["available"]:
            out["available"] = False
            break
        if refit["ok"]:
            step.update(_after_refit(client, bench, first, state, args))
    return out


def _after_refit(
    client: httpx.Client, bench: Benchmark, first: MatchRun, state: LabelState, args: argparse.Namespace
) -> dict[str, Any]:
    keep = [o for o in bench.offers if o.key not in state.labelled]
    keys = {o.key for o in keep} | set(bench.unsendable)
    pairs = restrict(bench.pairs, keys)
    again = match_offers(client, keep, args.top_k, args.batch)
    before = {k: first.results.get(k, UNSENT) for k in keys}
    after = {k: again.results.get(k, UNSENT) for k in keys}
    return {
        "offers_evaluated": len(keys),
        "thresholds": again.thresholds,
        "model_versions": again.model_versions,
        "before": evaluate(before, pairs, bench.known),
        "after": evaluate(after, pairs, bench.known),
    }


# --------------------------------------------------------------------------- one scorer, whole run


@dataclass(frozen=True)
class ScorerPlan:
    """One run: its name, the scorer settings of its service, and a matcher folder to promote."""

    name: str
    env: dict[str, str]
    matcher: Path | None = None
    default_matcher: Path | None = None


def scorer_plans(args: argparse.Namespace) -> list[ScorerPlan]:
    zero_shot = {"SCORER": "zero-shot", "DEFAULT_MATCHER": ""}
    plans = [] if args.no_zero_shot else [ScorerPlan("zero-shot", zero_shot)]
    folder = args.default_matcher.resolve()
    if args.no_default:
        pass
    elif (folder / "manifest.json").is_file():
        plans.append(ScorerPlan("default", {"SCORER": "default", "DEFAULT_MATCHER": str(folder)}, None, folder))
    else:
        logger.info("no default matcher in %s: the default run is skipped", folder)
    if args.matcher is not None:
        # Over the zero-shot scorer, so the run measures the named matcher and nothing shipped.
        plans.append(ScorerPlan("matcher", {"SCORER": "default", "DEFAULT_MATCHER": ""}, args.matcher.resolve()))
    return plans


def head_cuts(folder: Path) -> dict[str, float]:
    """The match cuts a default-matcher head offers (``HEAD_MATCH_CUT`` / ``HEAD_PAIR_PRECISION``)."""
    head = json.loads((folder / "head.json").read_text(encoding="utf-8"))
    cuts = {f"pairwise precision {k}": v for k, v in (head.get("thresholds_for_precision") or {}).items()}
    cuts |= {f"top-1 precision {k}": v for k, v in (head.get("top1_thresholds_for_precision") or {}).items()}
    if head.get("top1_threshold") is not None:
        cuts["top-1 best F1"] = head["top1_threshold"]
    return {k: float(v) for k, v in cuts.items() if v is not None}


def other_cuts(
    folder: Path, results: dict[str, OfferResult], bench: Benchmark, served: dict[str, float]
) -> dict[str, Any]:
    """The same run's answers decided at each of the head's other cuts (same review cut)."""
    review = float(served.get("review", 0.0))
    out = {}
    for name, cut in head_cuts(folder).items():
        metrics = evaluate(redecide(results, cut, min(review, cut)), bench.pairs, bench.known)
        out[name] = {"match_at": cut, "metrics": metrics}
        logger.info("  at %s (%.3f): %s", name, cut, summary_line(metrics))
    return out


def run_scorer(plan: ScorerPlan, bench: Benchmark, args: argparse.Namespace) -> dict[str, Any]:
    name, matcher = plan.name, plan.matcher
    token = secrets.token_hex(16)
    admin = {"Authorization": f"Bearer {token}"}
    with tempfile.TemporaryDirectory(prefix=f"bench-e2e-{name}-") as tmp:
        data_dir = Path(tmp) / "var"
        version = register_matcher(matcher, data_dir, token, plan.env) if matcher is not None else None
        log = Path(tmp) / "serve.log"
        t0 = time.perf_counter()
        service = Service(data_dir, token, log, extra_env=plan.env)
        with service as svc, httpx.Client(base_url=svc.base_url, timeout=900) as client:
            started_s = time.perf_counter() - t0
            logger.info("%s: service ready on port %d in %.1f s", name, svc.port, started_s)
            ingest = ingest_catalogue(client, bench.products)
            logger.info("%s: catalogue ingested: %s", name, ingest)
            if version is not None:
                promote(client, admin, version)
            first = match_offers(client, bench.offers, args.top_k, args.batch)
            results = {**dict.fromkeys(bench.unsendable, UNSENT), **first.results}
            out: dict[str, Any] = {
                "scorer": name,
                "matcher_dir": str(matcher or plan.default_matcher or "") or None,
                "scorer_env": plan.env,
                "version": version,
                "startup_s": round(started_s, 2),
                "ingest": ingest,
                "model_versions": first.model_versions,
                "thresholds": first.thresholds,
                "latency": first.latency(),
                "metrics": evaluate(results, bench.pairs, bench.known),
                "answers": answers_of(results),
            }
            logger.info("%s: %s", name, summary_line(out["metrics"]))
            if plan.default_matcher is not None:
                out["at_other_cuts"] = other_cuts(plan.default_matcher, results, bench, first.thresholds)
            if args.labels:
                out["labels"] = label_study(client, admin, bench, first, args.labels, args)
    return out


# --------------------------------------------------------------------------- output


def answers_of(results: dict[str, OfferResult]) -> dict[str, Any]:
    """Each offer's decision and ranked candidates as ``[id, score, place in the blocking list]``
    (written beside the result file by :func:`write_answers`): what a study of other cuts, blends,
    rankings or rerank depths needs later."""
    return {
        key: [
            r.decision,
            [
                [c, None if s is None else round(s, 6), k]
                for c, s, k in zip(r.candidates, r.scores, r.retrieval_ranks, strict=False)
            ],
        ]
        for key, r in sorted(results.items())
    }


def write_answers(path: Path, runs: list[dict[str, Any]]) -> Path:
    """Move every run's ``answers`` out of ``runs`` into ``<results>/e2e_answers/<path stem>.json``."""
    answers = {run["scorer"]: run.pop("answers") for run in runs if "answers" in run}
    out = path.parent / "e2e_answers" / f"{path.stem}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(answers, separators=(",", ":")) + "\n", encoding="utf-8")
    return out


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def summary_line(m: dict[str, Any]) -> str:
    p = m["pairwise"]
    return (
        f"F1 {_pct(p['f1'])} (P {_pct(p['precision'])} / R {_pct(p['recall'])}), auto {_pct(m['auto_share'])} %, "
        f"auto-match precision {_pct(m['auto_match_precision'])}, coverage {_pct(m['coverage'])}, "
        f"R@1 {_pct(m['recall_at_1'])}, R@10 {_pct(m['recall_at_10'])}"
    )


def _row(cells: Sequence[object]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |\n"


def table(dataset: str, runs: Sequence[dict[str, Any]]) -> str:
    head = _row(
        (
            "dataset",
            "scorer",
            "offers",
            "F1 (P / R)",
            "F1, review as match",
            "decided automatically",
            "precision of auto `match` (judged only)",
            "coverage",
            "R@1",
            "R@10",
            "batch p50 / p95 ms",
        )
    )
    rows = [head, "|---" * 11 + "|\n"]
    for r in runs:
        m, p, lat = r["metrics"], r["metrics"]["pairwise"], r["latency"]
        cells = (
            dataset,
            r["scorer"],
            m["offers"],
            f"{_pct(p['f1'])} ({_pct(p['precision'])} / {_pct(p['recall'])})",
            _pct(m["pairwise_review_as_match"]["f1"]),
            f"{_pct(m['auto_share'])} %",
            f"{_pct(m['auto_match_precision'])} ({_pct(m['auto_match_precision_judged'])})",
            _pct(m["coverage"]),
            _pct(m["recall_at_1"]),
            _pct(m["recall_at_10"]),
            f"{lat['batch_p50_ms']:.0f} / {lat['batch_p95_ms']:.0f}",
        )
        rows.append(_row(cells))
    return "".join(rows) + "".join(label_table(dataset, r) for r in runs)


def label_table(dataset: str, run: dict[str, Any]) -> str:
    study = run.get("labels")
    if not study:
        return ""
    if not study["available"]:
        return f"\n{dataset}, {run['scorer']}: review labels' effect not available (no POST /v1/admin/calibration)\n"
    rows = [
        f"\n{dataset}, {run['scorer']}, after labels (offers not labelled; before -> after the refit):\n\n"
        "| labels (match / no_match) | offers | F1 | decided automatically | precision of auto `match` | coverage |"
        " thresholds match / review |\n"
        "|---|---|---|---|---|---|---|\n"
    ]
    for s in study["steps"]:
        if "after" not in s:
            rows.append(f"| {s['labels']} | – | refit failed: HTTP {s['refit'].get('status')} | | | | |\n")
            continue
        b, a = s["before"], s["after"]
        rows.append(
            f"| {s['labels']} ({s['label_match']} / {s['label_no_match']}) | {s['offers_evaluated']} | "
            f"{_pct(b['pairwise']['f1'])} -> {_pct(a['pairwise']['f1'])} | "
            f"{_pct(b['auto_share'])} -> {_pct(a['auto_share'])} % | "
            f"{_pct(b['auto_match_precision'])} -> {_pct(a['auto_match_precision'])} | "
            f"{_pct(b['coverage'])} -> {_pct(a['coverage'])} | "
            f"{s['thresholds'].get('match', float('nan')):.3f} / {s['thresholds'].get('review', float('nan')):.3f} |\n"
        )
    return "".join(rows)


def uncommitted_service_code() -> list[str]:
    """Changed files of the service's code: the run measured the working tree, not only HEAD."""
    cmd = ["git", "status", "--porcelain", "--", "app", "models", "migrations"]
    try:
        out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return ["unknown"]
    return [line[3:] for line in out.splitlines() if line.strip()]


def write_json(path: Path, payload: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    stamped = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git": git_rev(),
        "uncommitted_service_code": uncommitted_service_code(),
        **payload,
    }
    path.write_text(json.dumps(stamped, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def _steps(text: str) -> list[int]:
    steps = sorted({int(v) for v in text.split(",") if v.strip()})
    if any(n < 1 for n in steps):
        raise argparse.ArgumentTypeError("label counts must be positive")
    return steps


def read_benchmark(path: Path) -> Benchmark:
    """A DeepMatcher-format folder, or a ProMap pair CSV (its right records are the catalogue)."""
    if path.is_dir():
        return load_benchmark(path)
    # Imported here: the ProMap reader brings torch and the training package along, which a
    # DeepMatcher run (an HTTP client only) does not need to load.
    from benchmarks.bench_promap import e2e_benchmark

    return e2e_benchmark(path)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data",
        type=Path,
        required=True,
        help="a DeepMatcher-format benchmark folder, or a ProMap pair CSV (its right records are the catalogue)",
    )
    parser.add_argument("--matcher", type=Path, help="a trained matcher folder (productmatch train matcher)")
    parser.add_argument("--labels", type=_steps, default=[], help="review labels, e.g. 25,50,100,200")
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--batch", type=int, default=100, help="offers per /v1/match/batch (MAX_BATCH_ITEMS)")
    parser.add_argument("--out", type=Path, help="result file (default benchmarks/results/e2e_<dataset>.json)")
    parser.add_argument("--no-zero-shot", action="store_true", help="leave the zero-shot run out")
    parser.add_argument(
        "--default-matcher",
        type=Path,
        default=REPO / "artefacts" / "default-matcher",
        help="the default-matcher folder of the `default` run (default: the shipped one)",
    )
    parser.add_argument("--no-default", action="store_true", help="leave the shipped default matcher's run out")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    args = parse_args(argv)
    host = machine()  # before the run: its load average is the one the run started under
    bench = read_benchmark(args.data)
    logger.info(
        "%s: %d products, %d offers, %d test pairs",
        bench.name,
        len(bench.products),
        len(bench.offers),
        len(bench.pairs),
    )
    plans = scorer_plans(args)
    if not plans:
        raise SystemExit("nothing to run: every scorer is left out")
    runs = [run_scorer(plan, bench, args) for plan in plans]
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    payload = {
        "machine": host,
        "settings": settings,
        "service_env": service_settings_env(),
        "dataset": {
            "name": bench.name,
            "products": len(bench.products),
            "products_skipped": bench.products_skipped,
            "offers": len(bench.offers) + len(bench.unsendable),
            "offers_unsendable": len(bench.unsendable),
            "pairs": len(bench.pairs),
            "pairs_skipped": bench.pairs_skipped,
            "labelled_pairs_of_the_offers": len(bench.known),
        },
        "runs": runs,
    }
    target = args.out or RESULTS / f"e2e_{bench.name}.json"
    write_answers(target, runs)
    path = write_json(target, payload)
    print(table(bench.name, runs))
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
