"""Derived fields, filled when metrics run from other records and the catalogue, never stored.

An incident's ``sla_met`` comes from its SLA cycles, its own flag or a clock
against goals; its ``tier`` and ``unit_cost`` from its group and the cost table
valid when it was resolved; its ``attributed_change`` from the change it is
linked to or the service and window rule. A change's ``caused_incidents`` and
``caused_incident_cost`` are the same attribution seen from the change.
Everything is read once per computation, before the caller streams its rows.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, Connection, and_, case, func, or_, select, type_coerce

from daemon.models import CANONICAL_TABLES, UTCDateTime
from daemon.query_tuning import not_by_index
from daemon.settings import Config
from mapping.attribution import ChangeEnd, ChangeIndex
from mapping.calendar import CalendarChoice
from mapping.model import KINDS
from mapping.pricing import Pricing

Row = Mapping[str, Any]
ROWS_PER_FETCH = 5000

# Stored columns each derived field is computed from.
NEEDS: dict[str, dict[str, tuple[str, ...]]] = {
    "incident": {
        "sla_met": (
            "source",
            "source_id",
            "made_sla",
            "priority",
            "opened_at",
            "resolved_at",
            "assignment_group",
        ),
        "response_sla_met": (
            "source",
            "source_id",
            "priority",
            "opened_at",
            "first_response_at",
            "assignment_group",
        ),
        "tier": ("source", "assignment_group"),
        "unit_cost": ("source", "assignment_group", "priority", "resolved_at", "opened_at"),
        "attributed_change": ("source", "caused_by", "service", "opened_at"),
        "change_end": ("source", "caused_by", "service", "opened_at"),
    },
    "change": {
        "caused_incidents": ("source", "source_id"),
        "caused_incident_cost": ("source", "source_id"),
    },
}

ATTRIBUTION_COLUMNS = {
    "incident": ("source_id", "caused_by", "service", "opened_at"),
    "change": ("source_id", "service", "work_end", "closed_at"),
}
ATTRIBUTION_FIELDS = frozenset(
    {"attributed_change", "change_end", "caused_incidents", "caused_incident_cost"}
)


def uses_attribution(config: Config) -> bool:
    """Whether any metric reads an attribution field (else syncs skip the cross-kind lookups)."""
    return any(
        ATTRIBUTION_FIELDS & set(m.required_fields()) for m in config.catalogue.record_metrics()
    )


def stored_columns(kind: str, columns: Sequence[str]) -> tuple[list[str], list[str]]:
    """(stored columns to select, derived columns to fill) for the columns a metric reads."""
    derived = [c for c in columns if c in KINDS[kind].derived]
    stored = {c for c in columns if c not in derived}
    for name in derived:
        stored.update(NEEDS[kind][name])
    return sorted(stored), derived


def change_index(conn: Connection, config: Config) -> ChangeIndex:
    """Every implemented (not cancelled) change: id, service, when its work ended."""
    table = CANONICAL_TABLES["change"]
    ended = type_coerce(func.coalesce(table.c.work_end, table.c.closed_at), UTCDateTime())
    query = select(table.c.source, table.c.source_id, table.c.service, ended).where(
        table.c.deleted_at.is_(None), or_(table.c.state.is_(None), table.c.state != "cancelled")
    )
    changes = (
        ChangeEnd(source, source_id, service, end)
        for source, source_id, service, end in conn.execute(query)
    )
    return ChangeIndex(changes, config.catalogue.attribution.window_hours)


def pricing(conn: Connection, config: Config) -> Pricing:
    """Tiers from the catalogue, else from the sources' group records: the live group with
    the id, else the lowest tier of the live groups with the name (as the grouped queries'
    lookup has it, whatever order the groups come in)."""
    table = CANONICAL_TABLES["group"]
    query = select(table.c.source, table.c.source_id, table.c.name, table.c.tier).where(
        table.c.deleted_at.is_(None), table.c.tier.is_not(None)
    )
    tiers: dict[tuple[str, str], str] = {}
    by_name: dict[tuple[str, str], str] = {}
    for source, source_id, name, tier in conn.execute(query):
        tiers[(source, source_id)] = tier
        if name:
            known = by_name.get((source, name))
            by_name[(source, name)] = tier if known is None else min(known, tier)
    for key, tier in by_name.items():
        tiers.setdefault(key, tier)
    return Pricing(config.catalogue, tiers, config.zone)


class Deriver:
    """Adds the derived columns a computation asked for to each streamed row."""

    def __init__(
        self,
        conn: Connection,
        config: Config,
        kind: str,
        cohort: str,
        derived: Sequence[str],
        lo: datetime,
        hi: datetime,
    ) -> None:
        self._derived = set(derived)
        self._steps: list[Callable[[dict[str, Any]], None]] = []
        if kind == "incident":
            if self._derived & {"sla_met", "response_sla_met"}:
                self._steps.append(_sla_step(conn, config, cohort, lo, hi))
            price = pricing(conn, config) if self._derived & {"tier", "unit_cost"} else None
            if price is not None:
                self._steps.append(_price_step(price))
            if self._derived & {"attributed_change", "change_end"}:
                self._steps.append(_attribution_step(change_index(conn, config)))
        elif kind == "change" and self._derived:
            counts, costs = caused_incidents(conn, config, lo, hi)

            def caused(record: dict[str, Any]) -> None:
                key = (record["source"], record["source_id"])
                record["caused_incidents"] = counts.get(key, 0)
                record["caused_incident_cost"] = costs.get(key, 0.0)

            self._steps.append(caused)

    def __call__(self, row: Row) -> Row:
        record = dict(row)
        for step in self._steps:
            step(record)
        return record


def _price_step(price: Pricing) -> Callable[[dict[str, Any]], None]:
    def step(record: dict[str, Any]) -> None:
        tier = price.tier(record)
        record["tier"] = tier
        record["unit_cost"] = price.unit_cost(record, tier)

    return step


def _attribution_step(index: ChangeIndex) -> Callable[[dict[str, Any]], None]:
    def step(record: dict[str, Any]) -> None:
        found = index.attribute(record)
        record["attributed_change"], record["change_end"] = found if found else (None, None)

    return step


def caused_incidents(
    conn: Connection, config: Config, lo: datetime, hi: datetime
) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], float]]:
    """Per change: incidents attributed to it and their summed unit cost.

    Candidates are incidents linked to a change explicitly, or opened after
    ``lo`` minus nothing and before ``hi`` plus the window on a service: an
    incident attributed by the rule opened after its change ended.
    """
    index = change_index(conn, config)
    price = pricing(conn, config)
    table = CANONICAL_TABLES["incident"]
    window = timedelta(hours=config.catalogue.attribution.window_hours)
    columns = sorted({*NEEDS["incident"]["unit_cost"], *NEEDS["incident"]["attributed_change"]})
    by_rule = and_(
        table.c.caused_by.is_(None),
        table.c.service.is_not(None),
        table.c.opened_at >= lo,
        table.c.opened_at < hi + window,
    )
    query = select(*(table.c[c] for c in columns)).where(
        table.c.deleted_at.is_(None), or_(table.c.caused_by.is_not(None), by_rule)
    )
    counts: Counter[tuple[str, str]] = Counter()
    costs: dict[tuple[str, str], list[float]] = defaultdict(list)
    for row in conn.execute(query.execution_options(yield_per=ROWS_PER_FETCH)):
        record = cast(Row, row._mapping)
        found = index.attribute(record)
        if found is None:
            continue
        key = (record["source"], found[0])
        counts[key] += 1
        cost = price.unit_cost(record, price.tier(record))
        costs[key].append(cost or 0.0)
    # fsum: the total does not depend on the order the database returned the incidents
    return dict(counts), {key: math.fsum(parts) for key, parts in costs.items()}


def sla_record_sources(config: Config) -> list[str]:
    """Sources whose incidents take "SLA met" from their SLA cycles (mapping ``sla_attainment``)."""
    return [
        name
        for name, spec in config.mappings.items()
        if spec.uses_sla_records(config.settings.sources[name].streams)
    ]


def _sla_step(
    conn: Connection, config: Config, cohort: str, lo: datetime, hi: datetime
) -> Callable[[dict[str, Any]], None]:
    """``sla_met`` / ``response_sla_met`` per the source's ``sla_attainment`` (None = no SLA).

    From SLA cycles: met when no non-cancelled cycle of that type breached. From a
    clock (``goals``): met when the business hours to resolution (to first response)
    stay within the priority's goal. From the incident's ``made_sla`` flag otherwise
    (which knows no response SLA)."""
    by_cycles = set(sla_record_sources(config))
    breached = _breaches(conn, by_cycles, cohort, lo, hi) if by_cycles else {}
    catalogue = config.catalogue
    goals: dict[str, tuple[CalendarChoice, dict[str, float], dict[str, float]]] = {}
    for name, spec in config.mappings.items():
        if spec.sla_attainment == "goals" and spec.sla_goals is not None:
            choice = CalendarChoice(
                catalogue.calendars(),
                catalogue.business_hours.default,
                catalogue.business_hours.by_group,
                fixed=spec.sla_goals.calendar,
            )
            goals[name] = (choice, spec.sla_goals.resolution, spec.sla_goals.response)

    def within(
        choice: CalendarChoice, goal: float | None, record: Mapping[str, Any], end: str
    ) -> bool | None:
        start, stop = record.get("opened_at"), record.get(end)
        clock = choice.for_row(record.get("assignment_group"))
        if goal is None or start is None or stop is None or clock is None:
            return None
        return clock.hours(start, stop) <= goal

    def step(record: dict[str, Any]) -> None:
        source = record["source"]
        if source in by_cycles:
            for column, sla_type in (("sla_met", "resolution"), ("response_sla_met", "response")):
                hit = breached.get((source, record["source_id"], sla_type))
                record[column] = None if hit is None else not hit
        elif source in goals:
            choice, resolution, response = goals[source]
            priority = record.get("priority")
            record["sla_met"] = within(
                choice, resolution.get(priority or ""), record, "resolved_at"
            )
            record["response_sla_met"] = within(
                choice, response.get(priority or ""), record, "first_response_at"
            )
        else:
            record["sla_met"], record["response_sla_met"] = record.get("made_sla"), None

    return step


def _breaches(
    conn: Connection, by_cycles: set[str], cohort: str, lo: datetime, hi: datetime
) -> dict[tuple[str, str, str], bool]:
    """(source, incident id, sla type) -> whether any non-cancelled cycle of that type breached."""
    breached: dict[tuple[str, str, str], bool] = {}
    sla, incident = CANONICAL_TABLES["sla"], CANONICAL_TABLES["incident"]
    any_breach = func.max(case((sla.c.breached.is_(True), 1), else_=0))
    query = (
        select(sla.c.source, sla.c.task, sla.c.sla_type, any_breach)
        .join(
            incident,
            and_(incident.c.source == sla.c.source, incident.c.source_id == sla.c.task),
        )
        .where(
            incident.c[cohort] >= lo,
            incident.c[cohort] < hi,
            incident.c.deleted_at.is_(None),
            sla.c.deleted_at.is_(None),
            sla.c.source.in_(sorted(by_cycles)),
            sla.c.sla_type.in_(["resolution", "response"]),
            or_(sla.c.stage.is_(None), sla.c.stage != "cancelled"),
        )
        .group_by(sla.c.source, sla.c.task, sla.c.sla_type)
    )
    for source, task, sla_type, breach in conn.execute(query):
        breached[(source, task, sla_type)] = bool(breach)
    return breached


def attribution_moments(
    conn: Connection, config: Config, kind: str, source: str, rows: Iterable[Row]
) -> Iterator[datetime]:
    """Moments whose periods a written incident or change moves on the other side.

    An incident moves its change's periods (I7, F5: the change's end, or any change on
    its service that ended within the window before it opened); a change moves the
    periods of the incidents attributed to it (I10: their resolution)."""
    window = timedelta(hours=config.catalogue.attribution.window_hours)
    rows = list(rows)
    if kind == "incident":
        linked = sorted({r["caused_by"] for r in rows if r.get("caused_by")})
        if linked:
            table = CANONICAL_TABLES["change"]
            query = select(table.c.work_end, table.c.closed_at).where(
                table.c.source == source, table.c.source_id.in_(linked)
            )
            for work_end, closed_at in conn.execute(query):
                for moment in (work_end, closed_at):
                    if moment is not None:
                        yield moment
        for row in rows:
            opened = row.get("opened_at")
            if row.get("service") and opened is not None and window:
                day = opened - window
                while day < opened:
                    yield day
                    day += timedelta(days=1)
                yield opened
    elif kind == "change":
        table = CANONICAL_TABLES["incident"]
        clauses = incidents_reached(config, rows)
        for start in range(0, len(clauses), CLAUSES_PER_QUERY):
            query = select(table.c.resolved_at).where(
                not_by_index(conn.dialect.name, table.c.source) == source,
                table.c.resolved_at.is_not(None),
                or_(*clauses[start : start + CLAUSES_PER_QUERY]),
            )
            for found in conn.execute(query):
                yield found[0]


CLAUSES_PER_QUERY = 200


def incidents_reached(config: Config, changes: Iterable[Row]) -> list[ColumnElement[bool]]:
    """Conditions on the incident table that hold the incidents these changes (as stored
    before a write, or as written) can be attributed: those linked to one, and those opened
    on a change's service in the window after it ended."""
    window = timedelta(hours=config.catalogue.attribution.window_hours)
    changes = list(changes)
    table = CANONICAL_TABLES["incident"]
    ids = sorted({r["source_id"] for r in changes if r.get("source_id")})
    clauses: list[ColumnElement[bool]] = [table.c.caused_by.in_(ids)] if ids else []
    for row in changes:
        ended = row.get("work_end") or row.get("closed_at")
        if row.get("service") and ended is not None and window:
            clauses.append(
                and_(
                    table.c.service == row["service"],
                    table.c.opened_at >= ended,
                    table.c.opened_at <= ended + window,
                )
            )
    return clauses
