"""The cost, change, knowledge, automation and workload metrics on both sources, end to end.

Each expectation is computed straight from the emulator's own records (the
strings ServiceNow serves, the issues Jira serves), independently of the
mapping and the metric engine, then compared with what itbsc computed after
a real sync through the real client libraries.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from daemon import db
from daemon.compute import compute
from daemon.models import CANONICAL_TABLES
from daemon.settings import Config, load_config
from daemon.sync import resync
from mapping.metrics import MetricValue
from mapping.periods import Period, parse_period
from sandbox.generator import AUTOMATION_USER, PRIORITIES
from sandbox.jira import JiraInstance, serve_jira
from sandbox.jira_data import AUTOMATION, generate_jira
from sandbox.servicenow import RunningSandbox
from tests.conftest import ALL_STREAMS, write_config
from tests.connectors.test_jira_sync import EMAIL, END, TOKEN, write_jira_config
from tests.daemon.conftest import synced_store

YEAR = "2025-07-01..2026-06-30"
COSTS = {"L1": 22.0, "L2": 84.0, "L3": 160.0}
NEW_COSTS = {"L1": 24.0, "L2": 90.0, "L3": 170.0}
NEW_FROM = date(2026, 4, 1)


def local_config(directory: Path) -> None:
    """Explicit links only (the window rule has its own tests), a new cost entry inside the
    data, and a round-the-clock default calendar so business hours equal wall-clock ones."""
    catalogue = directory / "metrics.toml"
    text = catalogue.read_text()
    text = text.replace("window_hours = 12", "window_hours = 0")
    text = text.replace("valid_from = 2026-07-01", f"valid_from = {NEW_FROM.isoformat()}")
    text = text.replace('default = "office"', 'default = "24x7"')
    catalogue.write_text(text)


def value_of(engine: sa.Engine, config: Config, metric: str, period: Period) -> MetricValue:
    with engine.connect() as conn:
        values = compute(conn, config, {metric: [period]})
    (value,) = [v for v in values if v.dimension == "all"]
    return value


def sn_time(text: str) -> datetime | None:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC) if text else None


@pytest.fixture
def snow_synced(
    snow: RunningSandbox, db_url: str, tmp_path: Path
) -> Iterator[tuple[Config, sa.Engine]]:
    files = write_config(tmp_path, url=snow.url, db_url=db_url, streams=ALL_STREAMS)
    local_config(tmp_path)
    with synced_store(files.path, files.env) as config_and_engine:
        yield config_and_engine


def test_servicenow_cost_change_knowledge_automation_and_workload(
    snow: RunningSandbox, snow_synced: tuple[Config, sa.Engine]
) -> None:
    config, engine = snow_synced
    period = parse_period(YEAR, config.zone)
    records = snow.instance.records
    tiers = {g["sys_id"]: f"L{g['u_tier']}" for g in records("sys_user_group")}
    incidents = list(records("incident"))
    resolved = [
        r
        for r in incidents
        if r["state"] != "8" and r["resolved_at"] and period.contains(sn_time(r["resolved_at"]))  # type: ignore[arg-type]
    ]
    assert len(resolved) > 300

    def cost(r: dict[str, Any]) -> float:
        moment = sn_time(r["resolved_at"]) or sn_time(r["opened_at"])
        assert moment is not None
        table = NEW_COSTS if moment.astimezone(config.zone).date() >= NEW_FROM else COSTS
        return table[tiers[r["assignment_group"]]]

    def share(hits: int, total: int) -> float:
        return 100.0 * hits / total

    l1 = value_of(engine, config, "L1", period)
    assert l1.value == pytest.approx(
        share(sum(r["knowledge"] == "true" for r in resolved), len(resolved))
    )
    l3 = value_of(engine, config, "L3", period)
    automated = sum(r["resolved_by"] == AUTOMATION_USER for r in resolved)
    assert automated > 0 and l3.value == pytest.approx(share(automated, len(resolved)))
    l6 = value_of(engine, config, "L6", period)
    agents = {r["assigned_to"] for r in resolved}
    assert (l6.numerator, l6.denominator) == (len(resolved), len(agents))
    f3 = value_of(engine, config, "F3", period)
    first_level = sum(tiers[r["assignment_group"]] == "L1" for r in resolved)
    assert f3.value == pytest.approx(share(first_level, len(resolved)))
    f1 = value_of(engine, config, "F1", period)
    priced = [cost(r) for r in resolved if r["close_code"] != "Duplicate"]
    assert {COSTS["L1"], NEW_COSTS["L1"]} <= set(priced)  # both cost entries in play
    assert f1.value == pytest.approx(statistics.fmean(priced))
    c6 = value_of(engine, config, "C6", period)
    high = [
        (sn_time(r["resolved_at"]) - sn_time(r["opened_at"])).total_seconds() / 3600  # type: ignore[operator]
        for r in resolved
        if r["priority"] in ("1", "2") and not r.get("parent_incident")
    ]
    assert c6.value == pytest.approx(statistics.median(high))

    changes = {
        c["sys_id"]: c
        for c in records("change_request")
        if c["state"] != "4" and c["work_end"] and period.contains(sn_time(c["work_end"]))  # type: ignore[arg-type]
    }
    caused: dict[str, list[dict[str, Any]]] = {}
    for r in incidents:
        if r["caused_by"]:
            caused.setdefault(r["caused_by"], []).append(r)
    i7 = value_of(engine, config, "I7", period)
    failed = sum(1 for cid in changes if cid in caused)
    assert 0 < failed < len(changes)
    assert (i7.numerator, i7.denominator) == (failed, len(changes))
    f5 = value_of(engine, config, "F5", period)
    assert f5.value == pytest.approx(sum(cost(r) for cid in changes for r in caused.get(cid, [])))
    i10 = value_of(engine, config, "I10", period)
    work_end = {c["sys_id"]: sn_time(c["work_end"]) for c in records("change_request")}
    restore = [
        (sn_time(r["resolved_at"]) - work_end[r["caused_by"]]).total_seconds() / 3600  # type: ignore[operator]
        for r in resolved
        if r["caused_by"] and work_end.get(r["caused_by"])
    ]
    assert restore and i10.value == pytest.approx(statistics.median(restore))
    assert i10.exclusions["not attributed to a change"] == len(resolved) - len(
        [r for r in resolved if r["caused_by"]]
    )

    # I2: ServiceNow records no first response; it is when the incident's first completed
    # response cycle (task_sla) ended, placed by that moment.
    targets = {d["sys_id"]: d["target"] for d in records("contract_sla")}
    responded: dict[str, datetime] = {}
    for cycle in records("task_sla"):
        ended = sn_time(cycle["end_time"])
        if targets[cycle["sla"]] == "response" and cycle["stage"] == "completed" and ended:
            responded[cycle["task"]] = min(ended, responded.get(cycle["task"], ended))
    waits = [
        (responded[r["sys_id"]] - sn_time(r["opened_at"])).total_seconds() / 3600  # type: ignore[operator]
        for r in incidents
        if r["state"] != "8"
        and r["sys_id"] in responded
        and period.contains(responded[r["sys_id"]])
    ]
    i2 = value_of(engine, config, "I2", period)
    assert len(waits) > 300 and (i2.n, i2.value) == (
        len(waits),
        pytest.approx(statistics.median(waits)),
    )


def test_sla_clock_from_timestamps_agrees_with_the_sources_own_flag(
    snow: RunningSandbox, snow_synced: tuple[Config, sa.Engine]
) -> None:
    """ServiceNow's made_sla is "resolved within the priority's goal"; the clock computed from
    opened/resolved against the same goals on a 24x7 calendar must give the same C1."""
    config, engine = snow_synced
    mapping = config.path.parent / "mappings" / "servicenow.toml"
    goals = ", ".join(f"P{p} = {goal}" for p, (_, _, goal) in PRIORITIES.items())
    mapping.write_text(
        mapping.read_text().replace('sla_attainment = "auto"', 'sla_attainment = "goals"')
        + f'\n[sla_goals]\ncalendar = "24x7"\nresolution = {{ {goals} }}\n'
    )
    by_clock = load_config(config.path, env={"ITBSC_TEST_SNOW_PASSWORD": "x"})
    period = parse_period(YEAR, config.zone)
    flags = [
        r["made_sla"] == "true"
        for r in snow.instance.records("incident")
        if r["state"] != "8"
        and r["close_code"] != "Duplicate"
        and r["resolved_at"]
        and period.contains(sn_time(r["resolved_at"]))  # type: ignore[arg-type]
    ]
    c1 = value_of(engine, by_clock, "C1", period)
    assert (c1.numerator, c1.denominator) == (sum(flags), len(flags))
    # On office hours the same goals are met more often: nights and weekends do not count.
    office = config.path.parent / "metrics.toml"
    office.write_text(office.read_text().replace('calendar = "24x7"', ""))
    mapping.write_text(mapping.read_text().replace('calendar = "24x7"\n', 'calendar = "office"\n'))
    by_office = load_config(config.path, env={"ITBSC_TEST_SNOW_PASSWORD": "x"})
    office_c1 = value_of(engine, by_office, "C1", period)
    assert office_c1.value is not None and c1.value is not None
    assert office_c1.value > c1.value


def test_jira_links_labels_and_automation_feed_the_same_metrics(tmp_path: Path) -> None:
    instance = JiraInstance(flavour="cloud", users={EMAIL: TOKEN})
    dataset = generate_jira(1000, end=END, seed=11)
    instance.load(dataset)
    with serve_jira(instance) as site:
        config_path = write_jira_config(tmp_path, site.url)
        local_config(tmp_path)
        config = load_config(config_path, env={"ITBSC_TEST_JIRA_TOKEN": TOKEN})
        engine = db.create_db_engine(config.database_url)
        db.upgrade(engine)
        assert resync(engine, config).ok
    period = parse_period(YEAR, config.zone)
    issues = list(instance.issues.values())

    def kind(issue: dict[str, Any]) -> str:
        return str(issue["fields"]["issuetype"]["name"])

    resolved = [
        i
        for i in issues
        if kind(i) == "[System] Incident"
        and i["_resolved"] is not None
        and i["fields"]["status"]["name"] != "Canceled"
        and period.contains(i["_resolved"])
    ]
    assert len(resolved) > 100
    l1 = value_of(engine, config, "L1", period)
    labelled = sum("kb-used" in i["fields"]["labels"] for i in resolved)
    assert (l1.numerator, l1.denominator) == (labelled, len(resolved))

    def resolver(issue: dict[str, Any]) -> str:
        moves = [
            h
            for h in instance.histories[issue["id"]]
            if any(item.get("field") == "status" and item.get("to") == "5" for item in h["items"])
        ]
        return str(moves[-1]["author"]["accountId"])

    l3 = value_of(engine, config, "L3", period)
    automated = sum(resolver(i) == AUTOMATION for i in resolved)
    assert automated > 0 and (l3.numerator, l3.denominator) == (automated, len(resolved))
    changes = {
        i["id"]
        for i in issues
        if kind(i) == "[System] Change"
        and i["_resolved"] is not None
        and i["fields"]["status"]["name"] != "Canceled"
        and period.contains(i["_resolved"])
    }
    blamed = {
        link["inwardIssue"]["id"]
        for i in issues
        if kind(i) == "[System] Incident"
        for link in i["fields"]["issuelinks"]
        if "inwardIssue" in link and link["type"]["inward"] == "is caused by"
    }
    i7 = value_of(engine, config, "I7", period)
    assert len(changes & blamed) > 0
    assert (i7.numerator, i7.denominator) == (len(changes & blamed), len(changes))

    # I11: JSM links an incident to its problem with the same "is caused by" as to a change
    # (ahead of it here); the problem is told apart by the linked issue's type.
    def problem_linked(issue: dict[str, Any]) -> bool:
        return any(
            link["type"]["inward"] == "is caused by"
            and link["inwardIssue"]["fields"]["issuetype"]["name"] == "[System] Problem"
            for link in issue["fields"]["issuelinks"]
            if "inwardIssue" in link
        )

    i11 = value_of(engine, config, "I11", period)
    linked = sum(problem_linked(i) for i in resolved)
    assert linked > 0 and (i11.numerator, i11.denominator) == (linked, len(resolved))
    problems = {i["id"] for i in issues if kind(i) == "[System] Problem"}
    incident_table = CANONICAL_TABLES["incident"]
    with engine.connect() as conn:
        causes = set(
            conn.execute(
                sa.select(incident_table.c.caused_by).where(incident_table.c.caused_by.is_not(None))
            ).scalars()
        )
    assert causes and not causes & problems  # a problem is never taken for the change
    l6 = value_of(engine, config, "L6", period)
    assignees = {i["fields"]["assignee"]["accountId"] for i in resolved}
    assert (l6.numerator, l6.denominator) == (len(resolved), len(assignees))

    # I6, I8, L4 from JSM's "Change type" list and a "Failed" end, as for ServiceNow's
    # type and close code: changes closed in the year, cancelled ones left out.
    closed = [i for i in issues if i["id"] in changes]
    failed = sum(i["fields"]["status"]["name"] == "Failed" for i in closed)
    i6 = value_of(engine, config, "I6", period)
    assert failed > 0 and (i6.numerator, i6.denominator) == (len(closed) - failed, len(closed))
    types = [i["fields"]["customfield_10050"]["value"] for i in closed]
    i8 = value_of(engine, config, "I8", period)
    assert (i8.numerator, i8.denominator) == (types.count("Emergency"), len(closed))
    l4 = value_of(engine, config, "L4", period)
    assert (l4.numerator, l4.denominator) == (types.count("Standard"), len(closed))
    assert 0 < i8.numerator < l4.numerator < len(closed)
    engine.dispose()
