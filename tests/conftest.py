"""Shared fixtures: tiny random-init encoder, SQLite/PostgreSQL databases, Redis, the app."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from sqlalchemy import create_engine, text

from app.core.config import Settings
from app.db.migrate import upgrade
from app.pipeline.encoder import Encoder
from models.bi_encoder import BiEncoder

# The suite serves in fp32 unless run with PRECISION set: PRECISION=auto would pick bf16 on a CPU
# with AMX, so model ids and vectors (compared with in-process fp32 references, also across
# worker and server subprocesses, which inherit this) would depend on the machine. The
# precision setting itself is tested in tests/app/core/test_precision_settings.py,
# tests/models/test_serving_precision.py and the test_*precision.py files beside them.
os.environ.setdefault("PRECISION", "fp32")
# No shipped default matcher unless a test names one: once artefacts/default-matcher/ holds the
# released weights, every app the suite starts (and every server subprocess) would otherwise
# register and serve a 45 MB model. tests/app/registry/test_default_matcher_startup.py serves a
# tiny one through DEFAULT_MATCHER.
os.environ.setdefault("DEFAULT_MATCHER", "")

TINY_CONFIG = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
ADMIN_TOKEN = "test-admin-token-0123456789"


def tiny_bi_encoder() -> BiEncoder:
    torch.manual_seed(0)
    return BiEncoder.from_config(TINY_CONFIG, max_length=32)


@pytest.fixture(scope="session")
def tiny_encoder() -> Encoder:
    """One tiny randomly initialised encoder per session; never trained in tests."""
    return Encoder(tiny_bi_encoder(), "tiny-test", batch_size=64)


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same tiny encoder saved as a folder, for subprocesses (workers, servers)."""
    folder = tmp_path_factory.mktemp("tiny-encoder")
    tiny_bi_encoder().save(folder)
    return folder


def _postgres_url() -> str | None:
    return os.environ.get("TEST_POSTGRES_URL")


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database: SQLite file, or a private schema on the real PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'test.db'}"
        upgrade(url)
        yield url
        return
    base = _postgres_url()
    if not base:
        pytest.skip("TEST_POSTGRES_URL is not set (CI always sets it)")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    url = f"{base}{sep}options=-csearch_path%3D{schema}"
    upgrade(url)
    try:
        yield url
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'test.db'}"
    upgrade(url)
    return url


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("TEST_REDIS_URL")
    if not url:
        pytest.skip("TEST_REDIS_URL is not set (CI always sets it)")
    return url


def make_settings(data_dir: Path, database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "environment": "test",
        "data_dir": data_dir,
        "database_url": database_url,
        "load_demo_catalogue": False,
        "admin_token": ADMIN_TOKEN,
        "redis_url": None,
        "ingest_chunk_rows": 50,
        "index_sync_interval": 0.2,
        "job_lease_seconds": 3.0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return make_settings(tmp_path / "var", db_url)


@pytest.fixture
def client(settings: Settings, tiny_encoder: Encoder):
    from fastapi.testclient import TestClient

    from app.main import create_app

    app = create_app(settings, encoder=tiny_encoder, background_load=False)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client
    assert app.state.unhandled_errors == 0, "a request reached the catch-all 500 handler"


@pytest.fixture
def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}
