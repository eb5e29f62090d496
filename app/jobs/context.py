"""What a job handler gets to work with, whichever process runs it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from app.core.config import Settings
from app.pipeline.encoder import Encoder


class JobFailed(Exception):
    """A job cannot complete for a reason the user must fix; it is not retried."""


@dataclass
class JobContext:
    settings: Settings
    factory: sessionmaker[Session]
    encoder_provider: Callable[[], Encoder]
    # Called after every committed chunk with (rows_done, rows_total); the CLI draws a bar.
    on_progress: Callable[[int, int | None], None] | None = None
    after_commit: list[Callable[[], None]] = field(default_factory=list)

    @property
    def encoder(self) -> Encoder:
        return self.encoder_provider()
