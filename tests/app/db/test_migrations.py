"""Alembic: head matches the models, and down/up round trips on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from app.db.base import Base
from app.db.migrate import downgrade, upgrade

TABLES = {"products", "index_changes", "jobs", "job_row_errors", "labeled_pairs", "model_versions", "calibrations"}


def test_head_matches_models(db_url):
    engine = create_engine(db_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == [], diff


def test_downgrade_and_upgrade_round_trip(db_url):
    engine = create_engine(db_url)
    assert TABLES <= set(inspect(engine).get_table_names())
    downgrade(db_url, "base")
    assert not TABLES & set(inspect(engine).get_table_names())
    upgrade(db_url)
    assert TABLES <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_calibrations_migration_down_and_up(db_url):
    """0005 alone: down to 0004 drops only the calibrations table, up brings it back usable."""
    from app.db import calibrations
    from app.db.base import make_session_factory

    engine = create_engine(db_url)
    downgrade(db_url, "0004")
    tables = set(inspect(engine).get_table_names())
    assert "calibrations" not in tables and {"review_items", "labeled_pairs"} <= tables
    upgrade(db_url)
    engine.dispose()  # a pooled SQLite connection may hold the schema as it was before
    assert "ix_calibrations_scorer_key_status" in {i["name"] for i in inspect(engine).get_indexes("calibrations")}
    factory = make_session_factory(engine)
    values = {
        "scorer_key": "matcher:v1",
        "scorer": "v1",
        "method": "temperature",
        "calibrator": {"method": "temperature", "temperature": 1.0, "bias": 0.0},
        "target_precision": 0.95,
        "target_reached": True,
        "review_probability": 0.2,
        "match_threshold": 0.7,
        "review_threshold": 0.4,
        "own_match_threshold": 0.9,
        "own_review_threshold": 0.2,
        "n_labels": 30,
        "n_positive": 12,
        "n_negative": 18,
        "n_accepted": 11,
        "precision": 1.0,
        "labels_through": 30,
    }
    first = calibrations.store(factory, values)
    second = calibrations.store(factory, {**values, "match_threshold": 0.75})
    active = calibrations.active(factory, "matcher:v1")
    assert active is not None and active.id == second.id != first.id and active.match_threshold == 0.75
    assert calibrations.retire(factory, "matcher:v1") == 1
    assert calibrations.active(factory, "matcher:v1") is None
    assert calibrations.labels_through(factory, "matcher:v1") == 30
    engine.dispose()


def test_model_numbers_migration_fills_the_column_from_stored_attributes(db_url):
    """0006 on a catalogue stored before it: each product's model numbers come from its attributes."""
    engine = create_engine(db_url)
    downgrade(db_url, "0005")
    engine.dispose()
    assert "model_numbers" not in {c["name"] for c in inspect(engine).get_columns("products")}
    insert = text(
        "INSERT INTO products (external_id, title, image_urls, attributes, content_hash, text_hash, created_at, "
        "updated_at) VALUES (:ext, :title, '[]', :attributes, 'c', 't', :now, :now)"
    )
    rows = [
        {"ext": "a", "title": "Sony headphones", "attributes": json.dumps({"MPN": "WH-1000XM5", "Colour": "black"})},
        {"ext": "b", "title": "A cable", "attributes": json.dumps({"Length": "2 m"})},
        {"ext": "c", "title": "A lamp", "attributes": "{}"},
    ]
    now = datetime.now(timezone.utc)
    with engine.begin() as conn:
        conn.execute(insert, [{**r, "now": now} for r in rows])
    upgrade(db_url)
    engine.dispose()
    with engine.connect() as conn:
        got = dict(conn.execute(text("SELECT external_id, model_numbers FROM products")).all())
    assert got == {"a": "WH-1000XM5", "b": None, "c": None}
    downgrade(db_url, "0005")  # and back down: the column goes, the products stay
    engine.dispose()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM products")).scalar_one() == 3
    upgrade(db_url)
    engine.dispose()
