"""products: the model numbers among the attributes, in their own column

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 06:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from models.pair_signals import model_numbers

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_CHUNK = 5_000


def upgrade() -> None:
    with op.batch_alter_table("products", schema=None) as batch_op:
        batch_op.add_column(sa.Column("model_numbers", sa.String(length=255), nullable=True))
    # Products stored before this revision keep their attributes: fill the column from them, so a
    # catalogue needs no re-ingestion. Read in id order, in chunks, to bound memory.
    products = sa.table(
        "products", sa.column("id", sa.BigInteger), sa.column("attributes", sa.JSON), sa.column("model_numbers")
    )
    bind = op.get_bind()
    last = 0
    while True:
        rows = bind.execute(
            sa.select(products.c.id, products.c.attributes)
            .where(products.c.id > last)
            .order_by(products.c.id)
            .limit(_CHUNK)
        ).all()
        if not rows:
            break
        last = int(rows[-1][0])
        updates = [{"pid": int(pid), "mn": mn} for pid, attrs in rows if (mn := model_numbers(attrs))]
        if updates:
            bind.execute(
                products.update().where(products.c.id == sa.bindparam("pid")).values(model_numbers=sa.bindparam("mn")),
                updates,
            )


def downgrade() -> None:
    with op.batch_alter_table("products", schema=None) as batch_op:
        batch_op.drop_column("model_numbers")
