"""The tables (SQLAlchemy declarative classes): products, index change log, jobs, labelled pairs, model versions,
review items, catalogue calibrations."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, BigIntPK, utcnow


class Product(Base):
    __tablename__ = "products"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    external_id: Mapped[str] = mapped_column(String(255), unique=True, nullable=False)
    title: Mapped[str] = mapped_column(Text, nullable=False)
    brand: Mapped[str | None] = mapped_column(String(255))
    brand_norm: Mapped[str | None] = mapped_column(String(255), index=True)
    category: Mapped[str | None] = mapped_column(String(255))
    category_norm: Mapped[str | None] = mapped_column(String(255), index=True)
    price: Mapped[float | None] = mapped_column(Float)
    currency: Mapped[str | None] = mapped_column(String(3))
    description: Mapped[str | None] = mapped_column(Text)
    image_urls: Mapped[list[str]] = mapped_column(JSON, default=list)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The model and part numbers among the attributes (models.pair_signals.model_numbers): the
    # matcher's identifier signals read them while matching, which never loads the attributes.
    model_numbers: Mapped[str | None] = mapped_column(String(255))
    source: Mapped[str | None] = mapped_column(String(255))
    content_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    text_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class ProductEmbedding(Base):
    """One vector per (product, model): a new model is embedded beside the serving one."""

    __tablename__ = "product_embeddings"

    product_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"),
        ForeignKey("products.id", ondelete="CASCADE"),
        primary_key=True,
    )
    model_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    text_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    vector: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)


class IndexChange(Base):
    """Append-only log of index-relevant changes; its sequence is the index version."""

    __tablename__ = "index_changes"
    __table_args__ = {"sqlite_autoincrement": True}

    seq: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    product_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    op: Mapped[str] = mapped_column(String(1), nullable=False)  # "u" upsert, "d" delete
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    state: Mapped[str] = mapped_column(String(24), nullable=False, index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    dedupe_key: Mapped[str | None] = mapped_column(String(128), unique=True)
    rows_total: Mapped[int | None] = mapped_column(Integer)
    rows_done: Mapped[int] = mapped_column(Integer, default=0)
    rows_ok: Mapped[int] = mapped_column(Integer, default=0)
    rows_unchanged: Mapped[int] = mapped_column(Integer, default=0)
    rows_failed: Mapped[int] = mapped_column(Integer, default=0)
    checkpoint: Mapped[int] = mapped_column(Integer, default=0)
    message: Mapped[str | None] = mapped_column(Text)
    timings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Multi-stage jobs (retraining): the stage running now, and what the job produced.
    stage: Mapped[str | None] = mapped_column(String(64))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class JobRowError(Base):
    __tablename__ = "job_row_errors"
    __table_args__ = (Index("ix_job_row_errors_job_row", "job_id", "row"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False)
    row: Mapped[int] = mapped_column(Integer, nullable=False)
    field: Mapped[str | None] = mapped_column(String(255))
    message: Mapped[str] = mapped_column(Text, nullable=False)


class LabeledPair(Base):
    """A label on (offer, product). Labels are append-only: a pair labelled twice keeps both
    rows with their times, and the latest is the one that counts."""

    __tablename__ = "labeled_pairs"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    review_id: Mapped[str | None] = mapped_column(String(36), index=True)
    offer: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    offer_external_id: Mapped[str | None] = mapped_column(String(255), index=True)
    product_external_id: Mapped[str] = mapped_column(String(255), nullable=False, index=True)
    label: Mapped[int] = mapped_column(Integer, nullable=False)
    source: Mapped[str | None] = mapped_column(String(64))
    reviewer: Mapped[str | None] = mapped_column(String(255))
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ModelVersion(Base):
    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    version: Mapped[str] = mapped_column(String(128), unique=True, nullable=False)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    path: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="registered")
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    promoted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ReviewItem(Base):
    """A match decision in the review band, waiting for a person."""

    __tablename__ = "review_items"
    __table_args__ = (
        Index("ix_review_items_status_created", "status", "created_at"),
        # One open item per (offer, candidate set): the same decision queued twice is one item.
        Index(
            "ux_review_items_open_dedupe",
            "dedupe_key",
            unique=True,
            sqlite_where=text("status = 'open'"),
            postgresql_where=text("status = 'open'"),
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    offer: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    offer_external_id: Mapped[str | None] = mapped_column(String(255), index=True)
    candidates: Mapped[list[dict[str, Any]]] = mapped_column(JSON, nullable=False)
    top_score: Mapped[float | None] = mapped_column(Float)
    model_versions: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="open")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    dedupe_key: Mapped[str | None] = mapped_column(String(64))


class Calibration(Base):
    """Thresholds refitted on the catalogue's own labelled pairs for one scorer (POST
    /v1/admin/calibration). At most one row per scorer is active; older and reverted rows stay
    as history with ``status = 'retired'``."""

    __tablename__ = "calibrations"
    __table_args__ = (Index("ix_calibrations_scorer_key_status", "scorer_key", "status"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    # The scorer identity: a matcher version, or the zero-shot name + a hash of what moves its scores.
    scorer_key: Mapped[str] = mapped_column(String(255), nullable=False)
    scorer: Mapped[str] = mapped_column(String(255), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="active")
    method: Mapped[str] = mapped_column(String(32), nullable=False)
    calibrator: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    target_precision: Mapped[float] = mapped_column(Float, nullable=False)
    target_reached: Mapped[bool] = mapped_column(Boolean, nullable=False)
    review_probability: Mapped[float] = mapped_column(Float, nullable=False)
    match_threshold: Mapped[float] = mapped_column(Float, nullable=False)
    review_threshold: Mapped[float] = mapped_column(Float, nullable=False)
    own_match_threshold: Mapped[float] = mapped_column(Float, nullable=False)
    own_review_threshold: Mapped[float] = mapped_column(Float, nullable=False)
    n_labels: Mapped[int] = mapped_column(Integer, nullable=False)
    n_positive: Mapped[int] = mapped_column(Integer, nullable=False)
    n_negative: Mapped[int] = mapped_column(Integer, nullable=False)
    n_skipped: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    n_accepted: Mapped[int] = mapped_column(Integer, nullable=False)
    precision: Mapped[float | None] = mapped_column(Float)
    precision_low: Mapped[float | None] = mapped_column(Float)
    precision_high: Mapped[float | None] = mapped_column(Float)
    recall: Mapped[float | None] = mapped_column(Float)
    match_probability: Mapped[float | None] = mapped_column(Float)
    # The newest labeled_pairs.id the fit saw: automatic refits count the labels after it.
    labels_through: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    fitted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    retired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
