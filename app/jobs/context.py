"""What a job handler gets to work with, whichever process runs it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from app.core.config import Settings
from app.db.tables import Job
from app.pipeline.encoder import Encoder


class JobFailed(Exception):
    """A job cannot complete for a reason the user must fix; it is not retried."""


#: A job kind's handler: runs the job (from its checkpoint) and returns its final state.
Handler = Callable[["JobContext", Job], str]


@dataclass
class JobContext:
    settings: Settings
    factory: sessionmaker[Session]
    encoder_provider: Callable[[], Encoder]
    # Called after every committed chunk with (rows_done, rows_total); the CLI draws a bar.
    on_progress: Callable[[int, int | None], None] | None = None
    after_commit: list[Callable[[], None]] = field(default_factory=list)
    # Handlers of job kinds implemented above this package (the retrain job, `app/retrain`),
    # added by whoever builds the context (`app/services.py`, `app/cli.py`); the runner knows
    # the kinds of `app/jobs` itself. Injected so that `app/jobs` imports no package above it.
    handlers: Mapping[str, Handler] = field(default_factory=dict)

    @property
    def encoder(self) -> Encoder:
        return self.encoder_provider()
