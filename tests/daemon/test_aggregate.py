"""The database-grouped path gives exactly what the per-record path gives, on both databases."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from daemon import aggregate
from daemon.compute import compute
from daemon.settings import Config
from mapping.metrics import MetricValue
from mapping.periods import Period, parse_period, periods_between


def test_every_metric_equals_its_per_record_value(
    synced: tuple[Config, sa.Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    config, engine = synced
    year = parse_period("2025-07-01..2026-06-30", config.zone)
    periods = [
        year,
        *periods_between(year.start, year.end, "month", config.zone),
        *periods_between(year.start, year.end, "week", config.zone),
        parse_period("2026-Q2", config.zone),
    ]
    groupable = [m for m in config.catalogue.metric if aggregate.can_group(config, m)]
    assert {
        "C1",
        "C2",
        "C4",
        "I5",
        "F1",
        "F3",
        "L1",
        "L3",
        "L6",
        "I3",
        "I4",
        "I4B",
        "I1",
        "I2",
        "I12",
        "I7",
        "F5",
        "I10",
        "C6",
    } <= {m.id for m in groupable}
    # Every metric but manual ones: grouped, population-selected and per-record paths alike.
    plan = {m.id: periods for m in config.catalogue.metric if not m.manual}
    with engine.connect() as conn:
        grouped = compute(conn, config, plan)
        per_record = _per_record(conn, config, plan, monkeypatch)
    assert _assert_same(grouped, per_record) > 1000


def _per_record(
    conn: sa.Connection,
    config: Config,
    plan: dict[str, list[Period]],
    monkeypatch: pytest.MonkeyPatch,
) -> list[MetricValue]:
    """The plan's values read record by record: nothing grouped, no population in SQL."""
    monkeypatch.setattr(aggregate, "can_group", lambda *_: False)
    monkeypatch.setattr(aggregate, "population_sql", lambda *_: None)
    return compute(conn, config, plan)


def _assert_same(grouped: list[MetricValue], per_record: list[MetricValue]) -> int:
    """Every value of the grouped path is the per-record path's; returns how many."""
    a = {(v.metric, v.period, v.dimension): v for v in grouped}
    b = {(v.metric, v.period, v.dimension): v for v in per_record}
    assert set(a) == set(b)
    for key, value in a.items():
        other = b[key]
        assert (value.n, value.exclusions) == (other.n, other.exclusions), key
        assert value.value == pytest.approx(other.value), key
        assert value.numerator == pytest.approx(other.numerator), key
        assert value.denominator == pytest.approx(other.denominator), key
    return len(a)


def test_stocks_sharing_a_scan_give_what_each_gives_alone(
    synced: tuple[Config, sa.Engine],
) -> None:
    """A backlog, its aged part and the created/resolved ratio (a flow from the same
    start, ending at resolution) share one grouped scan, over different periods."""
    config, engine = synced
    year = parse_period("2025-07-01..2026-06-30", config.zone)
    months = periods_between(year.start, year.end, "month", config.zone)
    weeks = periods_between(year.start, year.end, "week", config.zone)[5:30]
    metrics = config.catalogue.by_id()
    families = aggregate.interval_families([(metrics[m], months) for m in ("I4", "I4B", "I3")])
    assert [sorted(m.id for m, _ in f) for f in families] == [["I3", "I4", "I4B"]]
    every_week = periods_between(year.start, year.end, "week", config.zone)
    families = aggregate.interval_families([(metrics[m], every_week) for m in ("I4", "I3")])
    assert len(families) == 2  # their sums would take two reads, each grouping again
    other_start = metrics["I3"].model_copy(update={"id": "I3X", "start": "first_response_at"})
    families = aggregate.interval_families([(metrics["I4"], months), (other_start, months)])
    assert sorted(sorted(m.id for m, _ in f) for f in families) == [["I3X"], ["I4"]]
    quarters = periods_between(year.start, year.end, "quarter", config.zone)
    with engine.connect() as conn:
        together = compute(conn, config, {"I4": months, "I4B": weeks, "I3": quarters})
        alone = [
            *compute(conn, config, {"I4": months}),
            *compute(conn, config, {"I4B": weeks}),
            *compute(conn, config, {"I3": quarters}),
        ]

    def keyed(values: list) -> dict:  # type: ignore[type-arg]
        return {(v.metric, v.period, v.dimension): (v.value, v.n, v.exclusions) for v in values}

    assert keyed(together) == keyed(alone)
    assert any(v.metric == "I4B" and v.n for v in together)
    assert {v.period.grain for v in together if v.metric == "I4B"} == {"week"}


