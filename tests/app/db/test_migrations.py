"""Alembic: head matches the models, and down/up round trips on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

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
