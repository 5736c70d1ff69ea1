"""Metric values from rows the database has already grouped: the fast path for large stores.

Counting metrics (ratio, count, average, per_distinct) need only how many
records share each combination of the fields they read. The database groups
the records by those fields and by the stretch of time between two period
boundaries their cohort time falls in, and returns one row per group with its
count; the same ``Evaluation`` that classifies single records (and that
``explain`` uses) then classifies each group once, weighted by its count. So
the rules live in one place, and a million records become a few thousand rows.

Fields a filter only tests for emptiness (a problem link, say) are grouped by
emptiness, not by value. Derived fields are computed in SQL here the same way
``daemon.derive`` computes them per row: SLA met from the cycles' summary kept on
the incident row (``daemon.sla_summary``) or the flag,
the tier of the resolving group, the unit cost valid at resolution. A
duration's groups carry their records' hours (wall clock), or their start and
end moments for Python to count on the group's business calendar. SLA clocks
run from configured goals take the per-record path.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    Connection,
    Float,
    Integer,
    String,
    and_,
    case,
    cast,
    func,
    literal,
    literal_column,
    null,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.sql import FromClause

from daemon import attribution_store
from daemon.attribution_sql import attributed_source, in_scope
from daemon.computation_tables import span_for
from daemon.derive import ATTRIBUTION_FIELDS, sla_record_sources
from daemon.grouped_select import COUNT, Aggregate, grouped_select
from daemon.models import CANONICAL_TABLES, UTCDateTime
from daemon.packed_keys import (
    INT_CODES,
    Domain,
    Grouping,
    grouped_records,
    packs,
    retrying_unlisted,
)
from daemon.query_tuning import cohort_range, scan_column
from daemon.settings import Config
from mapping.calendar import BusinessClock
from mapping.catalogue import MetricSpec
from mapping.metrics import Evaluation, MetricValue
from mapping.model import KINDS
from mapping.periods import Period
from mapping.stock import Part, evaluate_interval_parts, part_names

GROUPABLE_KINDS = frozenset({"ratio", "count", "average", "per_distinct"})
INTERVAL_KINDS = frozenset({"stock", "stock_ratio", "flow_ratio"})
FAR_PAST = datetime(1900, 1, 1, tzinfo=UTC)
FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)
SQL_DERIVED = frozenset({"sla_met", "response_sla_met", "tier", "unit_cost", *ATTRIBUTION_FIELDS})
GROUPABLE_KINDS_WITH_VALUES = GROUPABLE_KINDS | {"sum"}


def can_group(config: Config, metric: MetricSpec) -> bool:
    """Whether the database can group this metric's records (else: the per-record path)."""
    derived = set(metric.required_fields()) & set(KINDS[metric.record].derived)
    if metric.kind in INTERVAL_KINDS:
        return not derived
    duration = metric.kind == "duration"
    if metric.kind not in GROUPABLE_KINDS_WITH_VALUES and not duration:
        return False
    if duration and {metric.start, metric.end} & (derived - {"change_end"}):
        return False
    if derived - SQL_DERIVED:
        return False
    if derived & {"sla_met", "response_sla_met"}:
        goals = any(m.sla_attainment == "goals" for m in config.mappings.values())
        return not goals  # an SLA clock runs per record
    return True


def _emptiness_only(metric: MetricSpec) -> set[str]:
    """Fields read only by ``is_null`` conditions: grouped by emptiness, not value."""
    uses: dict[str, set[str]] = {}
    for condition in _conditions(metric):
        uses.setdefault(condition.field, set()).add(condition.op)
    kept = {metric.cohort, *metric.breakdowns, metric.value or "", metric.per or ""}
    return {field for field, ops in uses.items() if ops == {"is_null"} and field not in kept}


def _emptiness_shared(metrics: Sequence[MetricSpec]) -> set[str]:
    """Fields the metrics sharing a query read only for emptiness: a field one of them
    reads by value is grouped by value; one the others do not read at all is not."""
    empty = {f for m in metrics for f in _emptiness_only(m)}
    by_value = {f for m in metrics for f in m.required_fields() if f not in _emptiness_only(m)}
    return empty - by_value


def _tier_lookup() -> FromClause:
    """Each group key's tier, as ``daemon.derive`` finds it: the live group with that id,
    else the lowest tier of the live groups with that name. One join, not one for ids
    and one for names: a million incidents joined twice had cost 0.8 s on PostgreSQL."""
    groups = CANONICAL_TABLES["group"]
    other = groups.alias("by_id")
    live = and_(groups.c.deleted_at.is_(None), groups.c.tier.is_not(None))
    by_id = select(groups.c.source, groups.c.source_id.label("key"), groups.c.tier).where(live)
    an_id = (
        select(other.c.id)
        .where(
            other.c.source == groups.c.source,
            other.c.source_id == groups.c.name,
            other.c.deleted_at.is_(None),
            other.c.tier.is_not(None),
        )
        .exists()
    )
    by_name = (
        select(groups.c.source, groups.c.name, func.min(groups.c.tier))
        .where(live, groups.c.name.is_not(None), ~an_id)
        .group_by(groups.c.source, groups.c.name)
    )
    return by_id.union_all(by_name).subquery("tier_lookup")


