"""The service container built at start-up: database, queue, and the serving runtime.

The runtime (encoder + index + match pipeline) is one immutable bundle replaced by a single
assignment when a new bi-encoder is promoted, so a request that reads it once never mixes
model versions. Models load in a background thread so that `/healthz` answers at once while
`/readyz` says 503 until everything is in place.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.core.config import Settings
from app.db.base import make_engine, make_session_factory, ping
from app.db.tables import Job
from app.jobs.context import Handler, JobContext
from app.jobs.queue import JobQueue, make_queue
from app.jobs.reembed import GapFiller, reembed_all
from app.jobs.worker import Worker
from app.pipeline.calibration import own_decider
from app.pipeline.encoder import Encoder
from app.pipeline.hybrid import LexicalRescorer
from app.pipeline.match import MatchPipeline
from app.pipeline.scoring import Decider, Scorer
from app.registry.calibration import decider_for
from app.registry.default_matcher import install_default_matcher
from app.registry.encoder_provider import EncoderProvider
from app.registry.scorers import serving_scorer, wanted_scorer_name
from app.search.lexicon import CatalogueLexicon
from app.search.sync import IndexService

logger = logging.getLogger(__name__)


class NotReady(RuntimeError):
    """Models or index are still loading."""


def run_retrain_job(ctx: JobContext, job: Job) -> str:
    """The retrain job (`app/retrain/job.py`).

    Imported on its first run, not at start-up: it is the one part of the service that trains,
    and an API process that never runs a retrain job (with Redis, workers run the jobs) does not
    load the training package.
    """
    from app.retrain.job import run_retrain

    return run_retrain(ctx, job)


#: Job kinds implemented above `app/jobs` (which knows its own kinds), handed to the runner
#: with every job context this container or the CLI's worker builds.
JOB_HANDLERS: dict[str, Handler] = {"retrain": run_retrain_job}


@dataclass(frozen=True)
class Runtime:
    encoder: Encoder
    index: IndexService
    pipeline: MatchPipeline


@dataclass
class Services:
    settings: Settings
    engine: Engine
    factory: sessionmaker[Session]
    queue: JobQueue
    runtime: Runtime | None = None
    provider: EncoderProvider | None = None
    worker: Worker | None = None
    load_error: str | None = None
    ready: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _switch_lock: threading.Lock = field(default_factory=threading.Lock)
    _lexicon: CatalogueLexicon | None = None

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

    # -- accessors (each reads the runtime reference once) ----------------------------------
    @property
    def encoder(self) -> Encoder | None:
        rt = self.runtime
        return rt.encoder if rt else None

    @property
    def index(self) -> IndexService | None:
        rt = self.runtime
        return rt.index if rt else None

    @property
    def pipeline(self) -> MatchPipeline | None:
        rt = self.runtime
        return rt.pipeline if rt else None

    def require_runtime(self) -> Runtime:
        rt = self.runtime
        if rt is None or not self.ready.is_set():
            raise NotReady(self.load_error or "models and index are still loading")
        return rt

    def require_pipeline(self) -> MatchPipeline:
        return self.require_runtime().pipeline

    def require_encoder(self) -> Encoder:
        return self.require_runtime().encoder

    def current_encoder(self) -> Encoder:
        """The encoder new writes must use: the active registered one (switching if needed)."""
        if self.provider is None:
            raise NotReady(self.load_error or "the encoder is still loading")
        return self.provider()

    def job_context(self) -> JobContext:
        ctx = JobContext(self.settings, self.factory, self.current_encoder, handlers=JOB_HANDLERS)
        ctx.after_commit.append(self.catch_up)
        return ctx

    def catch_up(self) -> None:
        rt = self.runtime
        if rt is not None:
            rt.index.catch_up()

    # -- loading and switching ----------------------------------------------------------------
    def _default_encoder(self, override: Encoder | None) -> Encoder:
        return override if override is not None else Encoder.from_settings(self.settings)

    def _scorer(self, encoder: Encoder) -> tuple[Scorer, Decider]:
        return serving_scorer(self.settings, self.factory, encoder.model_id)

    def build_runtime(self, encoder: Encoder, index: IndexService | None = None) -> Runtime:
        """Embed what the encoder lacks, open (or rebuild) its index, wire a pipeline."""
        if index is None:
            missing = reembed_all(self.factory, encoder)
            if missing:
                logger.info("embedded %d products for %s", missing, encoder.model_id)
            index = IndexService.from_settings(self.factory, self.settings, encoder.model_id, encoder.dim)
            index.open()
        scorer, decider = self._scorer(encoder)
        rescorer = self._rescorer()
        if rescorer is not None:
            rescorer.lexicon.open()  # built before /readyz says ready, not in a request
        pipeline = MatchPipeline(
            encoder, index, self.factory, scorer, decider, rescorer, rerank_depth=self.settings.rerank_depth
        )
        return Runtime(encoder, index, pipeline)

    def _rescorer(self) -> LexicalRescorer | None:
        """Hybrid blocking unless BLOCKING_LEXICAL_WEIGHT is 0; the lexicon outlives runtimes."""
        s = self.settings
        if s.blocking_lexical_weight == 0:
            return None
        if self._lexicon is None:
            self._lexicon = CatalogueLexicon(self.factory)
        return LexicalRescorer(
            self.factory, self._lexicon, s.blocking_pool, s.blocking_lexical_weight, s.blocking_lexical_candidates
        )

    def load(self, encoder: Encoder | None = None) -> None:
        """Load the encoder, open the index and build the pipeline (runs off the event loop)."""
        try:
            # Before the first scorer is built: a shipped default matcher may become the active one.
            install_default_matcher(self.settings, self.factory)
            self.provider = EncoderProvider(self.settings, self.factory, lambda: self._default_encoder(encoder))
            self.runtime = self.build_runtime(self.provider.refresh())
            threading.Thread(target=self._follow, name="runtime-follower", daemon=True).start()
            if self.settings.redis_url is None:
                self.worker = Worker(self.job_context(), self.queue)
                self.worker.start_thread()
            self.ready.set()
            logger.info("service ready: %d products indexed", len(self.runtime.index.index))
        except Exception as exc:  # noqa: BLE001 - reported by /readyz instead of killing the process
            self.load_error = f"start-up failed: {exc}"
            logger.exception("start-up failed")

    def switch_if_needed(self) -> bool:
        """Swap in the runtime of a newly promoted encoder; the old one serves until then."""
        assert self.provider is not None
        with self._switch_lock:
            wanted = self.provider.refresh()
            current = self.runtime
            wanted_scorer = wanted_scorer_name(self.settings, self.factory)
            same_encoder = current is not None and current.encoder.model_id == wanted.model_id
            if same_encoder and current is not None and current.pipeline.scorer.name == wanted_scorer:
                return self._swap_decider()
            logger.info("switching to encoder %s, scorer %s", wanted.model_id, wanted_scorer)
            fresh = self.build_runtime(wanted, current.index if same_encoder and current else None)
            self.runtime = fresh  # one assignment: requests see the old or the new bundle
            if current is not None and not same_encoder:
                current.index.snapshot()
            return True

    def refresh_decider(self) -> bool:
        """Swap in the thresholds of the serving scorer's active catalogue calibration (or its
        own, after a revert) when they changed; encoder, index and scorer stay as they are."""
        with self._switch_lock:
            return self._swap_decider()

    def _swap_decider(self) -> bool:
        current = self.runtime
        if current is None:
            return False
        pipeline = current.pipeline
        wanted = decider_for(self.factory, pipeline.scorer, current.encoder.model_id, own_decider(pipeline.decider))
        if wanted == pipeline.decider:
            return False
        logger.info("decider of %s: %s", pipeline.scorer.name, wanted)
        fresh = pipeline.with_decider(wanted)
        self.runtime = Runtime(current.encoder, current.index, fresh)  # one assignment, as for a promotion
        return True

    def _follow(self) -> None:
        """Keep the index in step with the DB, fill vector gaps, and follow promotions and
        catalogue calibrations (stored by any process)."""
        s = self.settings
        ticks = 0
        gaps = GapFiller(self.factory)
        while not self._stop.wait(s.index_sync_interval):
            ticks += 1
            try:
                rt = self.runtime
                if rt is None:
                    continue
                if ticks % 10 == 0:
                    self.switch_if_needed()
                    rt = self.runtime
                    assert rt is not None
                    # A write racing a promotion may have embedded with the old model.
                    gaps.fill(rt.encoder)
                rt.index.catch_up()
                rt.index.maybe_snapshot()
                if rt.pipeline.rescorer is not None:
                    rt.pipeline.rescorer.lexicon.catch_up(rt.index.index.version)
            except Exception:  # noqa: BLE001 - a DB outage must not kill the follower
                logger.exception("runtime follower could not sync; will retry")
                self._stop.wait(min(5.0, s.index_sync_interval * 4))

    def database_ok(self) -> bool:
        try:
            ping(self.engine)
            return True
        except Exception:  # noqa: BLE001
            return False

    def close(self) -> None:
        self._stop.set()
        if self.worker is not None:
            self.worker.stop(wait_seconds=self.settings.shutdown_grace_seconds)
        rt = self.runtime
        if rt is not None:
            try:
                rt.index.snapshot()
            except Exception:  # noqa: BLE001
                logger.warning("could not write the index snapshot at shutdown", exc_info=True)
        self.engine.dispose()
