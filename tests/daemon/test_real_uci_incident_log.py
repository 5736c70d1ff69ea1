"""A real ServiceNow incident log (UCI 498) through sandbox, pysnow, mapping and the metric engine.

The test reduces the audit log to the latest state of each incident (highest
``sys_mod_count``, then latest ``sys_updated_at``), loads those records into
the sandbox in the Table API's raw form, syncs them, and checks the engine's
figures against figures it computes straight from the CSV.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import shutil
import statistics
from collections import Counter
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from daemon import db
from daemon.compute import compute
from daemon.defaults import config_dir
from daemon.settings import load_config
from daemon.sync import resync
from mapping.metrics import MetricValue
from mapping.periods import date_range
from sandbox.servicenow import ServiceNowInstance, serve
from tests.conftest import SANDBOX_PASSWORD, SANDBOX_USER, SHARED_DATA, write_config

LOG = SHARED_DATA / "uci_incident_event_log.csv.gz"
pytestmark = pytest.mark.skipif(not LOG.is_file(), reason=f"real data not present at {LOG}")

UCI_TIME = "%d/%m/%Y %H:%M"
STATES = {  # UCI labels -> base-system incident_state codes
    "New": "1",
    "Active": "2",
    "Awaiting User Info": "3",
    "Awaiting Problem": "3",
    "Awaiting Vendor": "3",
    "Awaiting Evidence": "3",
    "Resolved": "6",
    "Closed": "7",
}
EXTRA_METRICS = """
[[metric]]
id = "OPENED"
name = "Incidents opened"
kind = "count"
direction = "lower"
record = "incident"
cohort = "opened_at"
breakdowns = ["priority"]