class _Expressions:
    """SQL for the derived fields, mirroring daemon.derive row by row."""

    def __init__(
        self,
        config: Config,
        table: FromClause,
        conn: Connection,
        scope: tuple[datetime, datetime] | None = None,
    ) -> None:
        self.config = config
        self.scope = scope  # the cohort range asked for: what attribution must cover
        self.table = table
        self.conn = conn
        self.joins: list[tuple[FromClause, ColumnElement[bool]]] = []
        self._tier: ColumnElement[Any] | None = None
        self._attributed: Any = None
        self._caused: Any = None
        self._kept: bool | None = None

    def sla(self, name: str) -> ColumnElement[Any]:
        """Met / not met / None from the source's cycles, or the incident's own flag."""
        any_breach = self._breach(name)
        t = self.table.c
        by_cycles = sla_record_sources(self.config)
        # no cycle leaves it empty
        from_cycles = case({1: literal(False), 0: literal(True)}, value=any_breach, else_=null())
        flag_column = t.made_sla if name == "sla_met" else null()
        if not by_cycles:
            return type_coerce(flag_column, Boolean())
        return type_coerce(
            case((t.source.in_(by_cycles), from_cycles), else_=flag_column), Boolean()
        )

    def _breach(self, name: str) -> ColumnElement[Any]:
        """1 when a live, uncancelled cycle of the SLA type was breached, 0 when none was,
        None when the record has no such cycle: kept on the incident row as syncs write
        its cycles (``daemon.sla_summary``), so no cycle is read here. Joining them took
        3 of C1's 3.5 s on PostgreSQL at a million incidents."""
        column = "sla_resolution_breach" if name == "sla_met" else "sla_response_breach"
        return self.table.c[column]

    def tier(self) -> ColumnElement[Any]:
        if self._tier is not None:
            return self._tier
        t = self.table.c
        lookup = _tier_lookup()
        self.joins.append(
            (lookup, and_(lookup.c.source == t.source, lookup.c.key == t.assignment_group))
        )
        tiers = self.config.catalogue.tiers
        configured: ColumnElement[Any] = (
            case(*((t.assignment_group == g, literal(v)) for g, v in tiers.groups.items()))
            if tiers.groups
            else null()
        )
        default = literal(tiers.default) if tiers.default is not None else null()
        found = func.coalesce(configured, lookup.c.tier, default)
        self._tier = type_coerce(
            case((t.assignment_group.is_(None), default), else_=found), String()
        )
        return self._tier

    def unit_cost(self) -> ColumnElement[Any]:
        t = self.table.c
        moment = func.coalesce(t.resolved_at, t.opened_at)
        branches = []
        for entry in sorted(self.config.catalogue.cost, key=lambda c: c.valid_from, reverse=True):
            since = datetime.combine(entry.valid_from, time(0), tzinfo=self.config.zone)
            key = self.tier() if entry.by == "tier" else t.priority
            default = literal(entry.default) if entry.default is not None else null()
            price = case(
                *((key == name, literal(cost)) for name, cost in entry.unit_cost.items()),
                else_=default,
            )
            branches.append((moment >= since, price))
        if not branches:
            return type_coerce(null(), Float())
        return type_coerce(case(*branches, else_=null()), Float())

    def kept(self) -> bool:
        """Whether the incidents' kept attributions are current (else: worked out in SQL)."""
        if self._kept is None:
            self._kept = attribution_store.is_current(self.conn, self.config)
        return self._kept

    def attributed(self) -> Any:
        """The incidents' attributions joined to the incident table (made once)."""
        if self._attributed is None:
            self._attributed = attributed_source(self.conn, self.config, self.scope)
            t = self.table.c
            on = and_(
                self._attributed.c.source == t.source,
                self._attributed.c.incident == t.source_id,
            )
            self.joins.append((self._attributed, on))
        return self._attributed

    def attribution(self, name: str) -> ColumnElement[Any]:
        """An incident's attributed change or its end: kept on its row when current."""
        t = self.table.c
        if name == "attributed_change":
            column = t.attributed_change if self.kept() else self.attributed().c.change
            return type_coerce(column, String())
        column = t.attributed_change_end if self.kept() else self.attributed().c.change_end
        return type_coerce(column, UTCDateTime())

    def caused(self) -> Any:
        """Per change: the incidents attributed to it and their summed unit cost (made once)."""
        if self._caused is None:
            incidents = CANONICAL_TABLES["incident"]
            inner = _Expressions(self.config, incidents, self.conn, self.scope)
            change = inner.attribution("attributed_change")
            cost = func.coalesce(inner.unit_cost(), 0.0)  # its joins exist from here on
            source: FromClause = incidents  # attributed incidents only; tiers may be missing
            attributed = inner._attributed
            for joined, on in inner.joins:
                inner_join = joined is attributed
                source = source.join(joined, on) if inner_join else source.outerjoin(joined, on)
            where: list[ColumnElement[bool]] = [
                incidents.c.deleted_at.is_(None),
                change.is_not(None),
            ]
            if self.scope is not None and attributed is None:  # what the SQL's scope holds
                window = timedelta(hours=self.config.catalogue.attribution.window_hours)
                reach = in_scope(incidents, self.scope, window)
                where.append(or_(incidents.c.caused_by.is_not(None), *reach))
            self._caused = grouped_select(
                self.conn,
                [incidents.c.source, change.label("change")],
                [Aggregate("incidents", lambda _: func.count()), Aggregate("cost", func.sum, cost)],
                source,
                where,
            ).subquery("caused")
            t = self.table.c
            on = and_(self._caused.c.source == t.source, self._caused.c.change == t.source_id)
            self.joins.append((self._caused, on))
        return self._caused

    def of(self, name: str) -> ColumnElement[Any]:
        if name in ("sla_met", "response_sla_met"):
            return self.sla(name)
        if name == "tier":
            return self.tier()
        if name in ("attributed_change", "change_end"):
            return self.attribution(name)
        if name == "caused_incidents":
            return type_coerce(func.coalesce(self.caused().c.incidents, 0), Integer())
        if name == "caused_incident_cost":
            return type_coerce(func.coalesce(self.caused().c.cost, 0.0), Float())
        return self.unit_cost()


