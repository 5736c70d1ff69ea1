"""How computations ask the databases to run them: the same answers, cheaper plans, no leftovers."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from daemon import aggregate, attribution_sql, attribution_store, db, store
from daemon.compute import compute
from daemon.models import CANONICAL_TABLES
from daemon.query_tuning import cohort_range
from daemon.settings import Config
from mapping.periods import parse_period, periods_between
from tests.helpers import on_connections

INCIDENTS = CANONICAL_TABLES["incident"]
YEAR_START = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture
def year_of_incidents(tmp_path: Path) -> Iterator[sa.Engine]:
    """A SQLite store with one incident resolved every 6 hours through 2025."""
    engine = db.create_db_engine(sa.make_url(f"sqlite:///{tmp_path / 'itbsc.db'}"))
    db.upgrade(engine)
    rows = [
        {
            "source": "snow",
            "source_id": f"inc{i:05d}",
            "updated_at": YEAR_START,
            "mapping_version": "test",
            "resolved_at": YEAR_START + timedelta(hours=6 * i, microseconds=i % 7),
        }
        for i in range(4 * 365)
    ]
    with engine.begin() as conn:
        conn.execute(sa.insert(INCIDENTS), rows)
        conn.exec_driver_sql("ANALYZE")
    yield engine
    engine.dispose()


def _plan_and_count(engine: sa.Engine, lo: datetime, hi: datetime) -> tuple[str, int, int]:
    with engine.connect() as conn:
        where = cohort_range(conn, INCIDENTS, "resolved_at", lo, hi)
        # Reading another column, as every metric query does: no index covers it.
        query = sa.select(INCIDENTS.c.source_id).where(*where)
        compiled = query.compile(conn, compile_kwargs={"literal_binds": False})
        plan = " ".join(
            str(row[-1])
            for row in conn.exec_driver_sql(
                f"EXPLAIN QUERY PLAN {compiled}", tuple(compiled.params.values())
            )
        )
        counted = len(conn.execute(query).all())
        plain = (
            sa.select(sa.func.count())
            .select_from(INCIDENTS)
            .where(INCIDENTS.c.resolved_at >= lo, INCIDENTS.c.resolved_at < hi)
        )
        expected = conn.execute(plain).scalar_one()
    return plan, counted, expected


def test_sqlite_reads_the_table_in_order_for_most_of_it_and_the_index_for_a_little(
    year_of_incidents: sa.Engine,
) -> None:
    """Walking the index row by row is the slow way to read most of a table."""
    # Boundaries a microsecond past a record (the 80th, at +3 µs): comparisons stay exact.
    wide_lo, wide_hi = (
        YEAR_START + timedelta(days=20, microseconds=4),
        YEAR_START.replace(year=2026),
    )
    plan, counted, expected = _plan_and_count(year_of_incidents, wide_lo, wide_hi)
    assert "SCAN itil_incident" in plan and "INDEX" not in plan, plan
    assert counted == expected == 4 * (365 - 20) - 1

    narrow_lo = YEAR_START + timedelta(days=100)
    plan, counted, expected = _plan_and_count(
        year_of_incidents, narrow_lo, narrow_lo + timedelta(days=7, microseconds=2)
    )
    assert "ix_itil_incident_resolved_at" in plan, plan
    assert counted == expected == 4 * 7 + 1


def _attributed_table_exists(conn: sa.Connection) -> bool:
    if conn.dialect.name == "postgresql":
        found = "SELECT count(*) FROM pg_tables WHERE tablename LIKE :name"
    else:
        found = "SELECT count(*) FROM sqlite_temp_master WHERE name LIKE :name"
    return bool(conn.execute(sa.text(found), {"name": "itbsc_attributed%"}).scalar())


def test_attribution_is_worked_out_once_and_its_table_dropped(
    synced: tuple[Config, sa.Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where no attribution is kept current, change failure rate, failed-change cost and
    time to restore share one attribution worked out in SQL (per connection: on one)."""
    config, engine = synced
    config = on_connections(config, 1)
    with engine.begin() as conn:  # a write since the last restatement
        conn.execute(sa.update(INCIDENTS).values(attribution_current=False))
    year = parse_period("2025-07-01..2026-06-30", config.zone)
    plan = dict.fromkeys(
        ["I7", "F5", "I10"], periods_between(year.start, year.end, "month", config.zone)
    )
    built: list[str] = []
    original = attribution_sql.attributions

    def counted(config: Config, dialect: str, scope=None):  # type: ignore[no-untyped-def]
        built.append(dialect)
        return original(config, dialect, scope)

    monkeypatch.setattr(attribution_sql, "attributions", counted)
    with engine.connect() as conn:
        first = compute(conn, config, plan)
        assert not _attributed_table_exists(conn)
        again = compute(conn, config, plan)  # the same connection: nothing left in the way
    assert len(built) == 2  # once per computation, not once per query
    assert [(v.metric, v.period, v.dimension, v.value, v.n) for v in first] == [
        (v.metric, v.period, v.dimension, v.value, v.n) for v in again
    ]
    assert any(v.metric == "I7" and v.n for v in first)
    assert any(v.metric == "I10" and v.n for v in first)


