"""The command line as a user runs it: migrate, ingest with a progress bar, index check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import product

REPO = Path(__file__).resolve().parents[2]


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_migrate_ingest_and_index_check(tmp_path, tiny_encoder_dir):
    env = {**os.environ, "DATA_DIR": str(tmp_path / "var"), "ENCODER": str(tiny_encoder_dir)}
    for key in ("DATABASE_URL", "REDIS_URL"):
        env.pop(key, None)
    assert _run(["migrate"], env).returncode == 0
    feed = tmp_path / "feed.jsonl"
    lines = [json.dumps(product(n)) for n in range(1, 41)] + ['{"external_id": "bad", "title": ""}']
    feed.write_text("\n".join(lines) + "\n")

    first = _run(["ingest", str(feed)], env)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["state"] == "completed_with_errors"
    assert summary["rows_ok"] == 40 and summary["rows_failed"] == 1
    assert summary["errors"][0]["row"] == 41 and summary["errors"][0]["field"] == "title"
    assert "ingest feed.jsonl" in first.stderr  # the progress bar

    again = json.loads(_run(["ingest", str(feed)], env).stdout)
    assert again["rows_ok"] == 0 and again["rows_unchanged"] == 40

    check = _run(["index", "check"], env)
    assert check.returncode == 0, check.stderr
    report = json.loads(check.stdout)
    assert report["consistent"] is True and report["stats"]["live"] == 40

    rebuilt = json.loads(_run(["index", "rebuild", "--kind", "hnsw"], env).stdout)
    assert rebuilt["stats"]["live"] == 40 and rebuilt["stats"]["kind"] == "hnsw"


def test_ingest_refuses_unreadable_file(tmp_path, tiny_encoder_dir):
    env = {**os.environ, "DATA_DIR": str(tmp_path / "var"), "ENCODER": str(tiny_encoder_dir)}
    env.pop("DATABASE_URL", None)
    _run(["migrate"], env)
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"id,name\n1,x\n")
    res = _run(["ingest", str(bad)], env)
    assert res.returncode == 2 and "external_id" in res.stderr


def test_worker_needs_redis(tmp_path):
    env = {**os.environ, "DATA_DIR": str(tmp_path / "var")}
    env.pop("REDIS_URL", None)
    res = _run(["worker"], env)
    assert res.returncode == 2 and "REDIS_URL" in res.stderr
