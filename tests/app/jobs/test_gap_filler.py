"""The follower's gap check scans the catalogue only when a gap can have opened since its last
clean scan: after a write (the change log moved) or with another encoder."""

from __future__ import annotations

from sqlalchemy import delete, func, select

from app.db.base import make_engine, make_session_factory
from app.db.tables import Product, ProductEmbedding
from app.jobs.reembed import GapFiller
from app.pipeline.encoder import Encoder
from app.pipeline.upsert import upsert_batch
from app.schemas.product import ProductRow
from tests.conftest import tiny_bi_encoder
from tests.helpers import product


def _rows(ns: range) -> list[ProductRow]:
    return [ProductRow(**product(n)) for n in ns]


def test_gap_filler_rescans_only_after_a_write_or_another_encoder(db_url: str, tiny_encoder: Encoder) -> None:
    factory = make_session_factory(make_engine(db_url))
    upsert_batch(factory, tiny_encoder, _rows(range(1, 6)))
    filler = GapFiller(factory)
    assert filler.fill(tiny_encoder) == 0  # a clean scan

    # A vector lost without a write (no change-log entry): the catalogue did not move, no scan.
    with factory() as s, s.begin():
        victim = s.scalar(select(Product.id).where(Product.external_id == "p-00002"))
        s.execute(delete(ProductEmbedding).where(ProductEmbedding.product_id == victim))
    assert filler.fill(tiny_encoder) == 0

    # Any write moves the change log: the next check scans and fills the gap it finds.
    upsert_batch(factory, tiny_encoder, _rows(range(6, 7)))
    assert filler.fill(tiny_encoder) == 1
    assert filler.fill(tiny_encoder) == 0  # its own re-embedding was a write: one more scan, clean
    with factory() as s:
        assert s.scalar(select(func.count()).where(ProductEmbedding.product_id == victim)) == 1

    # Another encoder has no vectors yet: it scans whatever the log says.
    other = Encoder(tiny_bi_encoder(), "tiny-other", batch_size=64)
    assert filler.fill(other, batch=512) == 6
