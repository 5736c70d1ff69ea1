"""Periods summed from per-day partial groups: the same values as the records, kept fresh."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from daemon import aggregate, day_partials, store
from daemon.compute import compute, recompute
from daemon.models import CANONICAL_TABLES
from daemon.settings import Config
from mapping.metrics import MetricValue
from mapping.periods import Period, parse_period, periods_between

YEAR = "2025-07-01..2026-06-30"
Key = tuple[str, str, str]


def _keyed(values: list[MetricValue]) -> dict[Key, tuple[Any, ...]]:
    return {
        (v.metric, v.period.label, v.dimension): (
            v.value,
            v.numerator,
            v.denominator,
            v.n,
            v.exclusions,
        )
        for v in values
    }


def _from_records(conn: sa.Connection, config: Config, plan: dict[str, list[Period]]) -> dict:  # type: ignore[type-arg]
    """The grouped query over the records themselves, no partial groups involved."""
    metrics = config.catalogue.by_id()
    family = [(metrics[m], periods) for m, periods in plan.items()]
    return _keyed(aggregate.grouped_family(conn, config, family))


def _partial_rows(conn: sa.Connection) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(store.partial_table)).scalar())


def _periods(config: Config) -> list[Period]:
    year = parse_period(YEAR, config.zone)
    return [
        year,
        *periods_between(year.start, year.end, "month", config.zone),
        *periods_between(year.start, year.end, "week", config.zone),
        parse_period("2025-11-03..2026-01-20", config.zone),
    ]


def test_every_family_from_days_equals_the_records_built_or_read(
    synced: tuple[Config, sa.Engine],
) -> None:
    """Built from the records, then read back: each gives what one grouped query gives."""
    config, engine = synced
    periods = _periods(config)
    groupable = [m for m in config.catalogue.record_metrics() if aggregate.can_group(config, m)]
    kinds = {(m.record, m.cohort) for m in groupable}
    families = [
        family
        for kind in sorted(kinds)
        for family in aggregate.families(
            [(m, periods) for m in groupable if (m.record, m.cohort) == kind]
        )
    ]
    assert {"C1", "C4", "I1", "I10", "I7", "F5"} <= {m.id for f in families for m, _ in f}
    with engine.connect() as conn:
        store.clear_partials(conn, None)
        for family in families:
            ids = ", ".join(m.id for m, _ in family)
            expected = _keyed(aggregate.grouped_family(conn, config, family))
            assert expected, ids
            built = _keyed(day_partials.family_values(conn, config, family))
            stored = _partial_rows(conn)
            read = _keyed(day_partials.family_values(conn, config, family))
            assert _partial_rows(conn) == stored, f"{ids}: read again, nothing is built"
            assert built == expected, ids
            assert read == expected, ids


def test_a_day_marked_dirty_is_rebuilt_and_no_other(
    synced: tuple[Config, sa.Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record changed without a mark is not seen (the groups are what the day was);
    once the sync marks its day, that day alone is read from the records again."""
    config, engine = synced
    year = parse_period(YEAR, config.zone)
    plan = {"C4": periods_between(year.start, year.end, "month", config.zone)}
    incidents = CANONICAL_TABLES["incident"]
    with engine.begin() as conn:
        before = _keyed(compute(conn, config, plan))
        source_id, resolved = conn.execute(
            sa.select(incidents.c.source_id, incidents.c.resolved_at)
            .where(
                incidents.c.resolved_at >= year.start,
                incidents.c.resolved_at < year.end,
                incidents.c.deleted_at.is_(None),
                incidents.c.state != "cancelled",
                incidents.c.reopen_count.is_not(None),
                sa.or_(incidents.c.close_code.is_(None), incidents.c.close_code != "duplicate"),
            )
            .order_by(incidents.c.source_id)
            .limit(1)
        ).one()
        conn.execute(
            incidents.update()
            .where(incidents.c.source_id == source_id)
            .values(close_code="duplicate")
        )
    with engine.connect() as conn:
        assert _keyed(compute(conn, config, plan)) == before

    day = resolved.astimezone(config.zone).date()
    with engine.begin() as conn:
        store.mark_dirty(conn, [day])
    runs: list[list[datetime]] = []
    original = aggregate.family_query

    def watched(conn, config, family, bounds):  # type: ignore[no-untyped-def]
        runs.append(list(bounds))
        return original(conn, config, family, bounds)

    monkeypatch.setattr(aggregate, "family_query", watched)
    with engine.connect() as conn:
        after = _keyed(compute(conn, config, plan))
        monkeypatch.setattr(aggregate, "family_query", original)
        assert after == _from_records(conn, config, plan)
    midnight = datetime.combine(day, datetime.min.time(), tzinfo=config.zone).astimezone(UTC)
    assert runs == [[midnight, midnight + timedelta(days=1)]]
    month = next(p.label for p in plan["C4"] if p.start <= resolved < p.end)
    was, now = before[("C4", month, "all")], after[("C4", month, "all")]
    assert now[4]["duplicate"] == was[4].get("duplicate", 0) + 1
    assert now[2] == was[2] - 1  # out of the denominator