def test_attribution_covers_only_what_the_computed_periods_can_ask_about(
    synced: tuple[Config, sa.Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A quarter's change failure rate, failed-change cost and time to restore attribute
    only the incidents that quarter can ask about (a sync's restatement never works out
    past years), and give what the per-record path gives, which attributes every one:
    an incident opened in the window after the quarter, blamed on a change that ended in
    it, and one opened long before the quarter and restored in it."""
    config, engine = synced
    config = on_connections(config, 1)  # one attribution worked out, measured once
    quarter = parse_period("2026-Q1", config.zone)
    window = timedelta(hours=config.catalogue.attribution.window_hours)
    hour = timedelta(hours=1)
    last_change = quarter.end - 2 * hour  # the quarter's: blamed for what opens after it
    old_change = quarter.start - timedelta(days=200)
    changes = [
        _change("CHG-EDGE", "svc-edge", last_change),
        _change("CHG-OLD", "svc-old", old_change),
    ]
    incidents = [
        _incident("INC-AFTER", "svc-edge", quarter.end + window - 3 * hour, None),
        _incident("INC-LONG", "svc-old", old_change + hour, quarter.start + 5 * hour),
    ]
    with engine.begin() as conn:
        store.write_canonical(conn, CANONICAL_TABLES["change"], changes)
        store.write_canonical(conn, CANONICAL_TABLES["incident"], incidents)
    sizes: list[int] = []
    original = attribution_sql.attributions

    def measured(config: Config, dialect: str, scope=None):  # type: ignore[no-untyped-def]
        query = original(config, dialect, scope)
        with engine.connect() as other:
            sizes.append(len(other.execute(query).all()))
        return query

    plan = {"I7": [quarter], "F5": [quarter], "I10": [quarter]}
    can_group = aggregate.can_group
    with engine.connect() as conn:
        everything = len(conn.execute(original(config, conn.dialect.name)).all())
        monkeypatch.setattr(attribution_sql, "attributions", measured)
        grouped = compute(conn, config, plan)  # the writes left the kept ones stale: SQL
        monkeypatch.setattr(aggregate, "can_group", lambda *_: False)
        per_record = compute(conn, config, plan)
    assert len(sizes) == 1 and 0 < sizes[0] < everything
    with engine.begin() as conn:  # kept on the rows, the same scope reads the same answer
        attribution_store.refresh(conn, config)
    monkeypatch.setattr(aggregate, "can_group", can_group)
    with engine.connect() as conn:
        assert attribution_store.is_current(conn, config)
        kept = compute(conn, config, plan)

    def keyed(values: list) -> dict:  # type: ignore[type-arg]
        return {(v.metric, v.dimension): (v.n, v.exclusions) for v in values}

    assert keyed(grouped) == keyed(per_record) == keyed(kept)
    for field in ("value", "numerator"):  # SQLite's julianday hours differ in the last digits
        expected = {(v.metric, v.dimension): getattr(v, field) for v in per_record}
        for values in (grouped, kept):
            got = {(v.metric, v.dimension): getattr(v, field) for v in values}
            assert got == pytest.approx(expected), field
    by_key = {(v.metric, v.dimension): v for v in grouped}
    assert by_key[("I10", "all")].n >= 1  # the long one: restored in the quarter
    assert by_key[("I7", "all")].numerator >= 1  # the edge change caused the later one


def _change(source_id: str, service: str, ended: datetime) -> dict[str, object]:
    return {
        "source": "snow",
        "source_id": source_id,
        "updated_at": ended,
        "mapping_version": "test",
        "state": "closed",
        "type": "normal",
        "service": service,
        "work_end": ended,
        "closed_at": ended,
    }


def _incident(
    source_id: str, service: str, opened: datetime, resolved: datetime | None
) -> dict[str, object]:
    return {
        "source": "snow",
        "source_id": source_id,
        "updated_at": opened,
        "mapping_version": "test",
        "state": "resolved" if resolved else "in_progress",
        "priority": "P2",
        "service": service,
        "opened_at": opened,
        "resolved_at": resolved,
    }


def test_a_computation_hands_the_heap_back_to_the_garbage_collector(
    synced: tuple[Config, sa.Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The objects alive when a computation starts are left out of the collector's passes
    while it runs, and given back when it ends, failed or not: a service running for years
    would otherwise never collect what they hold in cycles."""
    config, engine = synced
    year = parse_period("2025-07-01..2026-06-30", config.zone)
    plan = {"I7": periods_between(year.start, year.end, "month", config.zone)}
    gc.unfreeze()
    set_aside: list[int] = []
    original = aggregate.grouped_family

    def watched(*args, **kwargs):  # type: ignore[no-untyped-def]
        set_aside.append(gc.get_freeze_count())
        return original(*args, **kwargs)

    monkeypatch.setattr(aggregate, "grouped_family", watched)
    with engine.connect() as conn:
        assert compute(conn, config, plan)
    assert set_aside and min(set_aside) > 0
    assert gc.get_freeze_count() == 0

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        set_aside.append(gc.get_freeze_count())
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(aggregate, "grouped_family", broken)
    with engine.connect() as conn, pytest.raises(RuntimeError, match="disk on fire"):
        compute(conn, config, plan)
    assert min(set_aside) > 0
    assert gc.get_freeze_count() == 0


def test_a_failed_computation_does_not_break_the_next(
    synced: tuple[Config, sa.Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    config, engine = synced
    year = parse_period("2025-07-01..2026-06-30", config.zone)
    plan = {"I7": periods_between(year.start, year.end, "month", config.zone)}
    with engine.connect() as conn:
        expected = compute(conn, config, plan)
    original = aggregate.grouped_family

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        original(*args, **kwargs)  # builds the attribution table, then fails
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(aggregate, "grouped_family", broken)
    with engine.connect() as conn, pytest.raises(RuntimeError, match="disk on fire"):
        compute(conn, config, plan)
    monkeypatch.setattr(aggregate, "grouped_family", original)
    with engine.connect() as conn:  # SQLite's pool hands back the same connection
        assert [v.value for v in compute(conn, config, plan)] == [v.value for v in expected]


@pytest.mark.postgres
def test_postgres_settings_last_only_for_the_computation(
    synced: tuple[Config, sa.Engine],
) -> None:
    config, engine = synced
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL settings")
    year = parse_period("2025", config.zone)
    with engine.connect() as conn:
        default = conn.exec_driver_sql("SHOW work_mem").scalar()
        conn.commit()
        compute(conn, config, {"C1": [year]})
        assert conn.exec_driver_sql("SHOW jit").scalar() == "off"
        assert conn.exec_driver_sql("SHOW work_mem").scalar() == "64MB"
        assert conn.exec_driver_sql("SHOW enable_sort").scalar() == "off"
        assert conn.exec_driver_sql("SHOW parallel_tuple_cost").scalar() == "0.01"
        conn.commit()
        assert conn.exec_driver_sql("SHOW work_mem").scalar() == default
        assert conn.exec_driver_sql("SHOW enable_sort").scalar() == "on"
        assert conn.exec_driver_sql("SHOW parallel_tuple_cost").scalar() == "0.1"


def test_grouped_sla_attainment_reads_no_cycle(
    synced: tuple[Config, sa.Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """C1 and C2 grouped by the database read the summary kept on the incident row (no
    join of the cycles, no table built first), and agree with the per-record path, which
    reads the cycles."""
    config, engine = synced
    month = parse_period("2026-03", config.zone)
    family = [(config.catalogue.by_id()[m], [month]) for m in ("C1", "C2")]
    statements: list[str] = []

    def seen(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", seen)
    try:
        with engine.connect() as conn:
            grouped = aggregate.grouped_family(conn, config, family)
    finally:
        sa.event.remove(engine, "before_cursor_execute", seen)
    assert statements and not any("itil_sla" in s or "CREATE" in s.upper() for s in statements)
    with engine.connect() as conn:
        monkeypatch.setattr(aggregate, "can_group", lambda *_: False)
        per_record = compute(conn, config, {"C1": [month], "C2": [month]})
    key = {(v.metric, v.dimension): (v.value, v.n, v.exclusions) for v in per_record}
    assert {(v.metric, v.dimension): (v.value, v.n, v.exclusions) for v in grouped} == key
    assert any(v.n for v in grouped if v.metric == "C2")


def test_sqlite_connections_sort_with_helper_threads(tmp_path: Path) -> None:
    """SQLite groups by sorting; helper threads sort a million rows' runs in parallel (a
    year of the catalogue at a million incidents: 17.1 s -> 11.6 s on two cores)."""
    engine = db.create_db_engine(sa.make_url(f"sqlite:///{tmp_path / 'sorted.db'}"))
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA threads").scalar() == db.SORT_THREADS >= 1
    engine.dispose()
