"""An incident's SLA outcome kept on its row, so no computation joins its cycles.

Grouping a million incidents' two million cycles took most of the SLA metrics'
time (on PostgreSQL 3 of C1's 3.5 s at a million incidents). So every write of
incidents or cycles — a sync page, a census deletion, ``itbsc recompute`` —
refreshes the summary of the incidents it touched, in the same transaction —
and, for a source whose mapping reads it so, their first response (the end of
the first completed response cycle).
The per-record path (``daemon.derive``) still reads the cycles themselves, and
the tests hold the two equal.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, case, func, or_, select, update

from daemon.models import CANONICAL_TABLES

# column on the incident row -> the SLA type it summarises
SUMMARIES = {"sla_resolution_breach": "resolution", "sla_response_breach": "response"}
CHUNK = 500


def breach(sla_type: str, incidents: Table) -> Any:
    """1 when a live, uncancelled cycle of ``sla_type`` breached, 0 when none did, None
    when the incident has no such cycle (what ``derive._breaches`` decides per record)."""
    sla = CANONICAL_TABLES["sla"]
    return (
        select(func.max(case((sla.c.breached.is_(True), 1), else_=0)))
        .where(
            sla.c.source == incidents.c.source,
            sla.c.task == incidents.c.source_id,
            sla.c.sla_type == sla_type,
            sla.c.deleted_at.is_(None),
            or_(sla.c.stage.is_(None), sla.c.stage != "cancelled"),
        )
        .scalar_subquery()
    )


def response_end(incidents: Table) -> Any:
    """When the incident's first completed response cycle ended: its first response, for a
    source whose mapping says ``first_response_at = "@sla.response_end"``."""
    sla = CANONICAL_TABLES["sla"]
    return (
        select(func.min(sla.c.end_time))
        .where(
            sla.c.source == incidents.c.source,
            sla.c.task == incidents.c.source_id,
            sla.c.sla_type == "response",
            sla.c.deleted_at.is_(None),
            sla.c.stage == "completed",
        )
        .scalar_subquery()
    )


def refresh(
    conn: Connection, source: str, incident_ids: Iterable[str], *, first_response: bool = False
) -> list[datetime]:
    """Recompute the summary of these incidents of ``source`` from their stored cycles (and,
    with ``first_response``, their first response). Returns the first responses it set, so
    the caller restates where they fall without reading them back (one query a page less)."""
    incidents = CANONICAL_TABLES["incident"]
    ids = sorted(set(incident_ids))
    values = {column: breach(sla_type, incidents) for column, sla_type in SUMMARIES.items()}
    if first_response:
        values["first_response_at"] = response_end(incidents)
    returning = first_response and conn.dialect.update_returning
    responses: list[datetime] = []
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        statement = (
            update(incidents)
            .where(incidents.c.source == source, incidents.c.source_id.in_(chunk))
            .values(values)
        )
        if returning:
            statement = statement.returning(incidents.c.first_response_at)
            responses.extend(m for (m,) in conn.execute(statement) if m is not None)
            continue
        conn.execute(statement)
        if first_response:  # a database that cannot return what it updated: read it back
            found = select(incidents.c.first_response_at).where(
                incidents.c.source == source,
                incidents.c.source_id.in_(chunk),
                incidents.c.first_response_at.is_not(None),
            )
            responses.extend(conn.execute(found).scalars())
    return responses


def refresh_all(conn: Connection) -> None:
    """Recompute every incident's summary (a store written before the summary existed)."""
    incidents = CANONICAL_TABLES["incident"]
    values = {column: breach(sla_type, incidents) for column, sla_type in SUMMARIES.items()}
    conn.execute(update(incidents).values(values))
