"""SLA cycles indexed with what SLA attainment reads, so it never visits the table

Revision ID: 20261128_0008
Revises: 20261128_0007
Create Date: 2026-11-28 16:30:00
"""

from __future__ import annotations

from alembic import op

revision = "20261128_0008"
down_revision = "20261128_0007"
branch_labels = None
depends_on = None

COLUMNS = ["source", "task", "sla_type", "stage", "breached", "deleted_at"]


def upgrade() -> None:
    op.create_index("ix_itil_sla_source_task_cycle", "itil_sla", COLUMNS)
    op.drop_index("ix_itil_sla_source_task", table_name="itil_sla")


def downgrade() -> None:
    op.create_index("ix_itil_sla_source_task", "itil_sla", ["source", "task"])
    op.drop_index("ix_itil_sla_source_task_cycle", table_name="itil_sla")
