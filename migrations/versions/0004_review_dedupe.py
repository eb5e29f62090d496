"""review items: one open item per (offer, candidate set)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("review_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("dedupe_key", sa.String(length=64), nullable=True))
    # Unique among open items only: a labelled item frees its key, and rows stored before this
    # migration (no key) never collide.
    op.create_index(
        "ux_review_items_open_dedupe",
        "review_items",
        ["dedupe_key"],
        unique=True,
        sqlite_where=sa.text("status = 'open'"),
        postgresql_where=sa.text("status = 'open'"),
    )


def downgrade() -> None:
    op.drop_index("ux_review_items_open_dedupe", table_name="review_items")
    with op.batch_alter_table("review_items", schema=None) as batch_op:
        batch_op.drop_column("dedupe_key")
