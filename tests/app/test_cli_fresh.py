"""Commands that need the schema on a fresh DATA_DIR / database: they migrate first, as `serve`
does, and every refusal is one line, never a traceback (issue 16)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.helpers import product

REPO = Path(__file__).resolve().parents[2]


def _env(data_dir: Path, encoder_dir: Path, database_url: str | None = None) -> dict[str, str]:
    env = {**os.environ, "DATA_DIR": str(data_dir), "ENCODER": str(encoder_dir), "LOG_LEVEL": "WARNING"}
    for key in ("DATABASE_URL", "REDIS_URL"):
        env.pop(key, None)
    if database_url:
        env["DATABASE_URL"] = database_url
        env["ADMIN_TOKEN"] = "cli-test-admin-token-0123456789"  # the default is refused outside SQLite
    return env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


def _feed(folder: Path, n: int = 5) -> Path:
    feed = folder / "cat.jsonl"
    feed.write_text("\n".join(json.dumps(product(i)) for i in range(1, n + 1)) + "\n")
    return feed


def test_ingest_on_a_fresh_data_dir_migrates_first(tmp_path, tiny_encoder_dir):
    data_dir = tmp_path / "never-served"
    assert not data_dir.exists()
    done = _run(["ingest", str(_feed(tmp_path))], _env(data_dir, tiny_encoder_dir))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    summary = json.loads(done.stdout)
    assert summary["state"] == "completed" and summary["rows_ok"] == 5


@pytest.mark.parametrize("args", [["models", "list"], ["index", "check"]])
def test_other_schema_commands_on_a_fresh_data_dir(tmp_path, tiny_encoder_dir, args):
    done = _run(args, _env(tmp_path / "fresh", tiny_encoder_dir))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    json.loads(done.stdout)


def test_a_file_with_a_stray_quote_is_refused_in_one_line(tmp_path, tiny_encoder_dir):
    lines = ["external_id,title"] + [f"p{i},Widget {i}" for i in range(1, 201)]
    lines[3] = 'p3,"Widget 3'
    bad = tmp_path / "cat.csv"
    bad.write_text("\n".join(lines) + "\n")
    done = _run(["ingest", str(bad)], _env(tmp_path / "var", tiny_encoder_dir))
    assert done.returncode == 2
    assert "data row 3, which starts on line 4" in done.stderr and "Traceback" not in done.stderr


def test_an_unreachable_database_is_one_line(tmp_path, tiny_encoder_dir):
    env = _env(tmp_path / "var", tiny_encoder_dir, "postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=2")
    done = _run(["models", "list"], env)
    assert done.returncode != 0
    assert "cannot open the database 127.0.0.1:9/none" in done.stderr and "Traceback" not in done.stderr


def test_invalid_settings_are_one_line(tmp_path, tiny_encoder_dir):
    env = {**_env(tmp_path / "var", tiny_encoder_dir), "INDEX_KIND": "no-such-index"}
    done = _run(["models", "list"], env)
    assert done.returncode != 0
    assert done.stderr.startswith("productmatch: invalid settings:") and "Traceback" not in done.stderr


@pytest.mark.postgres
def test_concurrent_starts_on_a_fresh_postgres_migrate_once(tmp_path, tiny_encoder_dir):
    base = os.environ.get("TEST_POSTGRES_URL")
    if not base:
        pytest.skip("TEST_POSTGRES_URL is not set (CI always sets it)")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
    try:
        env = _env(tmp_path / "var", tiny_encoder_dir, url)
        # Two processes meet an empty schema at once (an API and a worker starting together).
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "app.cli", *args],
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for args in (["migrate"], ["ingest", str(_feed(tmp_path))])
        ]
        results = [(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
        for rc, _, err in results:
            assert rc == 0, err
            assert "Traceback" not in err
        assert json.loads(results[1][1])["rows_ok"] == 5
        with admin.connect() as conn:
            heads = conn.execute(text(f'SELECT version_num FROM "{schema}".alembic_version')).scalars().all()
        assert len(heads) == 1
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
