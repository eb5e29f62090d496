"""The index follows the database through the change log, and start-up repairs damage."""

from __future__ import annotations

import numpy as np
from sqlalchemy import func, select

from app.db import products as repo
from app.db.base import make_engine, make_session_factory
from app.db.tables import IndexChange, Product
from app.pipeline.upsert import upsert_batch
from app.schemas.product import ProductRow
from app.search.params import IndexParams
from app.search.sync import IndexService
from tests.helpers import product


def _rows(ns):
    return [ProductRow(**product(n)) for n in ns]


def _service(url, encoder, tmp_path, kind="flat"):
    factory = make_session_factory(make_engine(url))
    return factory, IndexService(factory, encoder.model_id, encoder.dim, IndexParams(kind=kind), tmp_path / "idx")


def _db_ids(factory):
    with factory() as s:
        return sorted(s.scalars(select(Product.id)))


def test_replay_follows_writes_from_another_process(db_url, tiny_encoder, tmp_path):
    factory, svc = _service(db_url, tiny_encoder, tmp_path)
    svc.open()
    # Another "process" writes through its own engine.
    other = make_session_factory(make_engine(db_url))
    upsert_batch(other, tiny_encoder, _rows(range(1, 21)))
    assert svc.catch_up() > 0
    assert sorted(svc.index.ids().tolist()) == _db_ids(factory)
    with other() as s, s.begin():
        repo.delete_product(s, "p-00003")
    svc.catch_up()
    assert sorted(svc.index.ids().tolist()) == _db_ids(factory)
    assert svc.verify().consistent


def test_snapshot_then_restart_replays_only_the_tail(db_url, tiny_encoder, tmp_path):
    factory, svc = _service(db_url, tiny_encoder, tmp_path)
    svc.open()
    upsert_batch(factory, tiny_encoder, _rows(range(1, 11)))
    svc.catch_up()
    svc.snapshot()
    upsert_batch(factory, tiny_encoder, _rows(range(11, 16)))
    _, restarted = _service(db_url, tiny_encoder, tmp_path)
    report = restarted.open()
    assert report.consistent
    assert sorted(restarted.index.ids().tolist()) == _db_ids(factory)


def test_startup_repairs_a_damaged_index(db_url, tiny_encoder, tmp_path):
    factory, svc = _service(db_url, tiny_encoder, tmp_path)
    svc.open()
    upsert_batch(factory, tiny_encoder, _rows(range(1, 11)))
    svc.catch_up()
    ids = svc.index.ids()
    # Damage: an entry without a row, and a row without an entry.
    svc.index.upsert(np.array([999_999]), np.ones((1, tiny_encoder.dim), np.float32) / 6, [None], [None])
    svc.index.remove(ids[:1])
    svc.snapshot()
    _, restarted = _service(db_url, tiny_encoder, tmp_path)
    report = restarted.open()
    assert report.repaired
    assert report.orphans == [999_999] and report.missing == [int(ids[0])]
    assert restarted.verify().consistent


def test_corrupt_snapshot_is_rebuilt(db_url, tiny_encoder, tmp_path):
    factory, svc = _service(db_url, tiny_encoder, tmp_path)
    svc.open()
    upsert_batch(factory, tiny_encoder, _rows(range(1, 6)))
    svc.catch_up()
    path = svc.snapshot()
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    _, restarted = _service(db_url, tiny_encoder, tmp_path)
    assert restarted.open().consistent
    assert len(restarted.index) == 5


def test_restart_gives_identical_results(db_url, tiny_encoder, tmp_path):
    """R3: the same frozen queries give identical ranked ids after a restart and a rebuild."""
    factory, svc = _service(db_url, tiny_encoder, tmp_path)
    svc.open()
    upsert_batch(factory, tiny_encoder, _rows(range(1, 60)))
    svc.catch_up()
    queries = tiny_encoder.encode([product(n)["title"] + " offer" for n in range(1, 60, 5)])
    before = svc.index.search(queries, 10).ids
    svc.snapshot()
    _, restarted = _service(db_url, tiny_encoder, tmp_path)
    restarted.open()
    assert restarted.index.search(queries, 10).ids == before
    _, rebuilt = _service(db_url, tiny_encoder, tmp_path / "fresh")
    rebuilt.open()
    assert rebuilt.index.search(queries, 10).ids == before


def test_change_log_records_every_real_write(db_url, tiny_encoder, tmp_path):
    factory, _ = _service(db_url, tiny_encoder, tmp_path)
    upsert_batch(factory, tiny_encoder, _rows(range(1, 4)))
    upsert_batch(factory, tiny_encoder, _rows(range(1, 4)))  # unchanged: nothing logged
    with factory() as s:
        assert s.scalar(select(func.count(IndexChange.seq))) == 3
