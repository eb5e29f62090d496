"""Alembic: head matches the models, and down/up round trips on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from app.db.base import Base
from app.db.migrate import downgrade, upgrade

TABLES = {"products", "index_changes", "jobs", "job_row_errors", "labeled_pairs", "model_versions"}


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
