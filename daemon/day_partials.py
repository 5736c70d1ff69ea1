"""Per-day partial groups of the counting and duration families: periods summed from days.

A family's grouped query (``daemon.aggregate``) over a year reads every record
of the year, and a sync that touches one day restates that day's week, month,
quarter and year. So the query's result is kept per local day of the
reporting zone, under a fingerprint of everything the grouping depends on
(catalogue, mappings, zone, group tiers): a period is then summed from its
days' rows, and only days never built, or marked dirty since, read records.

A day's rows are deleted whenever the day is marked dirty, by the same marks
that restate stored values, and ``itbsc recompute`` deletes them all. Only
periods made of whole local days use them (every grain and range is); the
groups are exactly the grouped query's, so the values are the same.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import Connection, and_, select
from sqlalchemy.dialects import postgresql, sqlite

from daemon import aggregate
from daemon.derive import sla_record_sources
from daemon.models import CANONICAL_TABLES
from daemon.settings import Config
from daemon.store import partial_table
from mapping.catalogue import MetricSpec
from mapping.metrics import MetricValue
from mapping.model import KINDS
from mapping.periods import Period, local_midnight

FORMAT = 1  # bump when what a row holds changes: older rows are then never read
BUILT = ""  # the grp of the row that says a day has been built

Family = Sequence[tuple[MetricSpec, Sequence[Period]]]


def family_values(conn: Connection, config: Config, family: Family) -> list[MetricValue]:
    """The family's values, from its days' partial groups (built where missing), or from
    the records when a period is not made of whole days or a group holds a timestamp."""
    days = whole_days_of(config.zone, [p for _, periods in family for p in periods])
    if days is None or not storable(family):
        return aggregate.grouped_family(conn, config, family)
    key = family_key(conn, config, family)
    built = _built_days(conn, key, days[0], days[-1])
    for run in _runs([d for d in days if d not in built]):
        _build(conn, config, family, key, run)
    return _read(conn, config, family, key, set(days))


def whole_days_of(zone: ZoneInfo, periods: Sequence[Period]) -> list[date] | None:
    """The local days the periods cover, or None when one begins or ends inside a day."""
    days: set[date] = set()
    for period in periods:
        first = period.start.astimezone(zone).date()
        end = period.end.astimezone(zone).date()
        if local_midnight(first, zone) != period.start:
            return None
        if local_midnight(end, zone) != period.end:
            return None
        days.update(first + timedelta(days=i) for i in range((end - first).days))
    return sorted(days) or None


def storable(family: Family) -> bool:
    """Whether every grouped field keeps its value through JSON (a timestamp compared
    by a filter would not, and such a family reads its records)."""
    metric = family[0][0]
    schema = KINDS[metric.record]
    clock = {metric.start, metric.end} if metric.kind == "duration" else set()
    empty = set.intersection(*(aggregate.emptiness_only(m) for m, _ in family))
    for name in {f for m, _ in family for f in m.required_fields()}:
        if name == metric.cohort or name in clock or name in empty:
            continue
        if schema.type_of(name) == "datetime":
            return False
    return True


def family_key(conn: Connection, config: Config, family: Family) -> str:
    """A fingerprint of all a family's groups depend on besides the records of the day."""
    groups = CANONICAL_TABLES["group"]
    tiers = conn.execute(
        select(groups.c.source, groups.c.source_id, groups.c.name, groups.c.tier)
        .where(groups.c.deleted_at.is_(None))
        .order_by(groups.c.source, groups.c.source_id)
    ).all()
    basis = {
        "format": FORMAT,
        "metrics": sorted(m.id for m, _ in family),
        "catalogue": config.catalogue.model_dump(mode="json"),
        "mappings": {name: m.model_dump(mode="json") for name, m in config.mappings.items()},
        "sla_from_cycles": sorted(sla_record_sources(config)),
        "zone": config.zone.key,
        "tiers": [list(t) for t in tiers],
    }
    return hashlib.blake2b(
        orjson.dumps(basis, option=orjson.OPT_SORT_KEYS), digest_size=16
    ).hexdigest()


def _built_days(conn: Connection, key: str, first: date, last: date) -> set[date]:
    t = partial_table.c
    query = select(t.day).where(
        t.family == key, t.grp == BUILT, t.day >= first.isoformat(), t.day <= last.isoformat()
    )
    return {date.fromisoformat(day) for day in conn.execute(query).scalars()}


def _runs(days: Sequence[date]) -> Iterator[list[date]]:
    """Consecutive days together: one grouped query per run."""
    run: list[date] = []
    for day in days:
        if run and day != run[-1] + timedelta(days=1):
            yield run
            run = []
        run.append(day)
    if run:
        yield run


def _build(conn: Connection, config: Config, family: Family, key: str, run: Sequence[date]) -> None:
    """Group the records of ``run`` by day and store the groups, then the built marks."""
    bounds = [local_midnight(d, config.zone) for d in [*run, run[-1] + timedelta(days=1)]]
    query = aggregate.family_query(conn, config, family, bounds)
    rows: list[dict[str, Any]] = []
    for row in conn.execute(query):
        record = dict(row._mapping)
        day = run[record.pop(aggregate.SEGMENT)]
        weight = record.pop(aggregate.COUNT)
        hours = record.pop(aggregate.HOURS, None)  # read only where start and end are valid
        hours = _hours_text(hours) if record.get(aggregate.STATUS) == "ok" else None
        fields = orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
        grp = hashlib.blake2b(fields, digest_size=16).hexdigest()
        rows.append(
            {
                "family": key,
                "day": day.isoformat(),
                "grp": grp,
                "fields": fields.decode(),
                "n": weight,
                "hours": hours,
            }
        )
    marks = [
        {"family": key, "day": d.isoformat(), "grp": BUILT, "fields": None, "n": 0} for d in run
    ]
    _insert(conn, [*rows, *[{**m, "hours": None} for m in marks]])


def _hours_text(hours: Any) -> str | None:
    """SQLite's group_concat text as it is; PostgreSQL's array as the same text, exactly."""
    if hours is None or isinstance(hours, str):
        return hours
    return ",".join(repr(float(h)) for h in hours)


def _insert(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Rows another computation built at the same moment (from the same records) are kept."""
    dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    statement = dialect_insert(partial_table).on_conflict_do_nothing(
        index_elements=["family", "day", "grp"]
    )
    for start in range(0, len(rows), 5000):
        conn.execute(statement, list(rows[start : start + 5000]))


def _read(
    conn: Connection, config: Config, family: Family, key: str, days: set[date]
) -> list[MetricValue]:
    t = partial_table.c
    first, last = min(days).isoformat(), max(days).isoformat()
    query = select(t.day, t.fields, t.n, t.hours).where(
        and_(t.family == key, t.day >= first, t.day <= last, t.grp != BUILT)
    )
    evaluations = aggregate.family_evaluations(config, family)
    metric = family[0][0]
    midnights: dict[str, datetime | None] = {}
    for day, fields, weight, hours in conn.execute(query):
        if day not in midnights:
            local = date.fromisoformat(day)
            midnights[day] = local_midnight(local, config.zone) if local in days else None
        moment = midnights[day]
        if moment is None:  # a gap between the periods asked for
            continue
        record = orjson.loads(fields)
        if metric.kind == "duration":
            record[aggregate.HOURS] = hours
        aggregate.feed(evaluations, metric, record, weight, moment)
    return [value for evaluation in evaluations for value in evaluation.results()]