def families(
    metrics: Sequence[tuple[MetricSpec, Sequence[Period]]],
) -> list[list[tuple[MetricSpec, Sequence[Period]]]]:
    """Groupable metrics of one record kind and cohort that can share one grouped query.

    Sharing a scan is what makes a million records cheap; it stays cheap while the
    fields grouped by are few-valued (codes, flags, counts, tiers). So metrics share a
    query when they group by the same many-valued fields (assignment group, agent ...).
    A family holds at most one duration (its hours are listed per group), and only when
    no other member reads the duration's start or end, which its groups stand in for."""
    out: list[list[tuple[MetricSpec, Sequence[Period]]]] = []
    by_key: dict[frozenset[str], list[list[tuple[MetricSpec, Sequence[Period]]]]] = {}
    for metric, periods in metrics:
        candidates = by_key.setdefault(_wide(metric), [])
        family = next((f for f in candidates if _fits(f, metric, periods)), None)
        if family is None:
            family = []
            candidates.append(family)
            out.append(family)
        family.append((metric, periods))
    return out


def _fits(
    family: Sequence[tuple[MetricSpec, Sequence[Period]]],
    metric: MetricSpec,
    periods: Sequence[Period],
) -> bool:
    members = [m for m, _ in family]
    durations = [m for m in members if m.kind == "duration"]
    # A duration reading a year beside metrics that need a day's month (a sync's
    # restatement) would make them read the year too: it keeps its own query.
    timed = bool(durations) or metric.kind == "duration"
    if timed and _span(periods) != _span([p for _, ps in family for p in ps]):
        return False
    if metric.kind == "duration":
        if durations:
            return False
        clock, others = _clock(metric), members
    elif durations:
        clock, others = _clock(durations[0]), [metric]
    else:
        return True
    return not any(clock & set(m.required_fields()) for m in others)


def _span(periods: Sequence[Period]) -> tuple[datetime, datetime] | None:
    return (min(p.start for p in periods), max(p.end for p in periods)) if periods else None


def _clock(duration: MetricSpec) -> set[str]:
    """The fields a duration's groups stand in for (its cohort stays each group's own)."""
    return {duration.start or "", duration.end or ""} - {duration.cohort}


LOW_DERIVED = frozenset({"sla_met", "response_sla_met", "tier", "unit_cost"})


def _wide(metric: MetricSpec) -> frozenset[str]:
    """The many-valued fields a metric groups by (free-text fields not read only for emptiness)."""
    schema = KINDS[metric.record]
    empty = _emptiness_only(metric)
    return frozenset(
        name
        for name in metric.required_fields()
        if name != metric.cohort
        and name not in empty
        and name not in LOW_DERIVED
        and schema.type_of(name) == "str"
    )


