"""catalogue calibrations: thresholds refitted on the catalogue's own labels

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-12 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "calibrations",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("scorer_key", sa.String(length=255), nullable=False),
        sa.Column("scorer", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("method", sa.String(length=32), nullable=False),
        sa.Column("calibrator", sa.JSON(), nullable=False),
        sa.Column("target_precision", sa.Float(), nullable=False),
        sa.Column("target_reached", sa.Boolean(), nullable=False),
        sa.Column("review_probability", sa.Float(), nullable=False),
        sa.Column("match_threshold", sa.Float(), nullable=False),
        sa.Column("review_threshold", sa.Float(), nullable=False),
        sa.Column("own_match_threshold", sa.Float(), nullable=False),
        sa.Column("own_review_threshold", sa.Float(), nullable=False),
        sa.Column("n_labels", sa.Integer(), nullable=False),
        sa.Column("n_positive", sa.Integer(), nullable=False),
        sa.Column("n_negative", sa.Integer(), nullable=False),
        sa.Column("n_skipped", sa.Integer(), nullable=False),
        sa.Column("n_accepted", sa.Integer(), nullable=False),
        sa.Column("precision", sa.Float(), nullable=True),
        sa.Column("precision_low", sa.Float(), nullable=True),
        sa.Column("precision_high", sa.Float(), nullable=True),
        sa.Column("recall", sa.Float(), nullable=True),
        sa.Column("match_probability", sa.Float(), nullable=True),
        sa.Column("labels_through", sa.BigInteger(), nullable=False),
        sa.Column("fitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_calibrations_scorer_key_status", "calibrations", ["scorer_key", "status"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_calibrations_scorer_key_status", table_name="calibrations")
    op.drop_table("calibrations")
