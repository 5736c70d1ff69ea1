"""What an incident's SLA summary must say, worked out from its stored cycles in Python."""

from __future__ import annotations

import sqlalchemy as sa

from daemon.models import CANONICAL_TABLES
from daemon.sla_summary import SUMMARIES


def expected(engine: sa.Engine) -> dict[tuple[str, str], tuple[int | None, ...]]:
    """(source, incident) -> per summary column: 1 a live uncancelled cycle breached,
    0 none did, None no such cycle."""
    sla, incidents = CANONICAL_TABLES["sla"], CANONICAL_TABLES["incident"]
    with engine.connect() as conn:
        keys = [(r.source, r.source_id) for r in conn.execute(sa.select(incidents))]
        cycles = conn.execute(sa.select(sla).where(sla.c.deleted_at.is_(None))).all()
    out: dict[tuple[str, str], list[int | None]] = {k: [None] * len(SUMMARIES) for k in keys}
    types = list(SUMMARIES.values())
    for cycle in cycles:
        slot = out.get((cycle.source, cycle.task))
        if slot is None or cycle.stage == "cancelled" or cycle.sla_type not in types:
            continue
        at = types.index(cycle.sla_type)
        slot[at] = max(slot[at] or 0, 1 if cycle.breached else 0)
    return {k: tuple(v) for k, v in out.items()}


def stored(engine: sa.Engine) -> dict[tuple[str, str], tuple[int | None, ...]]:
    """(source, incident) -> the summary columns as stored on the incident row."""
    incidents = CANONICAL_TABLES["incident"]
    columns = [incidents.c[c] for c in SUMMARIES]
    with engine.connect() as conn:
        query = sa.select(incidents.c.source, incidents.c.source_id, *columns)
        return {(r[0], r[1]): tuple(r[2:]) for r in conn.execute(query)}
