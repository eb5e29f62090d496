"""Which encoder a process should use now: the active registered bi-encoder, else the default.

Every process (API or worker) asks this provider before embedding, so a promotion reaches
workers on other machines within `refresh_seconds` without restarting them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from app.core.config import Settings
from app.db import model_versions
from app.pipeline.encoder import Encoder

logger = logging.getLogger(__name__)


def load_version_encoder(settings: Settings, version: str, path: str) -> Encoder:
    """A registered bi-encoder in the configured precision; its vectors carry ``encoder.model_id``
    (the version plus the precision tag), which promotion and serving both key on."""
    return Encoder.load(
        path,
        max_length=settings.encoder_max_length,
        batch_size=settings.encoder_batch_size,
        threads=settings.torch_threads,
        model_id=version,
        device=settings.device,
        precision=settings.encoder_precision,
    )


class EncoderProvider:
    def __init__(
        self,
        settings: Settings,
        factory: sessionmaker[Session],
        default: Callable[[], Encoder],
        refresh_seconds: float = 2.0,
    ) -> None:
        self.settings = settings
        self.factory = factory
        self._default_factory = default
        self._default: Encoder | None = None
        self._current: Encoder | None = None
        self._checked = 0.0
        self.refresh_seconds = refresh_seconds
        self._lock = threading.Lock()

    def default(self) -> Encoder:
        if self._default is None:
            self._default = self._default_factory()
        return self._default

    def wanted_version(self) -> tuple[str, str] | None:
        row = model_versions.active(self.factory, "bi-encoder")
        return (row.version, row.path) if row is not None else None

    def refresh(self) -> Encoder:
        """Re-read the registry now and load the active encoder if it changed."""
        with self._lock:
            self._checked = time.monotonic()
            wanted = self.wanted_version()
            if wanted is None:
                self._current = self.default()
            elif self._current is None or self._current.version != wanted[0]:
                logger.info("loading registered encoder %s", wanted[0])
                self._current = load_version_encoder(self.settings, *wanted)
            return self._current

    def __call__(self) -> Encoder:
        if self._current is None or time.monotonic() - self._checked >= self.refresh_seconds:
            try:
                return self.refresh()
            except Exception:  # noqa: BLE001 - keep serving the model we have if the DB blinks
                if self._current is None:
                    raise
                logger.warning("could not refresh the active encoder", exc_info=True)
        assert self._current is not None
        return self._current