def test_stocks_over_more_periods_than_one_query_sums_read_them_in_several(
    synced: tuple[Config, sa.Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A recompute over years of weeks needs more summed columns than one query should
    carry: the stocks and flows read them in several queries and give the same values."""
    config, engine = synced
    year = parse_period("2025-07-01..2026-06-30", config.zone)
    weeks = periods_between(year.start, year.end, "week", config.zone)
    plan = {"I3": weeks, "I4": weeks, "I4B": weeks}
    statements: list[str] = []

    def seen(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
        statements.append(statement)

    with engine.connect() as conn:
        whole = compute(conn, config, plan)
        monkeypatch.setattr(aggregate, "MAX_PARTS", 7)
        sa.event.listen(engine, "before_cursor_execute", seen)
        try:
            chunked = compute(conn, config, plan)
        finally:
            sa.event.remove(engine, "before_cursor_execute", seen)

    def keyed(values: list) -> dict:  # type: ignore[type-arg]
        return {(v.metric, v.period, v.dimension): (v.value, v.n, v.exclusions) for v in values}

    assert keyed(chunked) == keyed(whole)
    assert sum("positions" in s for s in statements) > 20  # 53 weeks, 7 sums a query
    assert any(v.n for v in whole if v.metric == "I4B")


def test_a_duration_shares_the_query_of_metrics_grouped_by_the_same_fields(
    synced: tuple[Config, sa.Engine],
) -> None:
    """Time to resolve joins the reopen-rate family and time to restore the SLA family
    (one sort of the table each on SQLite, not two); two durations never share a query,
    nor does a duration with a metric reading its start."""
    config, _ = synced
    metrics = config.catalogue.by_id()
    year = [parse_period("2026", config.zone)]

    def grouped(ids: list[str]) -> list[list[str]]:
        found = aggregate.families([(metrics[i], year) for i in ids])
        return sorted(sorted(m.id for m, _ in f) for f in found)

    shipped = ["C1", "C2", "C4", "I1", "I5", "L1", "I10", "F1", "F3", "L3"]
    assert grouped(shipped) == [
        ["C1", "C2", "F1", "F3", "I10", "L3"],
        ["C4", "I1", "I5", "L1"],
    ]
    assert grouped(["I1", "I1"]) == [["I1"], ["I1"]]  # one duration a query
    month = [parse_period("2026-03", config.zone)]  # a restatement: the month, not the year
    apart = aggregate.families([(metrics["C4"], month), (metrics["I1"], year)])
    assert sorted(sorted(m.id for m, _ in f) for f in apart) == [["C4"], ["I1"]]
    opened_reader = metrics["I1"].model_copy(update={"id": "X", "kind": "count"})
    found = aggregate.families(
        [(metrics["C4"], year), (metrics["I1"], year), (opened_reader, year)]
    )
    assert sorted(sorted(m.id for m, _ in f) for f in found) == [["C4", "I1"], ["X"]]


def test_a_record_resolved_before_it_opened_is_excluded_in_its_own_period(
    synced: tuple[Config, sa.Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The grouped path stands a group's start and end in for its records: a reversed
    one must keep its resolution moment, or its exclusion lands in the month before."""
    from datetime import timedelta

    from daemon import store
    from daemon.models import CANONICAL_TABLES

    config, engine = synced
    march, february = parse_period("2026-03", config.zone), parse_period("2026-02", config.zone)
    resolved = march.start + timedelta(days=10)
    reversed_incident = {
        "source": "snow",
        "source_id": "INC-REVERSED",
        "updated_at": resolved,
        "mapping_version": "test",
        "state": "resolved",
        "priority": "P3",
        "assignment_group": "g-reversed",
        "opened_at": resolved + timedelta(hours=3),
        "resolved_at": resolved,
    }
    with engine.begin() as conn:
        store.write_canonical(conn, CANONICAL_TABLES["incident"], [reversed_incident])
    plan = {"I1": [february, march], "C4": [february, march]}
    with engine.connect() as conn:
        grouped = compute(conn, config, plan)
        monkeypatch.setattr(aggregate, "can_group", lambda *_: False)
        per_record = compute(conn, config, plan)

    def keyed(values: list) -> dict:  # type: ignore[type-arg]
        return {(v.metric, v.period, v.dimension): (v.n, v.exclusions) for v in values}

    assert keyed(grouped) == keyed(per_record)
    reason = "resolved_at before opened_at"
    i1 = {(v.period, v.dimension): v for v in grouped if v.metric == "I1"}
    assert i1[(march, "assignment_group=g-reversed")].exclusions == {reason: 1}
    assert reason not in i1[(february, "all")].exclusions


def test_business_hours_grouped_run_on_each_groups_calendar(
    synced: tuple[Config, sa.Engine], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """C6 counts business hours per record on its group's calendar, grouped or not: a
    round-the-clock group's incidents must count their nights and weekends."""
    from daemon.models import CANONICAL_TABLES
    from daemon.settings import load_config

    config, engine = synced
    table = CANONICAL_TABLES["incident"]
    with engine.connect() as conn:
        busiest = conn.execute(
            sa.select(table.c.assignment_group)
            .where(table.c.priority.in_(["P1", "P2"]), table.c.resolved_at.is_not(None))
            .group_by(table.c.assignment_group)
            .order_by(sa.func.count().desc(), table.c.assignment_group)
            .limit(1)
        ).scalar_one()
    catalogue = tmp_path / "metrics.toml"
    text = catalogue.read_text(encoding="utf-8")
    assert "\nby_group = {}\n" in text
    catalogue.write_text(
        text.replace("\nby_group = {}\n", f'\nby_group = {{ "{busiest}" = "24x7" }}\n')
    )
    by_group = load_config(tmp_path / "itbsc.toml", need_source_secrets=False)
    year = parse_period("2025-07-01..2026-06-30", config.zone)
    plan = {"C6": [year, *periods_between(year.start, year.end, "quarter", config.zone)]}
    with engine.connect() as conn:
        office = {(v.period, v.dimension): v for v in compute(conn, config, plan)}
        grouped = {(v.period, v.dimension): v for v in compute(conn, by_group, plan)}
        monkeypatch.setattr(aggregate, "can_group", lambda *_: False)
        per_record = {(v.period, v.dimension): v for v in compute(conn, by_group, plan)}
    assert grouped.keys() == per_record.keys()
    for key, value in grouped.items():
        assert (value.n, value.exclusions) == (per_record[key].n, per_record[key].exclusions), key
        assert value.value == pytest.approx(per_record[key].value), key
        assert value.numerator == pytest.approx(per_record[key].numerator), key
    # the group's nights and weekends now count: more hours in all
    assert grouped[(year, "all")].numerator > office[(year, "all")].numerator


def test_values_outside_their_fields_lists_are_grouped_as_they_are(
    synced: tuple[Config, sa.Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite folds few-valued fields into one number from the values each can take; a
    coded field a mapping leaves unmapped, a count past the numbered ones or a tier the
    configuration does not name must still be counted as itself, never guessed."""
    config, engine = synced
    with engine.begin() as conn:
        incidents = sa.table(
            "itil_incident",
            sa.column("id"),
            sa.column("state"),
            sa.column("reassignment_count"),
            sa.column("reopen_count"),
        )
        ids = [row.id for row in conn.execute(sa.select(incidents.c.id).limit(40))]
        conn.execute(
            incidents.update()
            .where(incidents.c.id.in_(ids[:20]))
            .values(state="Awaiting vendor", reassignment_count=300)
        )
        conn.execute(
            incidents.update().where(incidents.c.id.in_(ids[20:])).values(reopen_count=999)
        )
        conn.exec_driver_sql(
            "UPDATE itil_group SET tier = 'Tier 9' WHERE id IN (SELECT min(id) FROM itil_group)"
        )
    year = parse_period("2025-07-01..2026-06-30", config.zone)
    months = periods_between(year.start, year.end, "month", config.zone)
    plan = dict.fromkeys(("C1", "C4", "C5", "F3", "I1", "I3", "I4", "I4B", "I5"), months)
    statements: list[str] = []

    def seen(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
        statements.append(statement)

    with engine.connect() as conn:
        sa.event.listen(engine, "before_cursor_execute", seen)
        try:
            grouped = compute(conn, config, plan)
        finally:
            sa.event.remove(engine, "before_cursor_execute", seen)
        per_record = _per_record(conn, config, plan, monkeypatch)
    _assert_same(grouped, per_record)
    if engine.dialect.name == "sqlite":  # those fields were grouped by their values
        for field in ("state", "reassignment_count", "reopen_count", "tier"):
            assert any(f"AS {field}" in s and "_key0" in s for s in statements), field


def test_a_groups_tier_is_found_by_id_first_then_the_lowest_by_name(
    synced: tuple[Config, sa.Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The grouped queries' one tier lookup and the per-record pricing agree: a live
    group with the incident's group as its id wins over groups with it as their name;
    among several with the name, the lowest tier; a deleted group does not count."""
    from daemon.derive import pricing
    from daemon.models import CANONICAL_TABLES

    config, engine = synced
    groups, incidents = CANONICAL_TABLES["group"], CANONICAL_TABLES["incident"]
    moment = datetime(2025, 1, 1, tzinfo=UTC)

    def group(source_id: str, name: str, tier: str, deleted: bool = False) -> dict[str, Any]:
        return {
            "source": "snow",
            "source_id": source_id,
            "updated_at": moment,
            "mapping_version": "test",
            "name": name,
            "tier": tier,
            "tier_original": tier,
            "deleted_at": moment if deleted else None,
        }

    with engine.begin() as conn:
        conn.execute(
            groups.insert(),
            [
                group("Desk", "Alpha", "L3"),
                group("b1", "Desk", "L1"),  # its name is another group's id: the id wins
                group("c1", "Shared", "L2"),
                group("c2", "Shared", "L1"),  # two with the name: the lowest
                group("Gone", "Old", "L3", deleted=True),
                group("e1", "Gone", "L2"),  # the id's group is deleted: by name
            ],
        )
        ids = [r.id for r in conn.execute(sa.select(incidents.c.id).order_by(incidents.c.id))]
        for i, name in enumerate(("Desk", "Shared", "Gone")):
            chosen = ids[i::3][:30]
            conn.execute(
                incidents.update().where(incidents.c.id.in_(chosen)).values(assignment_group=name)
            )
        tiers = pricing(conn, config)
    assert [
        tiers.tier({"source": "snow", "assignment_group": g}) for g in ("Desk", "Shared", "Gone")
    ] == ["L3", "L1", "L2"]
    year = parse_period("2025-07-01..2026-06-30", config.zone)
    plan = {metric: [year] for metric in ("F1", "F3")}
    with engine.connect() as conn:
        grouped = compute(conn, config, plan)
        per_record = _per_record(conn, config, plan, monkeypatch)
    _assert_same(grouped, per_record)
    assert {"tier=L1", "tier=L2", "tier=L3"} <= {v.dimension for v in grouped}


def _moments_read(
    db_url: str, moments: list[datetime | None], read: Callable[[sa.Connection, Any], Any]
) -> list[Any]:
    """``read(conn, column)`` over a table of ``moments`` stored as the store stores them
    (``UTCDateTime``), one value per moment, in their order."""
    from daemon.models import UTCDateTime

    engine = sa.create_engine(db_url)
    table = sa.Table(
        "moments",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", UTCDateTime()),
    )
    try:
        with engine.begin() as conn:
            table.create(conn)
            conn.execute(table.insert(), [{"id": i, "at": m} for i, m in enumerate(moments)])
            query = sa.select(read(conn, table.c.at)).order_by(table.c.id)
            return list(conn.execute(query).scalars())
    finally:
        engine.dispose()


def test_stored_moments_come_back_as_exact_epoch_microseconds(db_url: str) -> None:
    """Business hours of grouped records are counted from the database's own epoch
    microseconds: every stored moment must give exactly its own, a fraction before 1970
    and a leap day included, or a duration would drift from its explanation."""
    moments: list[datetime | None] = [
        datetime(2026, 3, 29, 1, 59, 59, 999999, tzinfo=UTC),
        datetime(2024, 2, 29, 23, 0, 0, 1, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 58, 500000, tzinfo=UTC),
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(2107, 6, 1, 12, 30, 15, 250000, tzinfo=UTC),
    ]
    stored = _moments_read(db_url, moments, aggregate._epoch_micros)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert stored == [(m - epoch) // timedelta(microseconds=1) for m in moments if m]


@pytest.mark.parametrize("count", [0, 1, 2, 12, 57])
def test_a_moment_is_placed_between_the_boundaries_it_lies_between(db_url: str, count: int) -> None:
    """The database places every record among the periods' boundaries (a binary search
    written as nested CASEs): on a boundary counts as past it, none stays none."""
    first = datetime(2025, 6, 30, 22, tzinfo=UTC)
    bounds = [first + timedelta(days=7 * k, hours=k % 3) for k in range(count)]
    moments: list[datetime | None] = [
        first - timedelta(days=1),
        *bounds,
        *(b + timedelta(microseconds=1) for b in bounds),
        *(b - timedelta(microseconds=1) for b in bounds),
        first + timedelta(days=7 * count + 1),
        None,
    ]
    placed = _moments_read(db_url, moments, lambda _, at: aggregate._bucket(at, bounds))
    assert placed == [None if m is None else bisect_right(bounds, m) for m in moments]
