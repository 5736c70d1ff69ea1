"""source streams: changes, SLA cycles, problems, request items, groups, surveys; census counts; dirty days; first response

Revision ID: 20261128_0002
Revises: 20261128_0001
Create Date: 2026-11-28 07:55:28.716640
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261128_0002"
down_revision = "20261128_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "itil_change",
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
        sa.Column("type", sa.String(length=100), nullable=True),
        sa.Column("type_original", sa.String(length=255), nullable=True),
        sa.Column("state", sa.String(length=100), nullable=True),
        sa.Column("state_original", sa.String(length=255), nullable=True),
        sa.Column("close_code", sa.String(length=100), nullable=True),
        sa.Column("close_code_original", sa.String(length=255), nullable=True),
        sa.Column("risk", sa.String(length=100), nullable=True),
        sa.Column("risk_original", sa.String(length=255), nullable=True),
        sa.Column("priority", sa.String(length=100), nullable=True),
        sa.Column("priority_original", sa.String(length=255), nullable=True),
        sa.Column("category", sa.String(length=255), nullable=True),
        sa.Column("assignment_group", sa.String(length=255), nullable=True),
        sa.Column("service", sa.String(length=255), nullable=True),
        sa.Column("opened_at", sa.DateTime(), nullable=True),
        sa.Column("planned_start", sa.DateTime(), nullable=True),
        sa.Column("planned_end", sa.DateTime(), nullable=True),
        sa.Column("work_start", sa.DateTime(), nullable=True),
        sa.Column("work_end", sa.DateTime(), nullable=True),
        sa.Column("closed_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_itil_change")),
        sa.UniqueConstraint("source", "source_id", name=op.f("uq_itil_change_source_source_id")),
    )
    with op.batch_alter_table("itil_change", schema=None) as batch_op:
        batch_op.create_index("ix_itil_change_closed_at", ["closed_at"], unique=False)
        batch_op.create_index("ix_itil_change_work_end", ["work_end"], unique=False)

    op.create_table(
        "itil_group",
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
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("tier", sa.String(length=100), nullable=True),
        sa.Column("tier_original", sa.String(length=255), nullable=True),
        sa.Column("type", sa.String(length=255), nullable=True),
        sa.Column("parent", sa.String(length=255), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_itil_group")),
        sa.UniqueConstraint("source", "source_id", name=op.f("uq_itil_group_source_source_id")),
    )
    op.create_table(
        "itil_problem",
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
        sa.Column("category", sa.String(length=255), nullable=True),
        sa.Column("assignment_group", sa.String(length=255), nullable=True),
        sa.Column("service", sa.String(length=255), nullable=True),
        sa.Column("known_error", sa.Boolean(), nullable=True),
        sa.Column("resolution_code", sa.String(length=255), nullable=True),
        sa.Column("first_reported_by", sa.String(length=255), nullable=True),
        sa.Column("opened_at", sa.DateTime(), nullable=True),
        sa.Column("resolved_at", sa.DateTime(), nullable=True),
        sa.Column("closed_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_itil_problem")),
        sa.UniqueConstraint("source", "source_id", name=op.f("uq_itil_problem_source_source_id")),
    )
    with op.batch_alter_table("itil_problem", schema=None) as batch_op:
        batch_op.create_index("ix_itil_problem_opened_at", ["opened_at"], unique=False)
        batch_op.create_index("ix_itil_problem_resolved_at", ["resolved_at"], unique=False)

    op.create_table(
        "itil_request_item",
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
        sa.Column("request", sa.String(length=255), nullable=True),
        sa.Column("item", sa.String(length=255), nullable=True),
        sa.Column("state", sa.String(length=100), nullable=True),
        sa.Column("state_original", sa.String(length=255), nullable=True),
        sa.Column("priority", sa.String(length=100), nullable=True),
        sa.Column("priority_original", sa.String(length=255), nullable=True),
        sa.Column("assignment_group", sa.String(length=255), nullable=True),
        sa.Column("reassignment_count", sa.Integer(), nullable=True),
        sa.Column("opened_at", sa.DateTime(), nullable=True),
        sa.Column("due_at", sa.DateTime(), nullable=True),
        sa.Column("closed_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_itil_request_item")),
        sa.UniqueConstraint(
            "source", "source_id", name=op.f("uq_itil_request_item_source_source_id")
        ),
    )
    with op.batch_alter_table("itil_request_item", schema=None) as batch_op:
        batch_op.create_index("ix_itil_request_item_closed_at", ["closed_at"], unique=False)
        batch_op.create_index("ix_itil_request_item_opened_at", ["opened_at"], unique=False)

    op.create_table(
        "itil_sla",
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
        sa.Column("task", sa.String(length=255), nullable=True),
        sa.Column("task_kind", sa.String(length=255), nullable=True),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("sla_type", sa.String(length=100), nullable=True),
        sa.Column("sla_type_original", sa.String(length=255), nullable=True),
        sa.Column("stage", sa.String(length=100), nullable=True),
        sa.Column("stage_original", sa.String(length=255), nullable=True),
        sa.Column("breached", sa.Boolean(), nullable=True),
        sa.Column("start_time", sa.DateTime(), nullable=True),
        sa.Column("end_time", sa.DateTime(), nullable=True),
        sa.Column("breach_time", sa.DateTime(), nullable=True),
        sa.Column("elapsed_seconds", sa.BigInteger(), nullable=True),
        sa.Column("business_elapsed_seconds", sa.BigInteger(), nullable=True),
        sa.Column("pause_seconds", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_itil_sla")),
        sa.UniqueConstraint("source", "source_id", name=op.f("uq_itil_sla_source_source_id")),
    )
    with op.batch_alter_table("itil_sla", schema=None) as batch_op:
        batch_op.create_index("ix_itil_sla_end_time", ["end_time"], unique=False)
        batch_op.create_index("ix_itil_sla_source_task", ["source", "task"], unique=False)

    op.create_table(
        "itil_survey",
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
        sa.Column("task", sa.String(length=255), nullable=True),
        sa.Column("survey", sa.String(length=255), nullable=True),
        sa.Column("question", sa.String(length=255), nullable=True),
        sa.Column("rating", sa.Integer(), nullable=True),
        sa.Column("responded_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_itil_survey")),
        sa.UniqueConstraint("source", "source_id", name=op.f("uq_itil_survey_source_source_id")),
    )
    with op.batch_alter_table("itil_survey", schema=None) as batch_op:
        batch_op.create_index("ix_itil_survey_responded_at", ["responded_at"], unique=False)

    op.create_table(
        "metric_dirty_day",
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("marked_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_metric_dirty_day")),
    )
    with op.batch_alter_table("itil_incident", schema=None) as batch_op:
        batch_op.add_column(sa.Column("first_response_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("parent_incident", sa.String(length=255), nullable=True))
        batch_op.create_index("ix_itil_incident_caused_by", ["caused_by"], unique=False)
        batch_op.create_index("ix_itil_incident_problem_id", ["problem_id"], unique=False)

    with op.batch_alter_table("sync_run", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("records_deleted", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("sync_run", schema=None) as batch_op:
        batch_op.drop_column("records_deleted")

    with op.batch_alter_table("itil_incident", schema=None) as batch_op:
        batch_op.drop_index("ix_itil_incident_problem_id")
        batch_op.drop_index("ix_itil_incident_caused_by")
        batch_op.drop_column("parent_incident")
        batch_op.drop_column("first_response_at")

    op.drop_table("metric_dirty_day")
    with op.batch_alter_table("itil_survey", schema=None) as batch_op:
        batch_op.drop_index("ix_itil_survey_responded_at")

    op.drop_table("itil_survey")
    with op.batch_alter_table("itil_sla", schema=None) as batch_op:
        batch_op.drop_index("ix_itil_sla_source_task")
        batch_op.drop_index("ix_itil_sla_end_time")

    op.drop_table("itil_sla")
    with op.batch_alter_table("itil_request_item", schema=None) as batch_op:
        batch_op.drop_index("ix_itil_request_item_opened_at")
        batch_op.drop_index("ix_itil_request_item_closed_at")

    op.drop_table("itil_request_item")
    with op.batch_alter_table("itil_problem", schema=None) as batch_op:
        batch_op.drop_index("ix_itil_problem_resolved_at")
        batch_op.drop_index("ix_itil_problem_opened_at")

    op.drop_table("itil_problem")
    op.drop_table("itil_group")
    with op.batch_alter_table("itil_change", schema=None) as batch_op:
        batch_op.drop_index("ix_itil_change_work_end")
        batch_op.drop_index("ix_itil_change_closed_at")

    op.drop_table("itil_change")
