"""FAISS index of label vectors (one per catalogue product), rebuilt when the catalogue or model changes.

A product whose external id is a label the recommender saw in training is indexed by its
prototype vector; every other product by the embedding of its title (METHODS §4.7). Vectors
are cached per (external id, title hash) so a refresh after a catalogue change encodes only
new or edited products; the FAISS index itself (exact inner product) is rebuilt from the
cached vectors and published with one reference assignment, so searches never see a
half-built index.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import faiss
import numpy as np

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabelRow:
    product_id: int
    external_id: str
    title: str
    brand: str | None = None
    category: str | None = None


@dataclass(frozen=True)
class LabelState:
    """One immutable snapshot: FAISS index + the rows its positions refer to."""

    model_id: str
    catalogue_version: int
    index: faiss.Index
    rows: list[LabelRow]
    seen: np.ndarray
    vectors: np.ndarray
    by_external_id: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.rows)


def _text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class LabelIndex:
    """Label vectors of the catalogue in an exact inner-product FAISS index."""

    def __init__(self) -> None:
        self._state: LabelState | None = None
        self._cache: dict[tuple[str, str, str], np.ndarray] = {}
        self._lock = threading.Lock()

    @property
    def state(self) -> LabelState | None:
        return self._state

    def refresh(
        self,
        model_id: str,
        catalogue_version: int,
        load_rows: Callable[[], list[LabelRow]],
        label_vectors: Callable[[list[str], list[str]], np.ndarray],
        is_seen: Callable[[str], bool],
        dim: int,
    ) -> LabelState:
        """Rebuild if the model or the catalogue version differs from the current state."""
        current = self._state
        if current is not None and current.model_id == model_id and current.catalogue_version == catalogue_version:
            return current
        with self._lock:  # one rebuild at a time; others wait and then reuse its result
            current = self._state
            if current is not None and current.model_id == model_id and current.catalogue_version == catalogue_version:
                return current
            rows = load_rows()
            keys = [(model_id, r.external_id, _text_hash(r.title)) for r in rows]
            todo = [i for i, k in enumerate(keys) if k not in self._cache]
            if todo:
                vecs = label_vectors([rows[i].external_id for i in todo], [rows[i].title for i in todo])
                for i, v in zip(todo, vecs):
                    self._cache[keys[i]] = np.asarray(v, dtype=np.float32)
            # Drop cache entries of other models and of products no longer in the catalogue.
            live = set(keys)
            self._cache = {k: v for k, v in self._cache.items() if k in live}
            vectors = (
                np.stack([self._cache[k] for k in keys]).astype(np.float32)
                if keys
                else np.zeros((0, dim), dtype=np.float32)
            )
            index = faiss.IndexFlatIP(dim)
            if len(vectors):
                index.add(np.ascontiguousarray(vectors))
            state = LabelState(
                model_id=model_id,
                catalogue_version=catalogue_version,
                index=index,
                rows=rows,
                seen=np.array([is_seen(r.external_id) for r in rows], dtype=bool),
                vectors=vectors,
                by_external_id={r.external_id: i for i, r in enumerate(rows)},
            )
            self._state = state
            logger.info(
                "label index: %d products (%d by prototype), %d encoded, model %s, catalogue v%d",
                len(rows),
                int(state.seen.sum()),
                len(todo),
                model_id,
                catalogue_version,
            )
            return state
