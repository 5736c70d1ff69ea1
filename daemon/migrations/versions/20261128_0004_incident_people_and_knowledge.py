"""incident assignee, resolver, automation and knowledge fields

Revision ID: 20261128_0004
Revises: 20261128_0003
Create Date: 2026-11-28 09:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261128_0004"
down_revision = "20261128_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("itil_incident", schema=None) as batch_op:
        batch_op.add_column(sa.Column("assigned_to", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("resolved_by", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("auto_resolved", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("kb_used", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("itil_incident", schema=None) as batch_op:
        batch_op.drop_column("kb_used")
        batch_op.drop_column("auto_resolved")
        batch_op.drop_column("resolved_by")
        batch_op.drop_column("assigned_to")
