"""Product repository: reads, keyset pagination and change-logged writes."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session, defer

from app.db.base import serialise_writers
from app.db.tables import IndexChange, Product, ProductEmbedding


@dataclass(frozen=True)
class ExistingState:
    id: int
    content_hash: str
    text_hash: str
    has_vector: bool  # a vector from the given model for the current text


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"p:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """Raise ValueError on anything that is not a cursor this service issued."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        raw = base64.urlsafe_b64decode(padded.encode()).decode()
    except Exception as exc:  # noqa: BLE001 - any decoding failure is the same user error
        raise ValueError("cursor is not valid") from exc
    if not raw.startswith("p:") or not raw[2:].isdigit():
        raise ValueError("cursor is not valid")
    return int(raw[2:])


def existing_external_ids(session: Session, external_ids: Iterable[str], batch: int = 500) -> set[str]:
    """Which of these external ids are catalogue products."""
    wanted = sorted(set(external_ids))
    found: set[str] = set()
    for start in range(0, len(wanted), batch):
        part = wanted[start : start + batch]
        found.update(session.scalars(select(Product.external_id).where(Product.external_id.in_(part))))
    return found


def get_by_external_id(session: Session, external_id: str) -> Product | None:
    return session.scalar(select(Product).where(Product.external_id == external_id))


def by_external_ids(session: Session, external_ids: Iterable[str | None]) -> dict[str, Product]:
    """The catalogue products among ``external_ids``, by external id."""
    return {p.external_id: p for p in session.scalars(select(Product).where(Product.external_id.in_(external_ids)))}


def first_products(session: Session, limit: int) -> list[Product]:
    """The first ``limit`` products in id order."""
    return list(session.scalars(select(Product).order_by(Product.id).limit(limit)))


def products_by_ids(session: Session, ids: Sequence[int]) -> dict[int, Product]:
    """The products among ``ids``, by id, without their attributes (never read while matching)."""
    rows = session.scalars(select(Product).options(defer(Product.attributes)).where(Product.id.in_(ids)))
    return {int(p.id): p for p in rows}


def titles_and_brands(session: Session, ids: Sequence[int]) -> list[tuple[int, str, str | None]]:
    """(id, title, brand) of the products among ``ids``."""
    rows = session.execute(select(Product.id, Product.title, Product.brand).where(Product.id.in_(ids)))
    return [(int(pid), title, brand) for pid, title, brand in rows]


def titles_and_brands_after(session: Session, after_id: int, limit: int) -> list[tuple[int, str, str | None]]:
    """(id, title, brand) of the first ``limit`` products after ``after_id``, in id order (keyset)."""
    rows = session.execute(
        select(Product.id, Product.title, Product.brand).where(Product.id > after_id).order_by(Product.id).limit(limit)
    )
    return [(int(pid), title, brand) for pid, title, brand in rows]


def titles_by_external_id(session: Session, external_ids: Iterable[str]) -> dict[str, str]:
    """The title of each catalogue product among ``external_ids``."""
    rows = session.execute(
        select(Product.external_id, Product.title).where(Product.external_id.in_(sorted(set(external_ids))))
    )
    return {ext: title for ext, title in rows}


def catalogue_rows(session: Session) -> list[tuple[int, str, str, str | None, str | None]]:
    """(id, external id, title, brand, category) of every product, in id order."""
    rows = session.execute(
        select(Product.id, Product.external_id, Product.title, Product.brand, Product.category).order_by(Product.id)
    )
    return [(int(r[0]), r[1], r[2], r[3], r[4]) for r in rows]