STATUS_DOMAIN = Domain(("no start", "no end", "reversed", "ok"), trusted=True)  # a duration's
PRESENT = Domain(("1",), trusted=True)  # a field read only for emptiness
BOOLEAN_DOMAIN = Domain((False, True))


def domain_of(config: Config, record: str, name: str, empty_only: set[str]) -> Domain | None:
    """The values a grouped field can take, when they are known before the query runs
    (``daemon.packed_keys``); None for free text, moments and amounts."""
    if name in empty_only:
        return PRESENT
    schema = KINDS[record]
    kind = schema.type_of(name)
    if name in ("sla_met", "response_sla_met") or kind == "bool":
        return BOOLEAN_DOMAIN
    if name == "tier":
        tiers = config.catalogue.tiers
        named = {*KINDS["group"].standard_values["tier"], *tiers.groups.values()}
        return Domain(tuple(sorted(named | ({tiers.default} if tiers.default else set()))))
    if name == "unit_cost":
        prices = {float(c) for e in config.catalogue.cost for c in e.unit_cost.values()}
        defaults = {float(e.default) for e in config.catalogue.cost if e.default is not None}
        return Domain(tuple(sorted(prices | defaults)))
    if name == "source":
        return Domain(tuple(sorted(config.settings.sources)))
    if kind == "code" and name in schema.standard_values:
        return Domain(tuple(sorted(schema.standard_values[name])))
    if kind == "int":
        return Domain(limit=INT_CODES)
    return None


def grouped_family(
    conn: Connection, config: Config, family: Sequence[tuple[MetricSpec, Sequence[Period]]]
) -> list[MetricValue]:
    """Values of metrics sharing one record kind and cohort, from one grouped query."""
    metrics = [m for m, _ in family]
    metric = metrics[0]
    table = CANONICAL_TABLES[metric.record]
    every = [p for _, periods in family for p in periods]
    bounds = sorted({p.start for p in every} | {p.end for p in every})
    cohort = table.c[metric.cohort]
    # the query reads bounds[0] <= cohort < bounds[-1]: the last boundary is never passed
    segment = _bucket(cohort, bounds[1:-1])
    derived = set(KINDS[metric.record].derived)
    empty_only = _emptiness_shared(metrics)
    expressions = _Expressions(config, table, conn, span_for(conn, bounds[0], bounds[-1]))
    durations = [m for m in metrics if m.kind == "duration"]
    if len(durations) > 1:
        raise ValueError("a family holds one duration: it carries each record's hours")
    timed = durations[0] if durations else None
    clock = _clock(timed) if timed else set()
    wanted = sorted({f for m in metrics for f in m.required_fields()})
    names = [f for f in wanted if f != metric.cohort and f not in clock]
    grouped: dict[str, ColumnElement[Any]] = {"_segment": segment}
    for name in names:
        column = expressions.of(name) if name in derived else table.c[name]
        if name in empty_only:  # derived ones too: an attributed change is tested, not shown
            column = case((column.is_(None), null()), else_=literal("1"))
        grouped[name] = column
    aggregates = [COUNT]
    if timed is not None:  # before the joins are read: its start may need one (I10)
        start, end = (
            expressions.of(name) if name in derived else table.c[name]
            for name in (timed.start or "", timed.end or "")
        )
        grouped["_status"] = case(
            (start.is_(None), "no start"),
            (end.is_(None), "no end"),
            (end < start, "reversed"),
            else_="ok",
        )
        if timed.clock == "business":  # the moments: hours are counted on a calendar
            aggregates.append(_moments_list(conn, start, end))
        else:
            aggregates.append(_hours_list(conn, start, end))
    source: FromClause = table
    for joined, on in expressions.joins:
        source = source.outerjoin(joined, on)
    domains: dict[str, Domain | None] = {}
    if packs(conn):
        domains = {"_segment": Domain(limit=len(bounds) - 1, trusted=True)}
        domains.update((name, domain_of(config, metric.record, name, empty_only)) for name in names)
        domains["_status"] = STATUS_DOMAIN
    # A metric alone reads only its population, when SQL can say it (its exclusions are
    # counted within it): high-priority time to restore reads a tenth of the incidents.
    population = population_sql(metric) if len(metrics) == 1 else None

    where = [
        *cohort_range(conn, table, metric.cohort, bounds[0], bounds[-1]),
        table.c.deleted_at.is_(None),
        *([population] if population is not None else []),
    ]

    def query(columns: Sequence[Any]) -> Any:
        return grouped_select(conn, columns, aggregates, source, where)

    def evaluate(as_is: frozenset[str]) -> list[MetricValue]:
        grouping = Grouping.of(grouped, domains, as_is)
        evaluations = [
            Evaluation(m, periods, config.catalogue.calendar_choice(m))
            for m, periods in family
            if m is not timed
        ]
        calendars = config.catalogue.calendar_choice(timed) if timed is not None else None
        timing = next((Evaluation(m, p, calendars) for m, p in family if m is timed), None)
        starts = bounds[:-1]
        # A group's fate is decided once for all its periods, for the metrics whose filters
        # read neither the cohort nor the duration's stand-ins (which vary by period).
        moving = {metric.cohort, *clock}
        memo = [not (moving & _deciding_fields(e.metric)) for e in evaluations]
        timing_memo = timing is not None and not (moving & _deciding_fields(timing.metric))
        for record, row in grouped_records(conn, grouping, query(grouping.columns)):
            index = record.pop("_segment")
            if index is None:
                continue
            weight = row._n
            hours = row._hours if timed is not None and timed.clock != "business" else None
            moments = row._moments if timed is not None and timed.clock == "business" else None
            fields = tuple(record.values())  # every field read but the cohort and the clock
            moment = starts[index]
            record[metric.cohort] = moment
            for evaluation, memoised in zip(evaluations, memo, strict=True):
                # none reads the duration's start or end
                evaluation.add(record, weight, fate_key=fields if memoised else None)
            if timing is None or timed is None:
                continue
            state = record.pop("_status")
            # A stand-in start and end that classify as this group's records did; the cohort
            # keeps the group's moment, so a reversed record stays in its period.
            start_at, end_at = moment, moment
            if state == "reversed" and timed.end == metric.cohort:
                start_at = moment + timedelta(seconds=1)
            elif state == "reversed":
                end_at = moment - timedelta(seconds=1)
            record[timed.start or ""] = None if state == "no start" else start_at
            record[timed.end or ""] = None if state == "no end" else end_at
            samples: Sequence[float] | None = None
            if state == "ok" and moments is not None:
                group_clock = (
                    calendars.for_row(record.get("assignment_group")) if calendars else None
                )
                samples = _business_hours(group_clock, moments) if group_clock else []
            elif state == "ok":
                samples = _samples(hours)
            timing.add(record, weight, samples, fate_key=fields if timing_memo else None)
        results = [value for evaluation in evaluations for value in evaluation.results()]
        return results + (timing.results() if timing is not None else [])

    # A field holding a value outside its domain: evaluated again, grouped by its values.
    return retrying_unlisted(evaluate)


