"""End to end on SQLite and PostgreSQL: sandbox over HTTP -> pysnow -> store -> metrics."""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from daemon import db, store
from daemon.models import itil_incident
from daemon.settings import Config, load_config
from daemon.sync import resync
from mapping.periods import parse_period
from sandbox.servicenow import RunningSandbox
from tests.conftest import write_config
from tests.helpers import source_truth, stored_raw


@pytest.fixture
def setup(snow: RunningSandbox, db_url: str, tmp_path: Path) -> Iterator[tuple[Config, sa.Engine]]:
    files = write_config(tmp_path, url=snow.url, db_url=db_url, page_size=100)
    config = load_config(files.path, env=files.env)
    engine = db.create_db_engine(config.database_url)
    db.upgrade(engine)
    yield config, engine
    engine.dispose()


def snapshot(engine: sa.Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every stored row except the columns that say *when* it was written."""
    volatile = {"id", "fetched_at", "run_id", "computed_at"}
    out = {}
    with engine.connect() as conn:
        for table in (store.raw_table, itil_incident, store.metric_table):
            columns = [c for c in table.c if c.name not in volatile]
            rows = conn.execute(sa.select(*columns)).all()
            out[table.name] = sorted((tuple(r) for r in rows), key=repr)
    return out


def expected_month(
    snow: RunningSandbox, config: Config, label: str
) -> tuple[float, float, float, int]:
    """I1, C1 and C4 for a month, computed straight from the sandbox strings (independent path)."""
    period = parse_period(label, config.zone)
    hours, sla, reopened, n_sla, n = [], 0, 0, 0, 0

    def ts(text: str) -> datetime:
        return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)

    for r in snow.instance.records("incident"):
        if not r["resolved_at"] or r["state"] == "8" or r["close_code"] == "Duplicate":
            continue
        resolved = ts(r["resolved_at"])
        if not period.contains(resolved):
            continue
        n += 1
        hours.append((resolved - ts(r["opened_at"])).total_seconds() / 3600)
        reopened += int(r["reopen_count"]) > 0
        if r["made_sla"]:
            n_sla += 1
            sla += r["made_sla"] == "true"
    return statistics.median(hours), 100 * sla / n_sla, 100 * reopened / n, n


def month_values(engine: sa.Engine, label: str) -> dict[str, Any]:
    with engine.connect() as conn:
        rows = store.read_metric_values(conn, grain="month", dimension="all")
    return {r["metric"]: r for r in rows if r["period"] == label}


def test_full_sync_stores_exactly_the_source_and_metrics_match_the_tickets(
    snow: RunningSandbox, setup: tuple[Config, sa.Engine]
) -> None:
    config, engine = setup
    summary = resync(engine, config, mode="full")
    assert summary.ok and summary.streams[0].pages == 6
    assert stored_raw(engine) == source_truth(snow, config)
    with engine.connect() as conn:
        assert (
            conn.execute(sa.select(sa.func.count()).select_from(itil_incident)).scalar_one() == 600
        )
    median_h, sla_pct, reopen_pct, n = expected_month(snow, config, "2026-05")
    stored = month_values(engine, "2026-05")
    assert stored["I1"]["value"] == pytest.approx(median_h)
    assert stored["I1"]["n"] == n
    assert stored["C1"]["value"] == pytest.approx(sla_pct)
    assert stored["C4"]["value"] == pytest.approx(reopen_pct)
    assert stored["I1"]["mapping_version"] == "catalogue-2026.11;servicenow-default-2026.12"


def test_resync_twice_leaves_identical_rows(setup: tuple[Config, sa.Engine]) -> None:
    config, engine = setup
    resync(engine, config, mode="full")
    first = snapshot(engine)
    resync(engine, config, mode="full")
    assert snapshot(engine) == first
    second = resync(engine, config)  # incremental: nothing new after the cursor
    assert second.streams[0].fetched == 0
    assert snapshot(engine) == first


def test_incremental_sync_reads_only_changes_and_restates_their_periods(
    snow: RunningSandbox, setup: tuple[Config, sa.Engine]
) -> None:
    config, engine = setup
    resync(engine, config)
    may = [
        r
        for r in snow.instance.records("incident")
        if r["resolved_at"].startswith("2026-05-1")
        and r["reopen_count"] == "0"
        and r["state"] == "7"
        and r["close_code"] != "Duplicate"
    ]
    before = month_values(engine, "2026-05")["C4"]
    changed = snow.instance.update("incident", may[0]["sys_id"], reopen_count="1")
    summary = resync(engine, config)
    assert summary.streams[0].fetched == 1
    with engine.connect() as conn:
        cursor = store.read_cursor(conn, "snow", "incident")
    assert cursor == {"sys_updated_on": changed["sys_updated_on"], "sys_id": changed["sys_id"]}
    after = month_values(engine, "2026-05")["C4"]
    assert after["numerator"] == before["numerator"] + 1
    assert after["value"] == pytest.approx(expected_month(snow, config, "2026-05")[2])


def test_records_changed_while_paging_are_neither_lost_nor_doubled(
    snow: RunningSandbox, setup: tuple[Config, sa.Engine]
) -> None:
    config, engine = setup
    ordered = sorted(
        snow.instance.records("incident"), key=lambda r: (r["sys_updated_on"], r["sys_id"])
    )
    early, late = ordered[5]["sys_id"], ordered[-5]["sys_id"]

    def meddle(request_number: int) -> None:
        if request_number == 3:  # between pages: move an already-read and a not-yet-read record
            snow.instance.update("incident", early, state="2")
            snow.instance.update("incident", late, state="3")

    snow.instance.before_list = meddle
    summary = resync(engine, config)
    assert summary.ok
    assert stored_raw(engine) == source_truth(snow, config)


def test_since_rereads_a_window_without_moving_the_cursor(setup: tuple[Config, sa.Engine]) -> None:
    config, engine = setup
    resync(engine, config)
    with engine.connect() as conn:
        cursor = store.read_cursor(conn, "snow", "incident")
    summary = resync(engine, config, mode="since", since=datetime(2026, 6, 20, tzinfo=UTC))
    assert 0 < summary.streams[0].fetched < 600
    with engine.connect() as conn:
        assert store.read_cursor(conn, "snow", "incident") == cursor


def test_periods_a_sync_touched_survive_a_crash_before_the_recompute(
    snow: RunningSandbox, setup: tuple[Config, sa.Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    config, engine = setup
    import daemon.sync as sync_module

    def killed(*_args: object, **_kwargs: object) -> int:
        raise KeyboardInterrupt  # the process dies after the last page, before metrics

    monkeypatch.setattr(sync_module, "recompute_dirty", killed)
    with pytest.raises(KeyboardInterrupt):
        resync(engine, config)
    with engine.connect() as conn:
        assert store.dirty_days(conn)
        assert not store.read_metric_values(conn)
    monkeypatch.undo()
    summary = resync(engine, config)  # nothing new to fetch, but the recorded days are redone
    assert summary.streams[0].fetched == 0 and summary.metric_values > 0
    median_h, sla_pct, _, n = expected_month(snow, config, "2026-05")
    stored = month_values(engine, "2026-05")
    assert stored["I1"]["value"] == pytest.approx(median_h) and stored["I1"]["n"] == n
    assert stored["C1"]["value"] == pytest.approx(sla_pct)
    with engine.connect() as conn:
        assert not store.dirty_days(conn)


def test_backlog_at_a_period_end_matches_the_source(
    snow: RunningSandbox, setup: tuple[Config, sa.Engine]
) -> None:
    from daemon.compute import compute

    config, engine = setup
    assert resync(engine, config).ok
    may = parse_period("2026-05", config.zone)

    def ts(text: str) -> datetime | None:
        return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC) if text else None

    open_at_end = aged = 0
    for r in snow.instance.records("incident"):
        opened, ended = (
            ts(r["opened_at"]),
            [t for t in (ts(r["resolved_at"]), ts(r["closed_at"])) if t],
        )
        if r["state"] == "8" or opened is None or opened >= may.end:
            continue
        if ended and min(ended) < may.end:
            continue
        open_at_end += 1
        aged += (may.end - opened).total_seconds() > 30 * 86400
    with engine.connect() as conn:
        values = {
            v.metric: v
            for v in compute(conn, config, {"I4B": [may], "I4": [may]})
            if v.dimension == "all"
        }
    assert open_at_end > 0
    assert values["I4B"].value == open_at_end
    assert (values["I4"].numerator, values["I4"].denominator) == (aged, open_at_end)
