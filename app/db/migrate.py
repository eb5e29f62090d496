"""Apply the Alembic migrations programmatically (used by `productmatch migrate` and tests)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

REPO_ROOT = Path(__file__).resolve().parents[2]


def alembic_config(database_url: str) -> Config:
    cfg = Config(str(REPO_ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(REPO_ROOT / "migrations"))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


# Any fixed 64-bit key: the PostgreSQL advisory lock that serialises concurrent upgrades.
MIGRATION_LOCK_KEY = 0x70726F645F6D6967  # "prod_mig"


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the schema to ``revision``; a no-op when it is there already.

    Every command that needs the schema runs this first (``serve``, ``worker``, ``ingest``, ...),
    so several processes may start it at once: on PostgreSQL the upgrade runs in one transaction
    holding an advisory lock, and a second process waits, then finds the schema at head. SQLite
    serialises writers by itself.
    """
    cfg = alembic_config(database_url)
    if not database_url.startswith("postgresql"):
        command.upgrade(cfg, revision)
        return
    from sqlalchemy import text

    from app.db.base import make_engine

    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, revision)
    finally:
        engine.dispose()


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)
