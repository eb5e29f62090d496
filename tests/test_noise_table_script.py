"""scripts/noise_table.py: per-seed means of bench_noise.py result files and the issue's target."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import load_script


def _write(path: Path, seed: int, f1: dict[str, float], **settings: object) -> Path:
    payload = {
        "settings": {"seed": seed, "epochs": 3, "flip_rates": [0.2], **settings},
        "runs": {name: {"test_f1": v} for name, v in f1.items()},
    }
    path.write_text(json.dumps(payload), encoding="utf-8")
    return path


def test_means_and_target(tmp_path: Path) -> None:
    mod = load_script("noise_table")
    runs = ["clean", "naive@0.2", "detect:x@0.2"]
    a = _write(tmp_path / "a.json", 1, {"clean": 0.64, "naive@0.2": 0.56, "detect:x@0.2": 0.61})
    b = _write(tmp_path / "b.json", 2, {"clean": 0.66, "naive@0.2": 0.54, "detect:x@0.2": 0.59}, flip_rates=[0.2, 0.4])
    out = mod.table(mod.load([a, b]), runs)
    assert "| clean | 64.00 | 66.00 | **65.00** |" in out
    # lost 65 - 55 = 10, recovered 60 - 55 = 5: exactly half meets the target.
    assert "share 0.50" in out and "target (share >= 0.5) met" in out
    c = _write(tmp_path / "c.json", 3, {"clean": 0.64, "naive@0.2": 0.56, "detect:x@0.2": 0.57})
    assert "not met" in mod.table(mod.load([a, c]), runs)
    missing = _write(tmp_path / "d.json", 4, {"clean": 0.6})
    assert "| naive@0.2 | 56.00 | – | – |" in mod.table(mod.load([a, missing]), runs)


def test_refuses_files_with_other_settings(tmp_path: Path) -> None:
    mod = load_script("noise_table")
    a = _write(tmp_path / "a.json", 1, {}, epochs=3)
    b = _write(tmp_path / "b.json", 2, {}, epochs=8)
    with pytest.raises(SystemExit, match="epochs"):
        mod.load([a, b])
