"""manual input register

Revision ID: 20261128_0003
Revises: 20261128_0002
Create Date: 2026-11-28 08:17:44.804994
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261128_0003"
down_revision = "20261128_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "manual_input",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("period", sa.String(length=30), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("unit", sa.String(length=30), nullable=False),
        sa.Column("entered_by", sa.String(length=200), nullable=False),
        sa.Column("entered_at", sa.DateTime(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column(
            "supersedes", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_manual_input")),
    )
    with op.batch_alter_table("manual_input", schema=None) as batch_op:
        batch_op.create_index("ix_manual_input_name_period", ["name", "period"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("manual_input", schema=None) as batch_op:
        batch_op.drop_index("ix_manual_input_name_period")

    op.drop_table("manual_input")
