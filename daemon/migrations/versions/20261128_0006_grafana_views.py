"""views over metric values for Grafana and other SQL readers

Revision ID: 20261128_0006
Revises: 20261128_0005
Create Date: 2026-11-28 10:50:00
"""

from __future__ import annotations

from alembic import op

revision = "20261128_0006"
down_revision = "20261128_0005"
branch_labels = None
depends_on = None

VIEWS = {
    # every stored value, with the period start as the time column Grafana expects
    "v_metric_value": """
        SELECT metric, grain, period, period_start AS time, period_end, dimension, value,
               numerator, denominator, n, mapping_version, computed_at
        FROM metric_value
    """,
    # one series per metric: months, all sources combined
    "v_metric_monthly": """
        SELECT metric, period, period_start AS time, value, numerator, denominator, n
        FROM metric_value
        WHERE grain = 'month' AND dimension = 'all'
    """,
    # one series per metric and source
    "v_metric_by_source": """
        SELECT metric, grain, period, period_start AS time, substr(dimension, 8) AS source,
               value, numerator, denominator, n
        FROM metric_value
        WHERE dimension LIKE 'source=%'
    """,
}


def upgrade() -> None:
    for name, query in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {query}")


def downgrade() -> None:
    for name in reversed(list(VIEWS)):
        op.execute(f"DROP VIEW IF EXISTS {name}")
