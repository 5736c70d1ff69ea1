"""Every ServiceNow stream through pysnow into the store, links intact; SLA attainment by choice."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from daemon import db, store
from daemon.compute import compute
from daemon.models import CANONICAL_TABLES
from daemon.settings import Config, load_config
from daemon.sync import resync
from mapping.periods import parse_period
from sandbox.servicenow import RunningSandbox
from tests.conftest import ALL_STREAMS, write_config

KIND_OF_STREAM = {
    "sys_user_group": "group",
    "change_request": "change",
    "problem": "problem",
    "incident": "incident",
    "task_sla": "sla",
    "sc_req_item": "request_item",
    "asmt_metric_result": "survey",
}


@pytest.fixture
def synced(snow: RunningSandbox, db_url: str, tmp_path: Path) -> Iterator[tuple[Config, sa.Engine]]:
    files = write_config(tmp_path, url=snow.url, db_url=db_url, page_size=250, streams=ALL_STREAMS)
    config = load_config(files.path, env=files.env)
    engine = db.create_db_engine(config.database_url)
    db.upgrade(engine)
    summary = resync(engine, config)
    assert summary.ok, [r.error for r in summary.streams]
    yield config, engine
    engine.dispose()


def canonical(engine: sa.Engine, kind: str) -> dict[str, dict[str, Any]]:
    table = CANONICAL_TABLES[kind]
    with engine.connect() as conn:
        return {r.source_id: dict(r._mapping) for r in conn.execute(sa.select(table))}


def test_every_stream_stores_exactly_the_source_records(
    snow: RunningSandbox, synced: tuple[Config, sa.Engine]
) -> None:
    _, engine = synced
    for stream, kind in KIND_OF_STREAM.items():
        at_source = {r["sys_id"] for r in snow.instance.records(stream)}
        assert at_source, stream
        assert set(canonical(engine, kind)) == at_source, stream
    with engine.connect() as conn:
        counts = store.stream_counts(conn)
    assert counts[("snow", "task_sla")] == (len(snow.instance.records("task_sla")), 0)


def test_links_between_records_are_kept(
    snow: RunningSandbox, synced: tuple[Config, sa.Engine]
) -> None:
    _, engine = synced
    incidents = canonical(engine, "incident")
    changes, problems = canonical(engine, "change"), canonical(engine, "problem")
    caused = [i for i in incidents.values() if i["caused_by"]]
    linked = [i for i in incidents.values() if i["problem_id"]]
    assert caused and all(i["caused_by"] in changes for i in caused)
    assert linked and all(i["problem_id"] in problems for i in linked)

    slas = canonical(engine, "sla").values()
    assert all(s["task"] in incidents and s["task_kind"] == "incident" for s in slas)
    assert {s["sla_type"] for s in slas} == {"response", "resolution"}
    p1 = next(s for s in slas if incidents[s["task"]]["priority"] == "P1")
    assert p1["name"].startswith("P1 ")  # the definition's name, dot-walked from contract_sla

    requests = {r["sys_id"] for r in snow.instance.records("sc_request")}
    items = canonical(engine, "request_item").values()
    assert all(i["request"] in requests for i in items)
    assert {i["item"] for i in items} <= {r["name"] for r in snow.instance.records("sc_cat_item")}

    surveys = canonical(engine, "survey").values()
    assert all(s["task"] in incidents and 1 <= s["rating"] <= 5 for s in surveys)
    groups = canonical(engine, "group")
    assert {g["tier"] for g in groups.values()} == {"L1", "L2", "L3"}
    assert {i["assignment_group"] for i in incidents.values()} <= set(groups)


def expected_c1(snow: RunningSandbox, config: Config, label: str, *, cycles: bool) -> float:
    """C1 straight from the sandbox strings: by the task_sla cycles or by made_sla."""
    period = parse_period(label, config.zone)
    breached: dict[str, bool] = {}
    definitions = {d["sys_id"]: d for d in snow.instance.records("contract_sla")}
    for cycle in snow.instance.records("task_sla"):
        if definitions[cycle["sla"]]["target"] == "resolution" and cycle["stage"] != "cancelled":
            breached[cycle["task"]] = breached.get(cycle["task"], False) or (
                cycle["has_breached"] == "true"
            )
    met = total = 0
    for r in snow.instance.records("incident"):
        if not r["resolved_at"] or r["state"] == "8" or r["close_code"] == "Duplicate":
            continue
        resolved = datetime.strptime(r["resolved_at"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        if not period.contains(resolved):
            continue
        flag = (not breached[r["sys_id"]]) if cycles else r["made_sla"] == "true"
        total += 1
        met += flag
    return 100.0 * met / total


def c1(engine: sa.Engine, config: Config, label: str) -> float | None:
    period = parse_period(label, config.zone)
    with engine.connect() as conn:
        values = compute(conn, config, {"C1": [period]})
    (value,) = [v for v in values if v.dimension == "all"]
    return value.value


def test_sla_attainment_follows_the_mapping_choice(
    snow: RunningSandbox, synced: tuple[Config, sa.Engine], tmp_path: Path
) -> None:
    config, engine = synced
    # Cycles and flag disagree for a third of May's resolved incidents: a clock the flag missed.
    may = parse_period("2026-05", config.zone)
    resolved_in_may = {
        r["sys_id"]
        for r in snow.instance.records("incident")
        if r["resolved_at"] and may.contains(datetime.fromisoformat(r["resolved_at"] + "+00:00"))
    }
    flipped = 0
    for cycle in snow.instance.records("task_sla"):
        if (
            cycle["task"] in resolved_in_may
            and cycle["has_breached"] == "false"
            and flipped % 3 == 0
        ):
            snow.instance.update("task_sla", cycle["sys_id"], has_breached="true")
        flipped += cycle["task"] in resolved_in_may
    assert resync(engine, config, stream="task_sla").ok

    by_cycles = expected_c1(snow, config, "2026-05", cycles=True)
    by_flag = expected_c1(snow, config, "2026-05", cycles=False)
    assert by_cycles < by_flag  # the two bases really differ here
    assert config.mappings["snow"].sla_attainment == "auto"  # task_sla synced -> cycles
    assert c1(engine, config, "2026-05") == pytest.approx(by_cycles)
    stored = {
        (row["period"]): row["value"]
        for row in _stored(engine, "C1")
        if row["grain"] == "month" and row["dimension"] == "all"
    }
    assert stored["2026-05"] == pytest.approx(by_cycles)  # the sync recomputed the month

    mapping = config.path.parent / "mappings" / "servicenow.toml"
    mapping.write_text(
        mapping.read_text().replace('sla_attainment = "auto"', 'sla_attainment = "made_sla"')
    )
    by_flag_config = load_config(config.path, env={"ITBSC_TEST_SNOW_PASSWORD": "x"})
    assert c1(engine, by_flag_config, "2026-05") == pytest.approx(by_flag)


def _stored(engine: sa.Engine, metric: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in store.read_metric_values(conn, metrics=[metric])]


def test_a_first_response_read_from_the_cycles_moves_with_them(
    snow: RunningSandbox, synced: tuple[Config, sa.Engine]
) -> None:
    """ServiceNow's first response is the end of the first completed response cycle: when a
    sync moves that end to another week, the incident follows, and the stored I2 of the week
    it left — one none of the incident's other moments falls in — and of the week it reached
    are restated to what a computation from scratch gives."""
    config, engine = synced
    zone = config.zone

    def local_week(text: str) -> str:
        year, week, _ = datetime.fromisoformat(text + "+00:00").astimezone(zone).isocalendar()
        return f"{year}-W{week:02d}"

    targets = {d["sys_id"]: d["target"] for d in snow.instance.records("contract_sla")}
    cycle = next(
        c
        for c in snow.instance.records("task_sla")
        if targets[c["sla"]] == "response"
        and c["stage"] == "completed"
        and c["end_time"].startswith("2026-05-1")
    )
    # The incident's own moments in March: only its first response places it in May.
    march = {"opened_at": "2026-03-02 08:00:00", "resolved_at": "2026-03-03 08:00:00"}
    snow.instance.update("incident", cycle["task"], **march, closed_at="2026-03-06 08:00:00")
    assert resync(engine, config, stream="incident").ok
    left, reached = local_week(cycle["end_time"]), "2026-W24"  # 10 June
    stored = canonical(engine, "incident")[cycle["task"]]["first_response_at"]
    assert stored == datetime.fromisoformat(cycle["end_time"] + "+00:00")
    snow.instance.update("task_sla", cycle["sys_id"], end_time="2026-06-10 09:30:00")
    assert resync(engine, config, stream="task_sla").ok

    moved = canonical(engine, "incident")[cycle["task"]]["first_response_at"]
    assert moved == datetime(2026, 6, 10, 9, 30, tzinfo=UTC)
    weeks = [parse_period(week, zone) for week in (left, reached)]
    with engine.connect() as conn:
        fresh = {
            v.period.label: v.value
            for v in compute(conn, config, {"I2": weeks})
            if v.dimension == "all"
        }
    kept = {
        row["period"]: row["value"]
        for row in _stored(engine, "I2")
        if row["grain"] == "week" and row["dimension"] == "all"
    }
    for week in (left, reached):
        assert kept.get(week) == pytest.approx(fresh[week]), week
