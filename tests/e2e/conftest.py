"""Fixtures for the web UI tests: a real uvicorn server (tiny encoder, SQLite in a tmp folder,
a few products) and the Debian `chromium` driven by Playwright, headless.

Playwright never downloads a browser here: the tests launch the system binary through
`executable_path` (CHROMIUM, else `chromium` on PATH, else /usr/bin/chromium) and skip, with
the reason, only when that binary or the playwright package is missing.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from app.db.migrate import upgrade
from app.main import create_app
from app.pipeline.encoder import Encoder
from tests.conftest import ADMIN_TOKEN, make_settings
from tests.helpers import product

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "test-output" / "screenshots"
PRODUCT_COUNT = 30


def chromium_path() -> str | None:
    for candidate in (os.environ.get("CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium"):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LiveServer:
    base_url: str
    app: FastAPI
    admin_token: str
    http: httpx.Client

    @property
    def services(self) -> Any:
        return self.app.state.services


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory, tiny_encoder: Encoder) -> Iterator[LiveServer]:
    """uvicorn in a thread on a free port; the catalogue holds products p-00001..p-00030."""
    folder = tmp_path_factory.mktemp("ui-e2e")
    url = f"sqlite:///{folder / 'ui.db'}"
    upgrade(url)
    app = create_app(make_settings(folder / "var", url), encoder=tiny_encoder, background_load=False)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="ui-e2e-server", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    http = httpx.Client(base_url=base, timeout=30)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if http.get("/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert thread.is_alive(), "the server thread died during start-up"
            assert time.monotonic() < deadline, "the server did not become ready in 60 s"
            time.sleep(0.1)
        for n in range(1, PRODUCT_COUNT + 1):
            body = product(n)
            res = http.put(f"/v1/products/{body.pop('external_id')}", json=body)
            assert res.status_code == 201, res.text
        yield LiveServer(base, app, ADMIN_TOKEN, http)
    finally:
        http.close()
        server.should_exit = True
        thread.join(30)
        assert app.state.unhandled_errors == 0, "a request reached the catch-all 500 handler"


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    executable = chromium_path()
    if executable is None:
        pytest.skip("no chromium binary (apt-get install chromium, or set CHROMIUM=/path/to/chromium)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=executable,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Any, live_server: LiveServer) -> Iterator[Any]:
    """A fresh browser context per test; uncaught script errors and CSP violations fail the test."""
    context = browser.new_context(base_url=live_server.base_url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"uncaught: {exc}"))
    page.on(
        "console",
        lambda msg: (
            problems.append(f"console: {msg.text}")
            if msg.type == "error" and "Content Security Policy" in msg.text
            else None
        ),
    )
    try:
        yield page
    finally:
        context.close()
    assert not problems, problems


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


def screenshot(page: Any, folder: Path, name: str) -> Path:
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    logger.info("screenshot %s", path)
    return path
