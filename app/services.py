"""The service container built at start-up: database, encoder, index, pipeline, queue.

Models load in a background thread so that `/healthz` answers at once while `/readyz` says
503 until everything is in place (a liveness probe must never wait for model warm-up).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from app.core.config import Settings
from app.db.base import make_engine, make_session_factory
from app.jobs.context import JobContext
from app.jobs.queue import JobQueue, make_queue
from app.jobs.worker import Worker
from app.pipeline.encoder import Encoder
from app.pipeline.match import MatchPipeline
from app.pipeline.scoring import Decider, ZeroShotScorer
from app.search.params import IndexParams
from app.search.sync import IndexService

logger = logging.getLogger(__name__)


class NotReady(RuntimeError):
    """Models or index are still loading."""


@dataclass
class Services:
    settings: Settings
    engine: Engine
    factory: sessionmaker[Session]
    queue: JobQueue
    encoder: Encoder | None = None
    index: IndexService | None = None
    pipeline: MatchPipeline | None = None
    worker: Worker | None = None
    load_error: str | None = None
    ready: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def create(cls, settings: Settings) -> Services:
        settings.ensure_dirs()
        engine = make_engine(settings.database_url)
        return cls(
            settings,
            engine,
            make_session_factory(engine),
            make_queue(settings.redis_url, settings.queue_name),
        )

    def require_pipeline(self) -> MatchPipeline:
        if self.pipeline is None:
            raise NotReady(self.load_error or "models and index are still loading")
        return self.pipeline

    def require_encoder(self) -> Encoder:
        if self.encoder is None:
            raise NotReady(self.load_error or "the encoder is still loading")
        return self.encoder

    def job_context(self) -> JobContext:
        ctx = JobContext(self.settings, self.factory, self.require_encoder)
        if self.index is not None:
            ctx.after_commit.append(self.index.catch_up)
        return ctx

    def load(self, encoder: Encoder | None = None) -> None:
        """Load the encoder, open the index and build the pipeline (runs off the event loop)."""
        try:
            s = self.settings
            self.encoder = encoder or Encoder.load(
                s.encoder,
                max_length=s.encoder_max_length,
                batch_size=s.encoder_batch_size,
                threads=s.torch_threads,
            )
            index = IndexService(
                self.factory,
                self.encoder.model_id,
                self.encoder.dim,
                IndexParams(kind=s.index_kind),
                s.index_dir,
                snapshot_every=s.index_snapshot_every,  # type: ignore[arg-type]
            )
            index.open()
            self.index = index
            self.pipeline = MatchPipeline(
                self.encoder,
                index,
                self.factory,
                ZeroShotScorer(s.lexical_weight),
                Decider(s.match_threshold, s.review_threshold),
            )
            index.start_follower(s.index_sync_interval)
            if s.redis_url is None:
                self.worker = Worker(self.job_context(), self.queue)
                self.worker.start_thread()
            self.ready.set()
            logger.info("service ready: %d products indexed", len(index.index))
        except Exception as exc:  # noqa: BLE001 - reported by /readyz instead of killing the process
            self.load_error = f"start-up failed: {exc}"
            logger.exception("start-up failed")

    def database_ok(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:  # noqa: BLE001
            return False

    def close(self) -> None:
        if self.worker is not None:
            self.worker.stop()
        if self.index is not None:
            self.index.stop()
            try:
                self.index.snapshot()
            except Exception:  # noqa: BLE001
                logger.warning("could not write the index snapshot at shutdown", exc_info=True)
        self.engine.dispose()
