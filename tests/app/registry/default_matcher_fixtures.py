"""A tiny default-matcher folder, trained by the real recipe (`productmatch train default`) on the
tiny generated benchmarks in about a second, and helpers to derive variants of it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from models.bi_encoder import BiEncoder
from models.match_head import HEAD_FILE
from tests.training.default_recipe_fixtures import TINY, tiny_config, write_all
from training.default_recipe.train import train_default


def train_tiny_default(out: Path, data_root: Path, margin: bool = True) -> Path:
    torch.manual_seed(0)
    encoder = BiEncoder.from_config(TINY)  # saved inside the folder: the head's own bi-encoder
    train_default(out, tiny_config(margin=margin), data_root=data_root, bi_encoder=encoder, progress=False)
    return out


@pytest.fixture(scope="module")
def default_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The recipe's folder with the margin feature, as `artefacts/default-matcher/` would hold it."""
    root = write_all(tmp_path_factory.mktemp("default-data"))
    return train_tiny_default(tmp_path_factory.mktemp("default") / "model", root)


def with_head(folder: Path, dest: Path, **changes: Any) -> Path:
    """A copy of ``folder`` whose head.json has ``changes`` (another release, or known cuts)."""
    shutil.copytree(folder, dest)
    head = json.loads((dest / HEAD_FILE).read_text())
    head.update(changes)
    (dest / HEAD_FILE).write_text(json.dumps(head))
    return dest


def known_cuts(folder: Path, dest: Path, match_at_95: float = 0.6, top1: bool = True) -> Path:
    """A copy whose head reached, on pairs, precision 0.9 at 0.3 and 0.95 at ``match_at_95``
    (recall 0.5), never 0.98; and on top-1 decisions 0.9 at 0.25 and 0.95 at 0.35 (coverage 0.7),
    never 0.98 (``top1=False``: a head from before ranked lists, pairwise cuts only)."""
    head = json.loads((folder / HEAD_FILE).read_text())
    valid = head.get("valid") or {}
    valid["cross_fitted"] = dict(valid.get("cross_fitted") or {})
    valid["cross_fitted"]["for_precision"] = {
        "0.9": {"threshold": 0.3, "recall": 0.8},
        "0.95": {"threshold": match_at_95, "recall": 0.5},
        "0.98": None,
    }
    valid.pop("top1", None)
    top1_cuts: dict[str, float | None] = {}
    if top1:
        valid["top1"] = {
            "for_precision": {
                "0.9": {"threshold": 0.25, "coverage": 0.8},
                "0.95": {"threshold": 0.35, "coverage": 0.7},
                "0.98": None,
            }
        }
        top1_cuts = {"0.9": 0.25, "0.95": 0.35, "0.98": None}
    return with_head(
        folder,
        dest,
        threshold=0.45,
        thresholds_for_precision={"0.9": 0.3, "0.95": match_at_95, "0.98": None},
        top1_threshold=0.4 if top1 else None,
        top1_thresholds_for_precision=top1_cuts,
        valid=valid,
    )
