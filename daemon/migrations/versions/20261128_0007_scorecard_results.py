"""scorecard results kept per period, and a view for dashboards

Revision ID: 20261128_0007
Revises: 20261128_0006
Create Date: 2026-11-28 10:55:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261128_0007"
down_revision = "20261128_0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scorecard_result",
        sa.Column("period", sa.String(length=30), nullable=False),
        sa.Column("dimension", sa.String(length=300), nullable=False),
        sa.Column("objective", sa.String(length=100), nullable=False),
        sa.Column("metric", sa.String(length=50), nullable=False),
        sa.Column("period_start", sa.DateTime(), nullable=False),
        sa.Column("perspective", sa.String(length=30), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("target", sa.Float(), nullable=False),
        sa.Column("amber", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("stale", sa.Text(), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("judged_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint(
            "period", "dimension", "objective", "metric", name=op.f("pk_scorecard_result")
        ),
    )
    op.execute(
        """CREATE VIEW v_scorecard AS
        SELECT period, period_start AS time, dimension, perspective, objective, metric, value,
               target, amber, status, score, n, stale, judged_at
        FROM scorecard_result"""
    )


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS v_scorecard")
    op.drop_table("scorecard_result")
