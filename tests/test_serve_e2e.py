"""End to end as a new user: `productmatch serve` on the embedded default with the packaged
MiniLM loads the demo catalogue, and an offer matches a demo product."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_demo_catalogue_and_match(tmp_path):
    port = _free_port()
    env = {**os.environ, "DATA_DIR": str(tmp_path / "var"), "LOAD_DEMO_CATALOGUE": "true"}
    for key in ("DATABASE_URL", "REDIS_URL", "ENCODER"):
        env.pop(key, None)
    log = tmp_path / "serve.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        live_at = None
        while time.monotonic() < deadline:
            try:
                if live_at is None and httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    live_at = time.monotonic()
                body = httpx.get(f"{base}/v1/products", params={"limit": 500}, timeout=2).json()
                if len(body.get("items", [])) >= 70:
                    break
            except (httpx.HTTPError, ValueError):
                pass
            assert proc.poll() is None, log.read_text()
            time.sleep(0.5)
        assert live_at is not None
        assert httpx.get(f"{base}/readyz").status_code == 200
        res = httpx.post(
            f"{base}/v1/match",
            json={
                "offer": {"title": "sony wh1000xm5 wireless noise cancelling headphones, black"},
                "top_k": 5,
            },
        )
        assert res.status_code == 200, res.text
        body = res.json()
        top = body["candidates"][0]
        assert top["brand"] == "Sony" and "WH-1000XM5" in top["title"] and "Black" in top["title"]
        assert body["model_versions"]["encoder"] == "minilm-l6-v2-zero-shot"
        unrelated = httpx.post(f"{base}/v1/match", json={"offer": {"title": "organic banana bread recipe"}}).json()
        assert unrelated["decision"] == "no_match"
    finally:
        proc.terminate()
        proc.wait(30)
    assert (tmp_path / "var" / "productmatch.db").exists()
    assert list((tmp_path / "var" / "index").glob("*.pmindex")), "the index snapshot is written at shutdown"
