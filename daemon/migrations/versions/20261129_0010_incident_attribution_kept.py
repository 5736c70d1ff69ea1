"""An incident's attributed change kept on its row (stale until the next restatement)

Revision ID: 20261129_0010
Revises: 20261128_0009
Create Date: 2026-11-29 05:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = "20261129_0010"
down_revision = "20261128_0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Every existing row starts stale: the rule lives in the configuration, which a
    # migration does not read, so the next `itbsc recompute` or restatement works them out
    # (until then computations work the attribution out in SQL, as before).
    with op.batch_alter_table("itil_incident", schema=None) as batch_op:
        batch_op.add_column(sa.Column("attributed_change", sa.String(200), nullable=True))
        batch_op.add_column(sa.Column("attributed_change_end", sa.DateTime(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "attribution_current", sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )
    stale = sa.text("NOT attribution_current")
    op.create_index(
        "ix_itil_incident_attribution_stale",
        "itil_incident",
        ["id"],
        postgresql_where=stale,
        sqlite_where=stale,
    )
    op.create_table(
        "kept_rule",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("rule", sa.String(300), nullable=False),
        sa.Column("kept_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_kept_rule")),
    )


def downgrade() -> None:
    op.drop_table("kept_rule")
    op.drop_index("ix_itil_incident_attribution_stale", table_name="itil_incident")
    with op.batch_alter_table("itil_incident", schema=None) as batch_op:
        for column in ("attribution_current", "attributed_change_end", "attributed_change"):
            batch_op.drop_column(column)
