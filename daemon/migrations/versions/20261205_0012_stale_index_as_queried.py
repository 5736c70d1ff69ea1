"""SQLite: the stale-attribution index under the condition the queries write

SQLAlchemy writes "not current" as ``attribution_current = 0`` on SQLite, and SQLite
uses a partial index only when a query repeats its condition; the index said ``NOT
attribution_current``, so every check for stale incidents read the whole incident
table (0.13 s at a million incidents, several times a sync; 0.000 s through the
index). PostgreSQL's queries say ``NOT attribution_current`` and keep their index.

Revision ID: 20261205_0012
Revises: 20261129_0011
Create Date: 2026-12-05 10:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261205_0012"
down_revision = "20261129_0011"
branch_labels = None
depends_on = None

NAME = "ix_itil_incident_attribution_stale"


def _recreate(condition: str) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.drop_index(NAME, table_name="itil_incident")
    op.create_index(NAME, "itil_incident", ["id"], sqlite_where=sa.text(condition))


def upgrade() -> None:
    _recreate("attribution_current = 0")


def downgrade() -> None:
    _recreate("NOT attribution_current")