def _deciding_fields(metric: MetricSpec) -> set[str]:
    """The fields a record's fate reads: its filters' fields, its value and what it counts."""
    tested = {condition.field for condition in _conditions(metric)}
    return tested | {name for name in (metric.value, metric.per) if name}


def _conditions(metric: MetricSpec) -> list[Any]:
    """Every condition of the metric's population, numerator and exclusions."""
    filters = [metric.population(), metric.numerator_filter(), *(f for _, f in metric.exclusions())]
    return [condition for f in filters for condition in f.conditions]


def _hours_list(conn: Connection, start: ColumnElement[Any], end: ColumnElement[Any]) -> Aggregate:
    """The records' hours from start to end, one aggregate per group (groups are kept
    apart by whether start and end are valid, so only valid groups' lists are read)."""
    if conn.dialect.name == "postgresql":
        # date_part is double precision; extract's numeric came back as a Decimal per record.
        # Sent packed (float8send: eight bytes each, big-endian) and read whole by
        # array('d'): an array_agg's text was printed and parsed number by number.
        hours = func.date_part("epoch", end - start) / 3600.0
        return Aggregate(
            "_hours",
            lambda h: func.string_agg(func.float8send(h), literal_column("''::bytea")),
            hours,
        )
    hours = (func.julianday(end) - func.julianday(start)) * 24.0
    return Aggregate("_hours", func.group_concat, hours)


def _moments_list(
    conn: Connection, start: ColumnElement[Any], end: ColumnElement[Any]
) -> Aggregate:
    """The records' starts and ends as UTC epoch microseconds, one aggregate per group
    (valid groups only): numbers a calendar places directly (``BusinessClock.hours_of_pairs``)."""
    if conn.dialect.name == "postgresql":  # eight bytes each, big-endian, read by array('q')
        pair = func.int8send(_epoch_micros(conn, start)).op("||")(
            func.int8send(_epoch_micros(conn, end))
        )
        return Aggregate(
            "_moments", lambda p: func.string_agg(p, literal_column("''::bytea")), pair
        )
    first, second = (cast(_epoch_micros(conn, m), String) for m in (start, end))
    return Aggregate("_moments", func.group_concat, first.op("||")(literal(",")).op("||")(second))


