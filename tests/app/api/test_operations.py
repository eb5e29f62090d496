from __future__ import annotations

import pytest

from app.core.config import Settings


def test_healthz_and_readyz(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["database"] is True


def test_readyz_is_503_until_models_load(settings, tiny_encoder):
    from fastapi.testclient import TestClient

    from app.main import create_app

    app = create_app(settings, encoder=tiny_encoder, background_load=True)
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        services = app.state.services
        services.ready.wait(30)
        assert client.get("/readyz").status_code == 200
        services.ready.clear()
        assert client.get("/readyz").status_code == 503


def test_match_before_ready_is_503(settings, tiny_encoder):
    from fastapi.testclient import TestClient

    from app.main import create_app

    app = create_app(settings, encoder=tiny_encoder, background_load=True)
    with TestClient(app) as client:
        services = app.state.services
        services.ready.wait(30)
        runtime, services.runtime = services.runtime, None
        res = client.post("/v1/match", json={"offer": {"title": "x"}})
        assert res.status_code == 503 and "loading" in res.json()["detail"]
        services.runtime = runtime


def test_metrics_exposes_requests_jobs_and_index(client):
    client.get("/healthz")
    client.put("/v1/products/m1", json={"title": "Metric Thing"})
    text = client.get("/metrics").text
    assert 'productmatch_http_requests_total{method="GET",route="/healthz",status="200"}' in text
    assert 'route="/v1/products/{external_id}"' in text
    assert "productmatch_http_request_duration_seconds_bucket" in text
    assert "productmatch_index_vectors 1.0" in text


def test_admin_requires_token(client, admin_headers):
    assert client.get("/v1/admin/index").status_code == 401
    wrong = client.get("/v1/admin/index", headers={"Authorization": "Bearer wrong"})
    assert wrong.status_code == 403
    ok = client.get("/v1/admin/index", headers=admin_headers)
    assert ok.status_code == 200 and ok.json()["consistent"] is True


def test_admin_rebuild(client, admin_headers):
    client.put("/v1/products/r1", json={"title": "Rebuild me"})
    res = client.post("/v1/admin/index/rebuild", headers=admin_headers)
    assert res.status_code == 200 and res.json()["stats"]["live"] == 1


def test_refuses_default_token_outside_development(tmp_path):
    with pytest.raises(ValueError, match="ADMIN_TOKEN"):
        Settings(_env_file=None, environment="production", data_dir=tmp_path)
    with pytest.raises(ValueError, match="ADMIN_TOKEN"):
        Settings(_env_file=None, environment="production", data_dir=tmp_path, admin_token="short")
    ok = Settings(_env_file=None, environment="production", data_dir=tmp_path, admin_token="x" * 32)
    assert ok.environment == "production"


def test_postgres_url_uses_psycopg3(tmp_path):
    s = Settings(_env_file=None, data_dir=tmp_path, database_url="postgresql://u@h/db", admin_token="x" * 32)
    assert s.database_url.startswith("postgresql+psycopg://")


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"database_url": "postgresql://u@h/db"}, "PostgreSQL"),
        ({"redis_url": "redis://127.0.0.1:6379/0"}, "Redis"),
        ({"database_url": "postgresql://u@h/db", "redis_url": "redis://h:6379/0"}, "PostgreSQL and Redis"),
    ],
)
def test_default_admin_token_is_refused_with_postgres_or_redis(tmp_path, overrides, named):
    """`changethis` is for the embedded development setup only, in every environment."""
    for environment in ("development", "test"):
        with pytest.raises(ValueError, match="ADMIN_TOKEN is the default 'changethis'") as refused:
            Settings(_env_file=None, environment=environment, data_dir=tmp_path, **overrides)
        assert f"uses {named}:" in str(refused.value)
        ok = Settings(_env_file=None, environment=environment, data_dir=tmp_path, admin_token="y" * 20, **overrides)
        assert ok.admin_token == "y" * 20
    embedded = Settings(_env_file=None, data_dir=tmp_path)  # SQLite + in-process jobs: the dev default
    assert embedded.admin_token == "changethis" and embedded.is_sqlite and embedded.redis_url is None


def test_body_limit_chunked_and_exact(client, settings):
    limit = settings.max_body_bytes

    def chunks(total: int):
        sent = 0
        while sent < total:
            n = min(65536, total - sent)
            sent += n
            yield b" " * n

    # Chunked body (no Content-Length) that grows past the limit.
    res = client.put("/v1/products/c1", content=chunks(limit + 10), headers={"content-type": "application/json"})
    assert res.status_code == 413
    # A body exactly at the limit is accepted by the middleware (and judged by validation).
    body = b'{"title": "exact"}'
    padded = body + b" " * (limit - len(body))
    res = client.put("/v1/products/c1", content=padded, headers={"content-type": "application/json"})
    assert res.status_code == 201, res.text
