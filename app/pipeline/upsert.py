"""Catalogue writes: hash, embed what changed, store rows and the index change log together."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from app.db import products as repo
from app.db.base import serialise_writers, utcnow
from app.pipeline.encoder import Encoder
from app.schemas.product import ProductRow
from models.pair_signals import model_numbers
from models.product_text import content_hash, embed_text, norm_key, text_hash

logger = logging.getLogger(__name__)


@dataclass
class WriteOutcome:
    external_id: str
    product_id: int
    created: bool
    changed: bool
    embedded: bool


@dataclass
class BatchStats:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    embedded: int = 0


def _fields(row: ProductRow) -> dict:
    data = row.model_dump(exclude={"external_id"})
    data["image_urls"] = list(data.get("image_urls") or [])
    data["attributes"] = dict(data.get("attributes") or {})
    return data


def upsert_batch(
    factory: sessionmaker[Session],
    encoder: Encoder,
    rows: Sequence[ProductRow],
    in_transaction: Callable[[Session, BatchStats], None] | None = None,
) -> tuple[list[WriteOutcome], BatchStats]:
    """Upsert products by external id; only rows whose embedded text changed are re-embedded.

    The embedding happens before the transaction opens, so the write lock is held only for
    the inserts. `in_transaction` runs inside the same transaction (ingestion uses it to
    commit its checkpoint atomically with the rows, which makes a replayed chunk a no-op).
    """
    # The last occurrence of an external id wins within one batch.
    latest: dict[str, ProductRow] = {}
    for row in rows:
        latest[row.external_id] = row
    ids = list(latest)
    with factory() as session:
        before = repo.existing_states(session, ids, encoder.model_id)

    prepared: dict[str, dict] = {}
    to_embed: list[str] = []
    for ext in ids:
        data = _fields(latest[ext])
        chash = content_hash(data)
        text = embed_text(data)
        thash = text_hash(text)
        state = before.get(ext)
        if state and state.content_hash == chash and state.has_vector:
            continue
        data.update(content_hash=chash, text_hash=thash, text=text)
        prepared[ext] = data
        if state is None or state.text_hash != thash or not state.has_vector:
            to_embed.append(ext)

    vectors = encoder.encode([prepared[e]["text"] for e in to_embed]) if to_embed else np.zeros((0, 0))
    vector_by_ext = {ext: vectors[i] for i, ext in enumerate(to_embed)}

    stats = BatchStats(unchanged=len(ids) - len(prepared), embedded=len(to_embed))
    outcomes: list[WriteOutcome] = []
    with factory() as session, session.begin():
        serialise_writers(session)
        # Re-read inside the lock: another writer may have inserted an id since.
        current = repo.existing_states(session, list(prepared), encoder.model_id)
        changed_ids: list[int] = []
        new_vectors: list[tuple[int, str, np.ndarray]] = []
        text_changed: set[int] = set()
        created_rows: list[dict] = []
        ordered: list[tuple[str, int | None]] = []  # (external id, id of an existing product)
        for ext, prepared_data in prepared.items():
            data = dict(prepared_data)
            data.pop("text")
            values = {
                **data,
                "brand_norm": norm_key(data.get("brand")),
                "category_norm": norm_key(data.get("category")),
                "model_numbers": model_numbers(data.get("attributes")),
                "updated_at": utcnow(),
            }
            state = current.get(ext)
            if state is None and ext not in vector_by_ext:
                # Deleted by another writer since we looked: it needs a vector again.
                vector_by_ext[ext] = encoder.encode([prepared[ext]["text"]])[0]
            if state is None:
                # One clock reading for both: a new product is never created after its update.
                created_rows.append({"external_id": ext, "created_at": values["updated_at"], **values})
                ordered.append((ext, None))
            else:
                repo.update_product(session, state.id, values)
                ordered.append((ext, state.id))
                if state.text_hash != data["text_hash"]:
                    text_changed.add(state.id)
        new_ids = repo.add_products(session, created_rows)
        stats.created += len(new_ids)
        stats.updated += len(ordered) - len(new_ids)
        for ext, existing_id in ordered:
            created = existing_id is None
            pid = new_ids[ext] if existing_id is None else existing_id
            if ext in vector_by_ext:
                new_vectors.append((pid, prepared[ext]["text_hash"], vector_by_ext[ext]))
            changed_ids.append(pid)
            outcomes.append(WriteOutcome(ext, pid, created, True, ext in vector_by_ext))
        repo.store_vectors(session, encoder.model_id, new_vectors, text_changed)
        repo.log_changes(session, changed_ids, "u")
        if in_transaction is not None:
            in_transaction(session, stats)
    for ext in ids:
        if ext not in prepared:
            outcomes.append(WriteOutcome(ext, before[ext].id, False, False, False))
    return outcomes, stats