def add_products(session: Session, rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Insert new products in one statement; returns external id -> new product id.

    One multi-row INSERT ... RETURNING (ids in row order) instead of a flushed ORM object per
    row: with the bulk vector and change-log inserts, ingestion's non-embedding time at 100k fell
    from 55.9 to 19.1 s (docs/benchmarks.md, "A Zen 2 VM without bf16").
    """
    if not rows:
        return {}
    stmt = insert(Product).returning(Product.external_id, Product.id, sort_by_parameter_order=True)
    return {ext: int(pid) for ext, pid in session.execute(stmt, list(rows))}


def update_product(session: Session, product_id: int, values: dict[str, Any]) -> None:
    session.execute(update(Product).where(Product.id == product_id).values(**values))


def existing_states(session: Session, external_ids: Sequence[str], model_id: str) -> dict[str, ExistingState]:
    found: dict[str, ExistingState] = {}
    for start in range(0, len(external_ids), 500):
        chunk = list(external_ids[start : start + 500])
        rows = session.execute(
            select(
                Product.external_id,
                Product.id,
                Product.content_hash,
                Product.text_hash,
                ProductEmbedding.text_hash,
            )
            .outerjoin(
                ProductEmbedding,
                (ProductEmbedding.product_id == Product.id) & (ProductEmbedding.model_id == model_id),
            )
            .where(Product.external_id.in_(chunk))
        )
        for ext, pid, chash, thash, vec_hash in rows:
            found[ext] = ExistingState(int(pid), chash, thash, vec_hash is not None and vec_hash == thash)
    return found


def store_vectors(
    session: Session, model_id: str, items: Sequence[tuple[int, str, np.ndarray]], text_changed: set[int]
) -> None:
    """Write (product id, text hash, vector) for a model; drop stale vectors of other models."""
    ids = [pid for pid, _, _ in items]
    if not ids:
        return
    session.execute(
        delete(ProductEmbedding).where(ProductEmbedding.product_id.in_(ids), ProductEmbedding.model_id == model_id)
    )
    if text_changed:
        session.execute(delete(ProductEmbedding).where(ProductEmbedding.product_id.in_(sorted(text_changed))))
    session.execute(
        insert(ProductEmbedding),
        [
            {
                "product_id": pid,
                "model_id": model_id,
                "text_hash": thash,
                "vector": np.asarray(vec, dtype=np.float32).tobytes(),
            }
            for pid, thash, vec in items
        ],
    )


def list_products(
    session: Session, query: str | None, brand_norm: str | None, limit: int, after_id: int | None
) -> list[Product]:
    stmt = select(Product).order_by(Product.id).limit(limit)
    if after_id is not None:
        stmt = stmt.where(Product.id > after_id)
    if brand_norm:
        stmt = stmt.where(Product.brand_norm == brand_norm)
    if query:
        escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        stmt = stmt.where(Product.title.ilike(f"%{escaped}%", escape="\\"))
    return list(session.scalars(stmt))


def log_changes(session: Session, product_ids: Iterable[int], op: str) -> None:
    rows = [{"product_id": int(pid), "op": op} for pid in product_ids]
    if rows:
        session.execute(insert(IndexChange), rows)


def delete_product(session: Session, external_id: str) -> int | None:
    serialise_writers(session)
    pid = session.scalar(select(Product.id).where(Product.external_id == external_id))
    if pid is None:
        return None
    session.execute(delete(Product).where(Product.id == pid))
    log_changes(session, [pid], "d")
    return int(pid)


def count_products(session: Session) -> int:
    return int(session.scalar(select(func.count(Product.id))) or 0)


def max_change_seq(session: Session) -> int:
    return int(session.scalar(select(func.max(IndexChange.seq))) or 0)


def changes_since(session: Session, seq: int, limit: int) -> list[tuple[int, int, str]]:
    rows = session.execute(
        select(IndexChange.seq, IndexChange.product_id, IndexChange.op)
        .where(IndexChange.seq > seq)
        .order_by(IndexChange.seq)
        .limit(limit)
    )
    return [(int(s), int(p), str(o)) for s, p, o in rows]


def vectors_for(
    session: Session, product_ids: Sequence[int], model_id: str
) -> dict[int, tuple[np.ndarray, str | None, str | None]]:
    """Stored vectors of `model_id` with brand/category keys, by product id."""
    out: dict[int, tuple[np.ndarray, str | None, str | None]] = {}
    for start in range(0, len(product_ids), 1000):
        chunk = [int(p) for p in product_ids[start : start + 1000]]
        rows = session.execute(
            select(Product.id, ProductEmbedding.vector, Product.brand_norm, Product.category_norm)
            .join(ProductEmbedding, ProductEmbedding.product_id == Product.id)
            .where(Product.id.in_(chunk), ProductEmbedding.model_id == model_id)
        )
        for pid, blob, brand, category in rows:
            out[int(pid)] = (np.frombuffer(blob, dtype=np.float32), brand, category)
    return out


def iter_all_vectors(
    session: Session, model_id: str, batch: int = 5000
) -> Iterable[tuple[np.ndarray, np.ndarray, list[str | None], list[str | None]]]:
    """Every product with a vector of `model_id`, in id order: (ids, vectors, brands, categories)."""
    last = 0
    while True:
        rows = session.execute(
            select(Product.id, ProductEmbedding.vector, Product.brand_norm, Product.category_norm)
            .join(ProductEmbedding, ProductEmbedding.product_id == Product.id)
            .where(Product.id > last, ProductEmbedding.model_id == model_id)
            .order_by(Product.id)
            .limit(batch)
        ).all()
        if not rows:
            return
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        vecs = np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows])
        yield ids, vecs, [r[2] for r in rows], [r[3] for r in rows]
        last = int(ids[-1])


def embedded_ids(session: Session, model_id: str) -> np.ndarray:
    rows = session.scalars(select(ProductEmbedding.product_id).where(ProductEmbedding.model_id == model_id))
    return np.array(sorted(rows), dtype=np.int64)


def ids_needing_embedding(session: Session, model_id: str, limit: int) -> list[tuple[int, str, str | None, str]]:
    """Products without a current vector from `model_id`: (id, title, brand, text hash)."""
    rows = session.execute(
        select(Product.id, Product.title, Product.brand, Product.text_hash)
        .outerjoin(
            ProductEmbedding,
            (ProductEmbedding.product_id == Product.id) & (ProductEmbedding.model_id == model_id),
        )
        .where((ProductEmbedding.product_id.is_(None)) | (ProductEmbedding.text_hash != Product.text_hash))
        .order_by(Product.id)
        .limit(limit)
    )
    return [(int(i), t, b, h) for i, t, b, h in rows]