def _epoch_micros(conn: Connection, moment: ColumnElement[Any]) -> ColumnElement[Any]:
    """Microseconds since 1970 (UTC) of a stored moment, exactly (no float on the way)."""
    if conn.dialect.name == "postgresql":  # extract's numeric keeps every microsecond
        return cast(func.extract("epoch", moment) * 1_000_000, BigInteger)
    # stored as "YYYY-MM-DD HH:MM:SS.ffffff": whole seconds, then the fraction's digits
    # (strftime of the whole text would truncate a fraction before 1970 the wrong way)
    seconds = cast(func.strftime("%s", func.substr(moment, 1, 19)), BigInteger)
    return seconds * 1_000_000 + cast(func.substr(moment, 21, 6), BigInteger)


def _business_hours(clock: BusinessClock, moments: Any) -> list[float]:
    """Working hours of each (start, end) pair, on the group's calendar."""
    numbers: Sequence[int]
    if isinstance(moments, str):  # SQLite: "start,end,start,end,..."
        numbers = list(map(int, moments.split(",")))
    else:  # PostgreSQL: big-endian int8s, start and end by turns
        packed = array("q", bytes(moments))
        if sys.byteorder == "little":
            packed.byteswap()
        numbers = packed
    return clock.hours_of_pairs(numbers[0::2], numbers[1::2])


def _samples(hours: Any) -> Sequence[float]:
    if hours is None:
        return []
    if isinstance(hours, str):  # SQLite: "1.5,2.25,..."
        return list(map(float, hours.split(",")))
    packed = array("d", bytes(hours))  # PostgreSQL: big-endian float8s
    if sys.byteorder == "little":
        packed.byteswap()
    return packed


def interval_window(
    conn: Connection, table: Any, metric: MetricSpec, periods: Sequence[Period]
) -> Any:
    """Records a stock or flow metric can need for ``periods``: nothing that ended before them."""
    lo, hi = min(p.start for p in periods), max(p.end for p in periods)
    start = scan_column(conn, table, metric.start or "", lo, hi)
    if metric.kind == "flow_ratio":
        end = scan_column(conn, table, metric.end or "", lo, hi)
        return or_(and_(start >= lo, start < hi), and_(end >= lo, end < hi))
    first_end = min(p.end for p in periods)
    # A stock reaches back to the oldest open record: its start is no use to narrow by.
    start = scan_column(conn, table, metric.start or "", FAR_PAST, hi)
    ends = [scan_column(conn, table, c, first_end, FAR_FUTURE) for c in metric.closed_by]
    return and_(
        start < hi, or_(and_(*(e.is_(None) for e in ends)), *(e >= first_end for e in ends))
    )


def _earliest(columns: Sequence[ColumnElement[Any]]) -> ColumnElement[Any]:
    """The earliest non-empty of several timestamps (None when all are empty)."""
    earliest = columns[0]
    for column in columns[1:]:
        earliest = case(
            (earliest.is_(None), column),
            (column.is_(None), earliest),
            (column < earliest, column),
            else_=earliest,
        )
    return earliest


def _bucket(column: ColumnElement[Any], bounds: Sequence[datetime]) -> ColumnElement[Any]:
    """0 below the first boundary, k in [bounds[k-1], bounds[k]), len(bounds) above; None stays.

    Written as a binary search (CASE inside CASE): each row makes log2 comparisons, not
    one per boundary passed. A recompute's weeks, months, quarters and years are a few
    hundred boundaries; a year of months, a dozen (SQLite compared timestamp text 6.5
    times a row for those)."""

    def within(lo: int, hi: int) -> ColumnElement[Any]:
        """The place of a column known to lie in [bounds[lo-1], bounds[hi])."""
        if lo == hi:
            return literal(lo, Integer())
        middle = (lo + hi) // 2
        return case((column < bounds[middle], within(lo, middle)), else_=within(middle + 1, hi))

    return case((column.is_(None), null()), else_=within(0, len(bounds)))


def interval_families(
    members: Sequence[tuple[MetricSpec, Sequence[Period]]],
) -> list[list[tuple[MetricSpec, Sequence[Period]]]]:
    """Stocks of one record kind with the same start and closing fields share one scan
    (a backlog and its aged part, say), and so does one flow from the same start (the
    created/resolved ratio) while their sums fit one read: its end is grouped beside
    theirs. Other flows keep their own."""
    out: dict[Any, list[tuple[MetricSpec, Sequence[Period]]]] = {}
    flows = []
    for metric, periods in members:
        if metric.kind == "flow_ratio":
            flows.append((metric, periods))
        else:
            key = ("stock", metric.record, metric.start, tuple(metric.closed_by))
            out.setdefault(key, []).append((metric, periods))
    for metric, periods in flows:
        # Only while the parts fit one read: a second would group the records again.
        family = next(
            (
                f
                for f in out.values()
                if (f[0][0].record, f[0][0].start) == (metric.record, metric.start)
                and not any(m.kind == "flow_ratio" for m, _ in f)
                and len(_parts([*f, (metric, periods)])) <= MAX_PARTS
            ),
            None,
        )
        if family is None:
            out[("flow", metric.id)] = [(metric, periods)]
        else:
            family.append((metric, periods))
    return list(out.values())


