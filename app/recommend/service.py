"""Recommend related catalogue products for a query offer (text) or an existing product.

The model is either a trained recommender folder (``RECOMMEND_MODEL_DIR``: PRIME prototypes for
the products it saw in training, title embeddings for the rest) or, without one, the serving
bi-encoder's title embeddings (zero-shot). Before each request the label index is checked
against the catalogue's change-log version and the model id, and rebuilt when either moved
(only new or edited products are encoded). The top-1 product is ``automated`` when its
automation score reaches the threshold the model chose on validation for the target precision.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from app.core.config import Settings
from app.db import products as product_repo
from app.pipeline.encoder import Encoder, tagged_model_id
from app.recommend.images import ImageRejected, ImageSource, QueryImages
from app.recommend.label_index import LabelIndex, LabelRow, LabelState

logger = logging.getLogger(__name__)

TARGETS = (0.95, 0.98)


class UnknownProduct(LookupError):
    """A query names a product id that is not in the catalogue."""


class RecommenderUnavailable(RuntimeError):
    """The configured recommender folder could not be loaded."""


@dataclass(frozen=True)
class Query:
    text: str | None
    product_id: str | None
    k: int
    images: tuple[ImageSource, ...] = ()


@dataclass(frozen=True)
class Item:
    row: LabelRow
    score: float
    prototype: bool


@dataclass(frozen=True)
class Result:
    items: list[Item]
    automated: bool
    automation_score: float | None
    threshold: float | None
    model: str
    catalogue_version: int
    timings_ms: dict[str, float]
    images_used: int = 0


class _ZeroShot:
    """The serving encoder as a recommender: every product is its title embedding."""

    automation = "cosine"
    uses_images = False

    def __init__(self, encoder: Encoder) -> None:
        self.encoder = encoder
        self.model_id = f"text:{encoder.model_id}"
        self.dim = encoder.dim
        self.thresholds: dict[str, Any] = {}

    def encode_queries(self, texts: Sequence[str], image_feats: Any = None, image_mask: Any = None) -> np.ndarray:
        return self.encoder.encode(list(texts))

    def label_vectors(self, keys: Sequence[str], texts: Sequence[str]) -> np.ndarray:
        return self.encoder.encode(list(texts))

    def is_seen(self, key: str) -> bool:
        return False

    def automation_scores(self, queries: np.ndarray, labels: np.ndarray, top_scores: Any = None) -> np.ndarray:
        return np.einsum("ij,ij->i", queries, labels)


class _Trained:
    """A recommender folder; calls are serialised like the serving encoder's."""

    def __init__(self, folder: Path, version: str = "", precision: str = "fp32") -> None:
        from models.artefacts import read_manifest
        from models.recommender import RecommenderModel
        from models.serving_precision import resolve_serving_precision, serve_bi_encoder

        manifest = read_manifest(folder)
        self.model = RecommenderModel.load(folder)
        # The recommender runs on the CPU (docs/architecture.md), so the precision resolves there.
        self.precision = resolve_serving_precision(precision, "cpu")
        serve_bi_encoder(self.model.encoder, self.precision, in_place=True)
        # The manifest's mtime is part of the id: a folder retrained within the same second still
        # counts as a new model, so the label index is rebuilt. The precision tag keeps label
        # vectors of one precision from being reused by the other.
        base = f"recommender:{folder.name}:{manifest.created_at}:{version}"
        self.model_id = tagged_model_id(base, self.precision)
        self.dim = self.model.dim
        self.automation = self.model.automation
        self.thresholds = dict(manifest.metrics.get("thresholds") or {})
        self.uses_images = self.model.uses_images
        self._lock = threading.Lock()

    def encode_queries(self, texts: Sequence[str], image_feats: Any = None, image_mask: Any = None) -> np.ndarray:
        with self._lock:
            return self.model.encode_queries(list(texts), image_feats, image_mask)

    def label_vectors(self, keys: Sequence[str], texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            return self.model.label_vectors(list(keys), list(texts))

    def is_seen(self, key: str) -> bool:
        return self.model.is_seen(key)

    def automation_scores(self, queries: np.ndarray, labels: np.ndarray, top_scores: Any = None) -> np.ndarray:
        with self._lock:
            return self.model.automation_scores(queries, labels, top_scores)


class RecommendService:
    """Label index + model; ``recommend`` answers a batch of queries."""

    def __init__(
        self, settings: Settings, factory: sessionmaker[Session], serving_encoder: Callable[[], Encoder]
    ) -> None:
        self.settings = settings
        self.factory = factory
        self.serving_encoder = serving_encoder
        self.index = LabelIndex()
        self._trained: _Trained | None = None
        self._trained_key: tuple[str, float] | None = None
        self._load_lock = threading.Lock()
        self.images = QueryImages(settings)

    # ------------------------------------------------------------------ model
    def model(self) -> _ZeroShot | _Trained:
        folder = self.settings.recommend_model_dir
        if folder is None:
            return _ZeroShot(self.serving_encoder())
        path = Path(folder)
        manifest = path / "manifest.json"
        try:
            key = (str(path.resolve()), manifest.stat().st_mtime)
        except OSError as exc:
            raise RecommenderUnavailable(f"no recommender at {path}: {exc}") from exc
        if self._trained is None or self._trained_key != key:
            with self._load_lock:  # a retrained folder (new manifest) is picked up on the next request
                if self._trained is None or self._trained_key != key:
                    try:
                        self._trained = _Trained(path, f"{key[1]:.6f}", self.settings.precision)
                    except (ValueError, OSError, KeyError) as exc:
                        raise RecommenderUnavailable(f"cannot load the recommender at {path}: {exc}") from exc
                    self._trained_key = key
                    logger.info("recommender loaded from %s (%s)", path, self._trained.model_id)
        assert self._trained is not None
        return self._trained

    def threshold(self, model: _ZeroShot | _Trained) -> float | None:
        if self.settings.recommend_automation_threshold is not None:
            return float(self.settings.recommend_automation_threshold)
        entry = model.thresholds.get(f"{self.settings.recommend_target_precision:g}") or {}
        value = entry.get("threshold")
        return None if value is None else float(value)

    # ------------------------------------------------------------------ catalogue
    def _catalogue_version(self) -> int:
        with self.factory() as session:
            return product_repo.max_change_seq(session)

    def _rows(self) -> list[LabelRow]:
        with self.factory() as session:
            return [LabelRow(*row) for row in product_repo.catalogue_rows(session)]

    def state(self, model: _ZeroShot | _Trained) -> LabelState:
        return self.index.refresh(
            model.model_id, self._catalogue_version(), self._rows, model.label_vectors, model.is_seen, model.dim
        )

    # ------------------------------------------------------------------ queries
    def recommend(self, queries: Sequence[Query]) -> list[Result]:
        t0 = time.perf_counter()
        model = self.model()
        state = self.state(model)
        t_index = time.perf_counter()
        texts: list[str] = []
        selves: list[int | None] = []
        missing = []
        for q in queries:
            if q.product_id is not None:
                pos = state.by_external_id.get(q.product_id)
                if pos is None:
                    missing.append(q.product_id)
                    continue
                texts.append(state.rows[pos].title)
                selves.append(pos)
            else:
                texts.append(str(q.text))
                selves.append(None)
        if missing:
            raise UnknownProduct(f"unknown product_id: {', '.join(sorted(set(missing)))}")
        feats = mask = None
        with_images = [list(q.images) for q in queries]
        if any(with_images):
            if not model.uses_images:
                raise ImageRejected(
                    "the active recommender has no image input (train one with image fusion); send text or product_id"
                )
            feats, mask = self.images.bank(with_images)
        vectors = model.encode_queries(texts, feats, mask).astype(np.float32)
        t_encode = time.perf_counter()
        depth = min(len(state), max((q.k for q in queries), default=1) + 1)
        if depth > 0:
            scores, ids = state.index.search(np.ascontiguousarray(vectors), depth)
        else:
            scores = ids = np.zeros((len(queries), 0))
        threshold = self.threshold(model)
        results: list[Result] = []
        t_search = time.perf_counter()
        for i, q in enumerate(queries):
            picked = [(int(j), float(s)) for j, s in zip(ids[i], scores[i]) if j >= 0 and j != selves[i]][: q.k]
            auto_score: float | None = None
            automated = False
            if picked:
                top = picked[0][0]
                top_scores = np.array([[s for _, s in picked[:2]]], dtype=np.float64)
                auto_score = float(
                    model.automation_scores(vectors[i : i + 1], state.vectors[top : top + 1], top_scores)[0]
                )
                automated = threshold is not None and auto_score >= threshold
            items = [Item(state.rows[j], s, bool(state.seen[j])) for j, s in picked]
            results.append(
                Result(
                    items=items,
                    automated=automated,
                    automation_score=auto_score,
                    threshold=threshold,
                    model=model.model_id,
                    catalogue_version=state.catalogue_version,
                    timings_ms={},
                    images_used=0 if mask is None else int(mask[i].sum()),
                )
            )
        t_end = time.perf_counter()
        timings = {
            "index_refresh": round((t_index - t0) * 1000, 3),
            "encode": round((t_encode - t_index) * 1000, 3),
            "search": round((t_search - t_encode) * 1000, 3),
            "total": round((t_end - t0) * 1000, 3),
        }
        for r in results:
            r.timings_ms.update(timings)
        return results
