"""sync locks and daemon heartbeat

Revision ID: 20261128_0005
Revises: 20261128_0004
Create Date: 2026-11-28 10:06:00.117466
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '20261128_0005'
down_revision = '20261128_0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('daemon_beat',
    sa.Column('holder', sa.String(length=250), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=False),
    sa.Column('beat_at', sa.DateTime(), nullable=False),
    sa.Column('next_runs', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('holder', name=op.f('pk_daemon_beat'))
    )
    op.create_table('sync_lock',
    sa.Column('name', sa.String(length=250), nullable=False),
    sa.Column('holder', sa.String(length=250), nullable=False),
    sa.Column('acquired_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_sync_lock'))
    )


def downgrade() -> None:
    op.drop_table('sync_lock')
    op.drop_table('daemon_beat')