MAX_PARTS = 240  # summed columns per query: a long recompute's weeks take several scans
FLOW_PARTS = frozenset({"started", "ended", "started or ended"})


def grouped_interval_family(
    conn: Connection, config: Config, members: Sequence[tuple[MetricSpec, Sequence[Period]]]
) -> list[MetricValue]:
    """Stock or flow metrics from records grouped by their fields, placed in the periods
    by the database.

    Every comparison a stock or flow makes is of a timestamp against a boundary (a
    period's start or end, or an end minus ``age_days``), so a record's part is decided
    by the boundaries its timestamps lie between. The database groups the records by
    their fields and those positions (the start's, the stocks' end's and a flow's end's),
    then sums per group of fields how many are open at each period's end (and aged), or
    started and ended in each period (``mapping.stock.part_names``); each group of fields
    is then classified once. Placing the position groups period by period in Python
    instead took 1.1 s at a million incidents (29,000 groups against 720). Metrics
    sharing the scan use the union of their boundaries, which decides each one's
    comparisons as its own would; each reads its own fields of the shared groups."""
    metrics = [m for m, _ in members]
    flows = [m for m in metrics if m.kind == "flow_ratio"]
    stocks = [m for m in metrics if m.kind != "flow_ratio"]
    metric = metrics[0]
    closings = {tuple(m.closed_by) for m in stocks}
    if len(flows) > 1 or len(closings) > 1 or len({(m.record, m.start) for m in metrics}) > 1:
        raise ValueError("a scan is shared by stocks of one start and closing, and one flow")
    table = CANONICAL_TABLES[metric.record]
    parts = _parts(members)
    bounds = sorted({moment for part in parts for moment in _moments(part)})
    start = table.c[metric.start or ""]
    grouped: dict[str, ColumnElement[Any]] = {"_start": _bucket(start, bounds)}
    if stocks:
        grouped["_end"] = _bucket(_earliest([table.c[c] for c in stocks[0].closed_by]), bounds)
    if flows:
        grouped["_flow_end"] = _bucket(table.c[flows[0].end or ""], bounds)
    positions = list(grouped)
    empty_only = _emptiness_shared(metrics)
    timestamps = {metric.start or "", *(c for m in metrics for c in m.closed_by)}
    timestamps |= {m.end or "" for m in flows}
    wanted = sorted({f for m in metrics for f in m.required_fields()})
    names = [f for f in wanted if f not in timestamps]
    for name in names:
        column: ColumnElement[Any] = table.c[name]
        if name in empty_only:
            column = case((column.is_(None), null()), else_=literal("1"))
        grouped[name] = column
    position_domain = Domain(limit=len(bounds) + 1, trusted=True)
    domains: dict[str, Domain | None] = {}
    if packs(conn):
        domains = dict.fromkeys(positions, position_domain)
        domains.update((name, domain_of(config, metric.record, name, empty_only)) for name in names)
    windows = [interval_window(conn, table, m, periods) for m, periods in members]
    index = {moment: k for k, moment in enumerate(bounds)}

    def run(
        as_is: frozenset[str],
    ) -> dict[tuple[Any, ...], tuple[dict[str, Any], dict[Part, float]]]:
        grouping = Grouping.of(grouped, domains, as_is)
        counted = grouped_select(
            conn,
            grouping.columns,
            [COUNT],
            table,
            [table.c.deleted_at.is_(None), start.is_not(None), or_(*windows)],
        ).subquery("positions")
        skip = 0
        if grouping.packed.names()[: len(positions)] == positions:
            # the positions lead the first key: taken apart here, the rest stays packed
            skip = len(positions)
            placed = _unpacked_positions(grouping, counted, positions, position_domain.size)
            fields = [placed.c[c.name] for c in placed.columns if c.name not in positions][1:]
        else:
            placed = counted
            fields = [placed.c[name] for name in grouping.raw if name not in positions]
        groups: dict[tuple[Any, ...], tuple[dict[str, Any], dict[Part, float]]] = {}
        for first_part in range(0, len(parts), MAX_PARTS):  # a long recompute's weeks
            chunk = parts[first_part : first_part + MAX_PARTS]
            sums = [
                func.sum(case((_placed(part, placed.c, index), placed.c._n), else_=0))
                for part in chunk
            ]
            query = select(*fields, *sums).group_by(*fields)
            for row in conn.execute(query):
                key = tuple(row[: len(fields)])
                if key not in groups:
                    groups[key] = (_interval_fields(grouping, positions, key, skip), {})
                # PostgreSQL sums a bigint as numeric: counts come back as Decimal
                groups[key][1].update(zip(chunk, map(int, row[len(fields) :]), strict=True))
        return groups

    groups = retrying_unlisted(run)
    return [
        value
        for m, periods in members
        for value in evaluate_interval_parts(m, groups.values(), periods)
    ]