def test_a_group_changing_tier_rebuilds_what_reads_tiers(
    synced: tuple[Config, sa.Engine],
) -> None:
    """Tiers come from the group records, which mark no incident's day: they are part of
    the fingerprint, so cost per ticket follows a group moving to another tier."""
    config, engine = synced
    year = parse_period(YEAR, config.zone)
    plan = {"F1": periods_between(year.start, year.end, "month", config.zone)}
    groups, incidents = CANONICAL_TABLES["group"], CANONICAL_TABLES["incident"]
    with engine.begin() as conn:
        before = _keyed(compute(conn, config, plan))
        busiest = conn.execute(
            sa.select(groups.c.id, groups.c.tier)
            .join(incidents, incidents.c.assignment_group == groups.c.source_id)
            .where(groups.c.deleted_at.is_(None), incidents.c.resolved_at.is_not(None))
            .group_by(groups.c.id, groups.c.tier)
            .order_by(sa.func.count().desc(), groups.c.id)
            .limit(1)
        ).one()
        other = "L3" if busiest.tier != "L3" else "L1"
        conn.execute(groups.update().where(groups.c.id == busiest.id).values(tier=other))
    with engine.connect() as conn:
        after = _keyed(compute(conn, config, plan))
        assert after == _from_records(conn, config, plan)
    assert after[("F1", "2025-10", "all")] != before[("F1", "2025-10", "all")]


def test_a_full_restatement_reads_the_records(synced: tuple[Config, sa.Engine]) -> None:
    """``itbsc recompute`` forgets every day's groups: what changed unmarked is restated."""
    config, engine = synced
    incidents = CANONICAL_TABLES["incident"]
    with engine.begin() as conn:
        assert _partial_rows(conn) > 0  # built by the sync's recompute
        conn.execute(incidents.update().values(reopen_count=0))
    recompute(engine, config, None)
    year = parse_period(YEAR, config.zone)
    with engine.connect() as conn:
        totals = store.read_metric_values(
            conn, metrics=["C4"], grain="month", start=year.start, end=year.end, dimension="all"
        )
        assert totals and all(v["numerator"] == 0 for v in totals)
        assert any(v["denominator"] for v in totals)


def test_whole_days_in_the_reporting_zone() -> None:
    """Periods cut at local midnights use the days' groups; anything else reads records."""
    zone = ZoneInfo("Europe/Berlin")
    march = parse_period("2026-03", zone)  # holds the switch to summer time
    days = day_partials.whole_days_of(zone, [march])
    assert days is not None and len(days) == 31 and days[0].isoformat() == "2026-03-01"
    shifted = Period(march.start + timedelta(hours=1), march.end, "range", "x")
    assert day_partials.whole_days_of(zone, [march, shifted]) is None
    assert day_partials.whole_days_of(ZoneInfo("UTC"), [march]) is None  # Berlin's midnights
