"""Initial schema: raw records, canonical incidents, cursors, run audit, metric values.

Revision ID: 20261128_0001
Revises: (none)
Create Date: 2026-11-28 05:48:55.584000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261128_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "itil_incident",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("source_id", sa.String(length=200), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("mapping_version", sa.String(length=100), nullable=False),
        sa.Column("deleted_at", sa.DateTime(), nullable=True),
        sa.Column("number", sa.String(length=255), nullable=True),
        sa.Column("state", sa.String(length=100), nullable=True),
        sa.Column("state_original", sa.String(length=255), nullable=True),
        sa.Column("priority", sa.String(length=100), nullable=True),
        sa.Column("priority_original", sa.String(length=255), nullable=True),
        sa.Column("impact", sa.String(length=100), nullable=True),
        sa.Column("impact_original", sa.String(length=255), nullable=True),
        sa.Column("urgency", sa.String(length=100), nullable=True),
        sa.Column("urgency_original", sa.String(length=255), nullable=True),
        sa.Column("category", sa.String(length=255), nullable=True),
        sa.Column("assignment_group", sa.String(length=255), nullable=True),
        sa.Column("service", sa.String(length=255), nullable=True),
        sa.Column("contact_type", sa.String(length=100), nullable=True),
        sa.Column("contact_type_original", sa.String(length=255), nullable=True),
        sa.Column("close_code", sa.String(length=100), nullable=True),
        sa.Column("close_code_original", sa.String(length=255), nullable=True),
        sa.Column("opened_at", sa.DateTime(), nullable=True),
        sa.Column("resolved_at", sa.DateTime(), nullable=True),
        sa.Column("closed_at", sa.DateTime(), nullable=True),
        sa.Column("reopen_count", sa.Integer(), nullable=True),
        sa.Column("reassignment_count", sa.Integer(), nullable=True),
        sa.Column("made_sla", sa.Boolean(), nullable=True),
        sa.Column("caused_by", sa.String(length=255), nullable=True),
        sa.Column("problem_id", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_itil_incident")),
        sa.UniqueConstraint("source", "source_id", name=op.f("uq_itil_incident_source_source_id")),
    )
    with op.batch_alter_table("itil_incident", schema=None) as batch_op:
        batch_op.create_index("ix_itil_incident_opened_at", ["opened_at"], unique=False)
        batch_op.create_index("ix_itil_incident_resolved_at", ["resolved_at"], unique=False)

    op.create_table(
        "metric_value",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("metric", sa.String(length=50), nullable=False),
        sa.Column("grain", sa.String(length=10), nullable=False),
        sa.Column("period", sa.String(length=30), nullable=False),
        sa.Column("period_start", sa.DateTime(), nullable=False),
        sa.Column("period_end", sa.DateTime(), nullable=False),
        sa.Column("dimension", sa.String(length=300), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("numerator", sa.Float(), nullable=True),
        sa.Column("denominator", sa.Float(), nullable=True),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("exclusions", sa.JSON(), nullable=False),
        sa.Column("mapping_version", sa.String(length=300), nullable=False),
        sa.Column("computed_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_metric_value")),
        sa.UniqueConstraint(
            "metric",
            "grain",
            "period_start",
            "dimension",
            name=op.f("uq_metric_value_metric_grain_period_start_dimension"),
        ),
    )
    op.create_table(
        "raw_record",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("stream", sa.String(length=100), nullable=False),
        sa.Column("source_id", sa.String(length=200), nullable=False),
        sa.Column("source_updated_at", sa.DateTime(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("fetched_at", sa.DateTime(), nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("deleted_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_raw_record")),
        sa.UniqueConstraint(
            "source", "stream", "source_id", name=op.f("uq_raw_record_source_stream_source_id")
        ),
    )
    op.create_table(
        "sync_run",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("stream", sa.String(length=100), nullable=False),
        sa.Column("mode", sa.String(length=20), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("pages", sa.Integer(), nullable=False),
        sa.Column("records_fetched", sa.Integer(), nullable=False),
        sa.Column("records_written", sa.Integer(), nullable=False),
        sa.Column("records_skipped", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_run")),
    )
    with op.batch_alter_table("sync_run", schema=None) as batch_op:
        batch_op.create_index(
            "ix_sync_run_source_stream_started", ["source", "stream", "started_at"], unique=False
        )

    op.create_table(
        "sync_state",
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("stream", sa.String(length=100), nullable=False),
        sa.Column("cursor", sa.JSON(), nullable=True),
        sa.Column("last_run_id", sa.String(length=36), nullable=True),
        sa.Column("last_success_at", sa.DateTime(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("source", "stream", name=op.f("pk_sync_state")),
    )


def downgrade() -> None:
    op.drop_table("sync_state")
    with op.batch_alter_table("sync_run", schema=None) as batch_op:
        batch_op.drop_index("ix_sync_run_source_stream_started")

    op.drop_table("sync_run")
    op.drop_table("raw_record")
    op.drop_table("metric_value")
    with op.batch_alter_table("itil_incident", schema=None) as batch_op:
        batch_op.drop_index("ix_itil_incident_resolved_at")
        batch_op.drop_index("ix_itil_incident_opened_at")

    op.drop_table("itil_incident")
