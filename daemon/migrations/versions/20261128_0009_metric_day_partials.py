"""Per-day partial groups of metric families, so periods are summed from days

Revision ID: 20261128_0009
Revises: 20261128_0008
Create Date: 2026-11-28 18:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261128_0009"
down_revision = "20261128_0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "metric_day_partial",
        sa.Column("family", sa.String(32), nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("grp", sa.String(32), nullable=False),
        sa.Column("fields", sa.Text(), nullable=True),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("hours", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("family", "day", "grp", name=op.f("pk_metric_day_partial")),
    )
    op.create_index("ix_metric_day_partial_day", "metric_day_partial", ["day"])


def downgrade() -> None:
    op.drop_index("ix_metric_day_partial_day", table_name="metric_day_partial")
    op.drop_table("metric_day_partial")