[[metric]]
id = "I1_MEAN"
name = "Time to resolve (mean)"
kind = "duration"
unit = "h"
direction = "lower"
record = "incident"
cohort = "resolved_at"
start = "opened_at"
end = "resolved_at"
statistic = "mean"
"""


def latest_states() -> list[dict[str, str]]:
    """One row per incident: its final update (the log holds one row per update)."""
    latest: dict[str, tuple[tuple[int, datetime], dict[str, str]]] = {}
    with gzip.open(LOG, "rt", encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            key = (int(row["sys_mod_count"]), datetime.strptime(row["sys_updated_at"], UCI_TIME))
            if row["number"] not in latest or key > latest[row["number"]][0]:
                latest[row["number"]] = (key, row)
    return [row for _, row in latest.values()]


def as_table_api(row: dict[str, str]) -> dict[str, str]:
    """The record as the Table API returns it raw: codes, UTC date-times, "" for missing."""

    def value(name: str) -> str:
        return "" if row[name] == "?" else row[name]

    def when(name: str) -> str:
        text = value(name)
        return datetime.strptime(text, UCI_TIME).strftime("%Y-%m-%d %H:%M:%S") if text else ""

    def code(name: str) -> str:  # "3 - Moderate" -> "3"
        return value(name).split(" - ")[0]

    return {
        "sys_id": hashlib.md5(row["number"].encode()).hexdigest(),  # a stable 32-hex id
        "number": row["number"],
        "state": STATES.get(row["incident_state"], ""),
        "incident_state": STATES.get(row["incident_state"], ""),
        "active": value("active"),
        "priority": code("priority"),
        "impact": code("impact"),
        "urgency": code("urgency"),
        "category": value("category"),
        "assignment_group": value("assignment_group"),
        "contact_type": value("contact_type"),
        "close_code": value("closed_code"),
        "opened_at": when("opened_at"),
        "sys_created_on": when("sys_created_at") or when("opened_at"),
        "resolved_at": when("resolved_at"),
        "closed_at": when("closed_at"),
        "sys_updated_on": when("sys_updated_at"),
        "sys_mod_count": value("sys_mod_count"),
        "reassignment_count": value("reassignment_count"),
        "reopen_count": value("reopen_count"),
        "made_sla": value("made_sla"),
        "problem_id": value("problem_id"),
        "caused_by": value("caused_by"),
        "rfc": value("rfc"),
        "knowledge": value("knowledge"),
        "assigned_to": value("assigned_to"),
        "resolved_by": value("resolved_by"),
    }


def expected(rows: list[dict[str, str]]) -> dict[str, Any]:
    """The figures, straight from the CSV strings."""
    resolved = [r for r in rows if r["resolved_at"] != "?"]
    hours = [
        (
            datetime.strptime(r["resolved_at"], UCI_TIME)
            - datetime.strptime(r["opened_at"], UCI_TIME)
        ).total_seconds()
        / 3600
        for r in resolved
    ]
    return {
        "count": len(rows),
        "by_priority": Counter(f"P{r['priority'].split(' - ')[0]}" for r in rows),
        "sla_met_pct": 100 * sum(r["made_sla"] == "true" for r in resolved) / len(resolved),
        "median_h": statistics.median(hours),
        "mean_h": statistics.fmean(hours),
        "reopen_pct": 100 * sum(int(r["reopen_count"]) > 0 for r in resolved) / len(resolved),
        "mean_reassignments": statistics.fmean(int(r["reassignment_count"]) for r in resolved),
        "resolved": len(resolved),
        "knowledge_pct": 100 * sum(r["knowledge"] == "true" for r in resolved) / len(resolved),
        "assigned": [r["assigned_to"] for r in resolved if r["assigned_to"] != "?"],
    }


def test_real_incident_log_figures_match_the_csv(tmp_path: Path) -> None:
    rows = latest_states()
    assert len(rows) == 24918  # the README's count of distinct incidents
    want = expected(rows)
    instance = ServiceNowInstance(users={SANDBOX_USER: SANDBOX_PASSWORD})
    instance.insert_many("incident", [as_table_api(r) for r in rows])
    with serve(instance) as snow:
        files = write_config(tmp_path, url=snow.url, db_url="sqlite:///uci.db", page_size=1000)
        catalogue = tmp_path / "metrics.toml"
        shutil.copyfile(config_dir() / "metrics.toml", catalogue)
        catalogue.write_text(catalogue.read_text() + EXTRA_METRICS)
        config = load_config(files.path, env=files.env)
        engine = db.create_db_engine(config.database_url)
        db.upgrade(engine)
        summary = resync(engine, config)
    assert summary.ok and summary.streams[0].written == len(rows)

    everything = date_range(date(2015, 1, 1), date(2018, 12, 31), config.zone)
    ids = ["OPENED", "C1", "I1", "I1_MEAN", "C4", "I5", "L1", "L6"]
    with engine.connect() as conn:
        values = compute(conn, config, {m: [everything] for m in ids})
    got: dict[tuple[str, str], MetricValue] = {(v.metric, v.dimension): v for v in values}

    assert got[("OPENED", "all")].value == want["count"]
    for priority, count in want["by_priority"].items():
        assert got[("OPENED", f"priority={priority}")].value == count
    assert got[("C1", "all")].value == pytest.approx(want["sla_met_pct"])
    assert got[("C1", "all")].denominator == want["resolved"]
    assert got[("I1", "all")].value == pytest.approx(want["median_h"])
    assert got[("I1_MEAN", "all")].value == pytest.approx(want["mean_h"])
    assert got[("I1", "all")].n == want["resolved"]  # no record fell out unexplained
    assert got[("C4", "all")].value == pytest.approx(want["reopen_pct"])
    assert got[("I5", "all")].value == pytest.approx(want["mean_reassignments"])
    assert got[("I1", "all")].exclusions == {}
    # Knowledge use (the log's "knowledge" flag) and tickets per agent, from the real log
    assert got[("L1", "all")].value == pytest.approx(want["knowledge_pct"])
    l6 = got[("L6", "all")]
    assert (l6.numerator, l6.denominator) == (len(want["assigned"]), len(set(want["assigned"])))
    assert l6.exclusions == {"missing assigned_to": want["resolved"] - len(want["assigned"])}
