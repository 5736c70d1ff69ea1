"""Everything that touches APScheduler lives here (the only module importing it)."""

from __future__ import annotations


def schedule_problem(expression: str) -> str | None:
    """Why a cron expression is invalid, or None when APScheduler accepts it."""
    from apscheduler.triggers.cron import CronTrigger

    try:
        CronTrigger.from_crontab(expression, timezone="UTC")
    except ValueError as exc:
        return f"not a valid cron expression ({exc})"
    return None
