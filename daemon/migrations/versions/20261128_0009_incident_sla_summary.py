"""An incident's SLA outcome kept on its row (filled from the cycles already stored)

Revision ID: 20261128_0009
Revises: 20261128_0008
Create Date: 2026-11-28 23:59:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261128_0009"
down_revision = "20261128_0008"
branch_labels = None
depends_on = None

SUMMARIES = {"sla_resolution_breach": "resolution", "sla_response_breach": "response"}


def upgrade() -> None:
    with op.batch_alter_table("itil_incident", schema=None) as batch_op:
        for column in SUMMARIES:
            batch_op.add_column(sa.Column(column, sa.Integer(), nullable=True))
    # The same rule as daemon.sla_summary.breach, frozen here as this revision wrote it.
    assignments = ", ".join(
        f"""{column} = (SELECT max(CASE WHEN s.breached THEN 1 ELSE 0 END) FROM itil_sla s
            WHERE s.source = itil_incident.source AND s.task = itil_incident.source_id
              AND s.sla_type = '{sla_type}' AND s.deleted_at IS NULL
              AND (s.stage IS NULL OR s.stage <> 'cancelled'))"""
        for column, sla_type in SUMMARIES.items()
    )
    op.execute(f"UPDATE itil_incident SET {assignments}")


def downgrade() -> None:
    with op.batch_alter_table("itil_incident", schema=None) as batch_op:
        for column in reversed(list(SUMMARIES)):
            batch_op.drop_column(column)
