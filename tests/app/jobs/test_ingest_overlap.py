"""Ingestion embeds the next chunk while it writes the current one, and keeps each chunk's
vectors tagged with the encoder that made them."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sqlalchemy import select

from app.db import jobs
from app.db.base import make_engine, make_session_factory
from app.db.migrate import upgrade
from app.db.tables import Product, ProductEmbedding
from app.jobs.context import JobContext
from app.jobs.runner import run_job
from app.pipeline.encoder import Encoder
from tests.conftest import make_settings


class _RecordingEncoder(Encoder):
    """Counts encode calls and signals each one, so a test can wait for the next chunk's."""

    def __init__(self, base: Encoder, version: str) -> None:
        super().__init__(base.model, version, batch_size=base.batch_size)
        self.calls = 0
        self.called = threading.Condition()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = super().encode(texts)
        with self.called:
            self.calls += 1
            self.called.notify_all()
        return out

    def wait_for(self, calls: int, timeout: float) -> bool:
        with self.called:
            return self.called.wait_for(lambda: self.calls >= calls, timeout)


def _feed(folder: Path, n: int) -> Path:
    path = folder / "feed.jsonl"
    rows = [{"external_id": f"p-{i:03d}", "title": f"acme widget model {i}", "brand": "acme"} for i in range(n)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def _context(folder: Path, provider) -> JobContext:  # noqa: ANN001 - any zero-argument encoder source
    url = f"sqlite:///{folder / 'overlap.db'}"
    upgrade(url)
    settings = make_settings(folder / "var", url, ingest_chunk_rows=4)
    return JobContext(settings, make_session_factory(make_engine(url)), provider)


def test_the_next_chunk_is_embedded_while_the_current_one_is_committed(tmp_path: Path, tiny_encoder: Encoder) -> None:
    encoder = _RecordingEncoder(tiny_encoder, "tiny-test")
    ctx = _context(tmp_path, lambda: encoder)
    overlapped: list[bool] = []

    def after_commit() -> None:
        # A sequential job would embed chunk n + 1 only after this hook returns.
        committed = len(overlapped) + 1
        overlapped.append(committed >= 3 or encoder.wait_for(committed + 1, timeout=10))

    ctx.after_commit.append(after_commit)
    job, _ = jobs.create_job(ctx.factory, "ingest", {"path": str(_feed(tmp_path, 12)), "format": "jsonl"})
    assert run_job(ctx, job.id, "test") == "completed"
    assert overlapped == [True, True, True]
    final = jobs.get_job(ctx.factory, job.id)
    assert final is not None and final.rows_ok == 12 and final.checkpoint == 12


def test_a_chunk_keeps_the_encoder_it_was_embedded_with(tmp_path: Path, tiny_encoder: Encoder) -> None:
    """The provider switches model between the first chunk's embedding and its write (as a
    promotion can): the first chunk's vectors stay under the first model's id."""
    first, second = _RecordingEncoder(tiny_encoder, "model-a"), _RecordingEncoder(tiny_encoder, "model-b")
    handed: list[str] = []

    def provider() -> Encoder:
        handed.append("a" if not handed else "b")
        return first if handed[-1] == "a" else second

    ctx = _context(tmp_path, provider)
    job, _ = jobs.create_job(ctx.factory, "ingest", {"path": str(_feed(tmp_path, 8)), "format": "jsonl"})
    assert run_job(ctx, job.id, "test") == "completed"
    with ctx.factory() as session:
        tags = dict(
            session.execute(
                select(Product.external_id, ProductEmbedding.model_id).join(
                    ProductEmbedding, ProductEmbedding.product_id == Product.id
                )
            ).all()
        )
    assert tags == {f"p-{i:03d}": "model-a" if i < 4 else "model-b" for i in range(8)}
