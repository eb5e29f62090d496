"""mypy ([tool.mypy] in pyproject.toml) finds no error in models/ and app/.

Every ``# type: ignore`` left there names its error code and gives its reason on the same line;
``warn_unused_ignores`` fails the check when one is no longer needed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_mypy_passes_on_models_and_app() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-2000:]


def test_every_type_ignore_has_a_code_and_a_reason() -> None:
    bare = []
    for folder in ("models", "app"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                _, sep, rest = line.partition("# type: ignore")
                if sep and not (rest.startswith("[") and "]  # " in rest):
                    bare.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not bare, "\n".join(bare)
