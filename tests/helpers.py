"""Small helpers shared by tests."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from types import ModuleType
from typing import Any

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_script(name: str) -> ModuleType:
    """Import ``scripts/<name>.py`` (not a package) as a module."""
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def wait_job(client: Any, job_id: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/v1/jobs/{job_id}").json()
        if body["state"] in ("completed", "completed_with_errors", "failed"):
            return body
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish in {timeout}s: {body}")


def product(n: int, **overrides: Any) -> dict[str, Any]:
    data = {
        "external_id": f"p-{n:05d}",
        "title": f"Acme Widget Model {n} {['red', 'blue', 'green'][n % 3]} edition",
        "brand": ["Acme", "Globex", "Initech"][n % 3],
        "category": ["tools", "toys"][n % 2],
        "price": 10.0 + n,
        "currency": "EUR",
    }
    data.update(overrides)
    return data
