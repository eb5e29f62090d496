"""`productmatch` command line: serve, migrate, worker, ingest, index, and (later) train/eval."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import signal
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from app.core.config import Settings, get_settings
from app.core.logging import configure_logging

if TYPE_CHECKING:  # imported on use: each command loads only what it needs
    from app.pipeline.encoder import Encoder
    from app.services import Services

logger = logging.getLogger("productmatch")


def cmd_migrate(settings: Settings, _: argparse.Namespace) -> int:
    _database_at_head(settings)
    logger.info("database at head: %s", settings.database_url.split("@")[-1])
    return 0


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    cmd_migrate(settings, args)
    uvicorn.run("app.main:app_factory", factory=True, host=args.host, port=args.port, log_level="info")
    return 0


def _database_at_head(settings: Settings) -> None:
    """Apply the migrations, as `serve` does: every command that needs the schema works on a
    fresh DATA_DIR (a no-op when the schema is at head; concurrent starts are serialised)."""
    from sqlalchemy.exc import OperationalError

    from app.db.migrate import upgrade

    settings.ensure_dirs()
    try:
        upgrade(settings.database_url)
    except OperationalError as exc:
        where = settings.database_url.split("@")[-1]
        raise SystemExit(f"productmatch: cannot open the database {where}: {exc.orig}") from None


def _services(settings: Settings) -> Services:
    from app.services import Services

    _database_at_head(settings)
    return Services.create(settings)


def _encoder(settings: Settings) -> Encoder:
    from app.pipeline.encoder import Encoder

    return Encoder.from_settings(settings)


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from app.jobs.context import JobContext
    from app.jobs.queue import RedisQueue
    from app.jobs.worker import Worker

    if not settings.redis_url:
        logger.error("REDIS_URL is not set: without Redis the API runs jobs in-process")
        return 2
    from app.registry.encoder_provider import EncoderProvider
    from app.services import JOB_HANDLERS

    services = _services(settings)
    # Follows promotions: a new active bi-encoder is loaded without restarting the worker.
    provider = EncoderProvider(settings, services.factory, lambda: _encoder(settings))
    ctx = JobContext(settings, services.factory, provider, handlers=JOB_HANDLERS)
    worker = Worker(ctx, RedisQueue(settings.redis_url))
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    signal.signal(signal.SIGINT, lambda *_: worker.stop())
    worker.run_forever()
    return 0


def cmd_ingest(settings: Settings, args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from app.db import jobs
    from app.jobs.context import JobContext
    from app.jobs.ingest_files import UnreadableFile, check_upload, detect_format
    from app.jobs.runner import run_job

    source = Path(args.file)
    if not source.is_file():
        logger.error("no such file: %s", source)
        return 2
    settings.ensure_dirs()
    try:
        fmt = detect_format(source.name, args.format)
        check_upload(source, fmt)
    except UnreadableFile as exc:
        logger.error("%s: %s", source, exc)
        return 2
    services = _services(settings)
    job_id = str(uuid.uuid4())
    stored = Path(settings.upload_dir) / f"{job_id}.{fmt}"  # type: ignore[arg-type]  # never None: Settings fills it in its validator
    shutil.copyfile(source, stored)
    job, _ = jobs.create_job(
        services.factory,
        "ingest",
        {"path": str(stored), "format": fmt, "filename": source.name},
        job_id=job_id,
    )
    from app.registry.encoder_provider import EncoderProvider

    provider = EncoderProvider(settings, services.factory, lambda: _encoder(settings))
    bar = tqdm(total=None, unit="row", desc=f"ingest {source.name}")

    def progress(done: int, total: int | None) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    ctx = JobContext(settings, services.factory, provider, on_progress=progress)
    state = run_job(ctx, job.id, f"cli-{job.id[:8]}")
    bar.close()
    final = jobs.get_job(services.factory, job.id)
    errors = jobs.row_errors(services.factory, job.id, 20)
    summary = {
        "job_id": job.id,
        "state": state,
        "rows_total": final.rows_total if final else None,
        "rows_ok": final.rows_ok if final else None,
        "rows_unchanged": final.rows_unchanged if final else None,
        "rows_failed": final.rows_failed if final else None,
        "errors": [{"row": e.row, "field": e.field, "message": e.message} for e in errors],
        "message": final.message if final else None,
    }
    print(json.dumps(summary, indent=2))  # noqa: T201 - the CLI's result
    return 0 if state in (jobs.COMPLETED, jobs.COMPLETED_WITH_ERRORS) else 1


def cmd_match_file(settings: Settings, args: argparse.Namespace) -> int:
    """Match every offer of a feed file (the job behind POST /v1/match/jobs), with a progress bar."""
    from tqdm import tqdm

    from app.db import jobs
    from app.jobs.context import JobContext
    from app.jobs.ingest_files import UnreadableFile, detect_format
    from app.jobs.match_feed.reader import check_feed
    from app.jobs.match_feed.runner import KIND, make_payload
    from app.jobs.runner import run_job
    from app.registry.encoder_provider import EncoderProvider

    out = Path(args.out)
    if args.engine == "ray":
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            logger.error("--engine ray needs Ray: pip install 'productmatch[ray]'")
            return 2
    settings.ensure_dirs()
    services = _services(settings)
    if args.resume:
        job = jobs.get_job(services.factory, args.resume)
        if job is None or job.kind != KIND:
            logger.error("no bulk-match job %s", args.resume)
            return 2
        job_id = job.id
    else:
        if not args.feed:
            logger.error("name the FEED file (or --resume JOB_ID)")
            return 2
        source = Path(args.feed)
        if not source.is_file():
            logger.error("no such file: %s", source)
            return 2
        output = args.format or ("parquet" if out.suffix.lower() in (".parquet", ".pq") else "csv")
        try:
            fmt = detect_format(source.name, args.input_format)
            check_feed(source, fmt)
        except UnreadableFile as exc:
            logger.error("%s: %s", source, exc)
            return 2
        job_id = str(uuid.uuid4())
        stored = Path(settings.upload_dir) / f"{job_id}.{fmt}"  # type: ignore[arg-type]  # never None: Settings fills it in its validator
        shutil.copyfile(source, stored)  # the job seeks into it on resume: it must not change
        k = args.k or settings.default_top_k
        payload = make_payload(
            settings, job_id, stored, fmt, output, k, args.brand, args.category, args.engine, source.name
        )
        jobs.create_job(services.factory, KIND, payload, job_id=job_id)
        logger.info("bulk-match job %s (resume with --resume %s)", job_id, job_id)

    provider = EncoderProvider(settings, services.factory, lambda: _encoder(settings))
    bar = tqdm(total=None, unit="offer", desc="match", dynamic_ncols=True)

    def progress(done: int, total: int | None) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    ctx = JobContext(settings, services.factory, provider, on_progress=progress)
    state = run_job(ctx, job_id, f"cli-{job_id[:8]}")
    bar.close()
    final = jobs.get_job(services.factory, job_id)
    if state is None and final is not None and final.state in jobs.ACTIVE_STATES:
        logger.error("job %s is held by another worker or failed this attempt: %s", job_id, final.message)
    if state in (jobs.COMPLETED, jobs.COMPLETED_WITH_ERRORS) and final is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(final.payload["output_path"], out)
    errors = jobs.row_errors(services.factory, job_id, 20)
    summary = {
        "job_id": job_id,
        "state": state or (final.state if final else None),
        "results": str(out) if state in (jobs.COMPLETED, jobs.COMPLETED_WITH_ERRORS) else None,
        "rows_total": final.rows_total if final else None,
        "rows_matched": final.rows_ok if final else None,
        "rows_failed": final.rows_failed if final else None,
        "decisions": (final.timings or {}).get("decisions") if final else None,
        "engine": (final.timings or {}).get("engine") if final else None,
        "errors": [{"row": e.row, "field": e.field, "message": e.message} for e in errors],
        "message": final.message if final else None,
    }
    print(json.dumps(summary, indent=2))  # noqa: T201 - the CLI's result
    return 0 if state in (jobs.COMPLETED, jobs.COMPLETED_WITH_ERRORS) else 1


def cmd_index(settings: Settings, args: argparse.Namespace) -> int:
    from app.registry.encoder_provider import EncoderProvider
    from app.search.sync import IndexService

    services = _services(settings)
    encoder = EncoderProvider(settings, services.factory, lambda: _encoder(settings)).refresh()
    index = IndexService.from_settings(services.factory, settings, encoder.model_id, encoder.dim, kind=args.kind)
    if args.action == "rebuild":
        if args.reembed:
            from app.jobs.reembed import reembed_all

            reembed_all(services.factory, encoder)
        index.rebuild()
        index.snapshot()
        result: dict[str, Any] = {
            "action": "rebuild",
            "stats": index.index.stats(),
            "snapshot": str(index.snapshot_path),
        }
    else:
        if args.action == "repair":
            index.open()  # load or rebuild, replay, then repair both directions
        elif not index.load_snapshot():
            index.rebuild()
        index.catch_up()
        report = index.verify(repair=args.action == "repair")
        if args.action == "repair":
            index.snapshot()
        result = {
            "action": args.action,
            "consistent": report.consistent,
            "missing": report.missing[:50],
            "orphans": report.orphans[:50],
            "stats": index.index.stats(),
        }
    print(json.dumps(result, indent=2, default=str))  # noqa: T201 - the CLI's result
    return 0


def cmd_models(settings: Settings, args: argparse.Namespace) -> int:
    from app.db import jobs, model_versions
    from app.jobs.context import JobContext
    from app.jobs.runner import run_job
    from app.registry import folders

    services = _services(settings)
    factory = services.factory
    if args.action == "list":
        rows = model_versions.list_versions(factory, args.kind)
        out = [{"version": r.version, "kind": r.kind, "status": r.status, "metrics": r.metrics} for r in rows]
        print(json.dumps(out, indent=2, default=str))  # noqa: T201 - the CLI's result
        return 0
    if args.action == "register":
        if not args.target:
            logger.error("models register needs the artefact folder")
            return 2
        row = folders.register(factory, args.target, settings.model_dir)  # type: ignore[arg-type]  # never None: Settings fills it in its validator
        print(json.dumps({"version": row.version, "kind": row.kind, "path": row.path}))  # noqa: T201
        if not args.promote:
            return 0
        version = row.version
    elif args.action == "promote":
        version = args.target
    else:
        version = None
    ctx = JobContext(settings, factory, lambda: _encoder(settings))
    if version is not None:
        job, _ = jobs.create_job(factory, "promote", {"version": version})
    else:
        job, _ = jobs.create_job(factory, "rollback", {"kind": args.kind or "bi-encoder"})
    state = run_job(ctx, job.id, f"cli-{job.id[:8]}")
    final = jobs.get_job(factory, job.id)
    print(json.dumps({"job_id": job.id, "state": state, "message": final.message if final else None}))  # noqa: T201
    return 0 if state == "completed" else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="productmatch", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="apply migrations and serve the API with uvicorn")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(func=cmd_serve)

    sub.add_parser("migrate", help="apply the database migrations").set_defaults(func=cmd_migrate)
    sub.add_parser("worker", help="run jobs from the Redis queue (REDIS_URL)").set_defaults(func=cmd_worker)

    ingest = sub.add_parser("ingest", help="ingest a CSV or JSON Lines catalogue file, with a progress bar")
    ingest.add_argument("file")
    ingest.add_argument("--format", choices=["csv", "jsonl"], default=None)
    ingest.set_defaults(func=cmd_ingest)

    match_file = sub.add_parser(
        "match-file", help="match every offer of a CSV / JSON Lines feed into a results file, with a progress bar"
    )
    match_file.add_argument("feed", nargs="?", help="offers: CSV with a header (offer_id, title, ...) or JSON Lines")
    match_file.add_argument("--out", required=True, help="the results file to write")
    match_file.add_argument(
        "--format", choices=["csv", "parquet"], default=None, help="results format (default: from --out)"
    )
    match_file.add_argument("--input-format", choices=["csv", "jsonl"], default=None)
    match_file.add_argument("--k", type=int, choices=range(1, 101), default=None, metavar="N", help="candidates")
    match_file.add_argument("--brand", default=None, help="only candidates of this brand")
    match_file.add_argument("--category", default=None, help="only candidates of this category")
    match_file.add_argument(
        "--engine", choices=["local", "ray"], default=None, help="default: ray when RAY_ADDRESS is set"
    )
    match_file.add_argument("--resume", metavar="JOB_ID", default=None, help="continue an interrupted run")
    match_file.set_defaults(func=cmd_match_file)

    index = sub.add_parser("index", help="rebuild, check or repair the FAISS index from the database")
    index.add_argument("action", choices=["rebuild", "check", "repair"])
    index.add_argument("--kind", choices=["flat", "hnsw", "ivfpq"], default=None)
    index.add_argument("--reembed", action="store_true", help="embed products that lack a vector for the model")
    index.set_defaults(func=cmd_index)

    models = sub.add_parser("models", help="register, list, promote or roll back model versions")
    models.add_argument("action", choices=["register", "list", "promote", "rollback"])
    models.add_argument("target", nargs="?", help="artefact folder (register) or version (promote)")
    models.add_argument("--kind", default=None, help="bi-encoder (default for rollback) or matcher")
    models.add_argument("--promote", action="store_true", help="with register: promote at once")
    models.set_defaults(func=cmd_models)

    try:
        from training.cli import add_subcommands
    except ImportError:
        pass
    else:
        add_subcommands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = get_settings()
    except ValidationError as exc:  # one line per problem, not a traceback
        problems = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        raise SystemExit(f"productmatch: invalid settings: {problems}") from None
    configure_logging(settings.log_level)
    if getattr(args, "needs_settings", True):
        return int(args.func(settings, args) or 0)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