def _parts(members: Sequence[tuple[MetricSpec, Sequence[Period]]]) -> list[Part]:
    """What the database sums for the members' periods (``mapping.stock.part_names``)."""
    return sorted(
        {
            part
            for m, periods in members
            for period in periods
            for part in part_names(m, period)
            if part[0] != "none"
        },
        key=repr,
    )


def _unpacked_positions(
    grouping: Grouping, counted: Any, positions: Sequence[str], size: int
) -> Any:
    """The counted groups with their positions taken out of the first key (the bucket, or
    empty), the first key's rest and the other keys and fields as they are."""
    first = counted.c._key0
    leading = grouping.packed.leading(first, len(positions))
    columns: list[Any] = [counted.c._n]
    for i, name in enumerate(positions):
        number = (leading // size ** (len(positions) - 1 - i)) % size
        columns.append(case((number == 0, null()), else_=number - 1).label(name))
    columns.append(grouping.packed.rest(first, len(positions)).label("_key0"))
    columns += [counted.c[f"_key{i}"] for i in range(1, len(grouping.packed.keys))]
    columns += [counted.c[name] for name in grouping.raw]
    return select(*columns).subquery("unpacked")


def _interval_fields(
    grouping: Grouping, positions: Sequence[str], key: tuple[Any, ...], skip: int
) -> dict[str, Any]:
    """A position-free group's fields from its keys (the first without ``skip`` positions)."""
    keys = len(grouping.packed.keys) if skip else 0
    values = grouping.packed.decode(key[:keys], skip) if skip else {}
    raw = [name for name in grouping.raw if name not in positions]
    values.update(zip(raw, key[keys:], strict=True))
    return values


def _moments(part: Part) -> list[datetime]:
    if part[0] in ("open at", "open and aged"):
        return list(part[1:])
    period: Period = part[1]
    return [period.start, period.end]


def _placed(part: Part, c: Any, index: dict[datetime, int]) -> Any:
    """The condition a position group meets to count in ``part`` (``mapping.stock.part_names``).

    A timestamp in bucket k lies in [bounds[k-1], bounds[k]): it is before bounds[j]
    exactly when k <= j, and at or after it when k > j."""
    name = part[0]
    start, end = c._start, c._flow_end if name in FLOW_PARTS else c._end  # a flow: its own
    if name in ("open at", "open and aged"):
        before, still_open = index[part[1]], index[part[-1]]
        return and_(start <= before, or_(end.is_(None), end > still_open))
    period: Period = part[1]
    lo, hi = index[period.start], index[period.end]
    started = and_(start > lo, start <= hi)
    ended = and_(end > lo, end <= hi)
    if name == "started":
        return started
    if name == "ended":
        return ended
    return or_(started, ended)


def population_sql(metric: MetricSpec) -> ColumnElement[bool] | None:
    """The metric's ``where`` as SQL, when it reads only stored fields (else None).

    Conditions keep the engine's meaning of an empty value: it satisfies only "not
    equal" and "not one of", so ``ne`` and ``not_in`` also let empty values through."""
    table = CANONICAL_TABLES[metric.record]
    clauses: list[ColumnElement[bool]] = []
    for condition in metric.population().conditions:
        if condition.field not in KINDS[metric.record].fields:
            return None
        column = table.c[condition.field]
        op, operand = condition.op, condition.operand
        if op == "is_null":
            clauses.append(column.is_(None) if operand else column.is_not(None))
        elif op == "in":
            clauses.append(column.in_(list(operand)))
        elif op == "not_in":
            clauses.append(or_(column.is_(None), column.not_in(list(operand))))
        elif op == "ne":
            clauses.append(or_(column.is_(None), column != operand))
        else:
            compare = {
                "eq": "__eq__",
                "gt": "__gt__",
                "ge": "__ge__",
                "lt": "__lt__",
                "le": "__le__",
            }
            clauses.append(getattr(column, compare[op])(operand))
    return and_(*clauses) if clauses else None
