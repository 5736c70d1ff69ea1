"""The CLI a user types: resync, metrics, scorecard, status, recompute, demo."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from daemon import store
from daemon.cli import app
from daemon.settings import load_config
from sandbox.servicenow import RunningSandbox
from tests.conftest import SANDBOX_PASSWORD, write_config

ENV = {"ITBSC_TEST_SNOW_PASSWORD": SANDBOX_PASSWORD}


@pytest.fixture
def synced(snow: RunningSandbox, tmp_path: Path) -> Path:
    files = write_config(tmp_path, url=snow.url, db_url="sqlite:///itbsc.db")
    result = CliRunner().invoke(app, ["--config", str(files.path), "resync"], env=ENV)
    assert result.exit_code == 0, result.output
    return files.path


def run(config: Path, *args: str) -> str:
    result = CliRunner().invoke(app, ["--config", str(config), *args], env=ENV)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_metrics_json_for_an_exact_range(synced: Path) -> None:
    objects = json.loads(
        run(
            synced,
            "metrics",
            "--metric",
            "C4",
            "--from",
            "2026-05-01",
            "--to",
            "2026-05-31",
            "--format",
            "json",
        )
    )
    (overall,) = [o for o in objects if o["dimension"] == "all"]
    assert {
        "metric",
        "grain",
        "period",
        "dimension",
        "value",
        "numerator",
        "denominator",
        "n",
    } <= set(overall)
    assert (overall["metric"], overall["grain"], overall["period"]) == (
        "C4",
        "range",
        "2026-05-01..2026-05-31",
    )
    stored = json.loads(
        run(synced, "metrics", "--metric", "C4", "--grain", "month", "--dimension", "all")
    )
    (may,) = [o for o in stored if o["period"] == "2026-05"]
    assert may["value"] == pytest.approx(overall["value"])  # the May range is the May month
    assert may["n"] == overall["n"] > 0


def test_scorecard_json_has_four_perspectives_and_no_invented_values(synced: Path) -> None:
    card = json.loads(run(synced, "scorecard", "--period", "2026-05", "--format", "json"))
    assert [p["id"] for p in card["perspectives"]] == [
        "customer",
        "financial",
        "internal",
        "learning",
    ]
    measures = {
        m["metric"]: m for p in card["perspectives"] for o in p["objectives"] for m in o["measures"]
    }
    assert set(measures) >= {"C1", "C2", "C4", "I1", "C5", "I6", "L4"}
    assert all(
        measures[m]["value"] is not None and measures[m]["status"] in {"green", "amber", "red"}
        for m in ("C1", "C4", "I1")
    )
    # Only incidents are synced: no SLA cycles, and made_sla says nothing about response.
    assert measures["C2"]["value"] is None and measures["C2"]["status"] == "grey"
    objectives = {o["id"]: o for p in card["perspectives"] for o in p["objectives"]}
    assert objectives["fix-it-first-time"]["initiatives"][0]["owner"] == "Service Desk lead"
    assert {"cause": "fix-it-first-time", "effect": "satisfied-users"} in card["links"]
    assert objectives["fix-it-first-time"]["status"] in {"green", "amber", "red"}
    # Budget variance needs manual inputs (none entered): no value. Cost per ticket comes from
    # the incidents and the cost table; the cost of change-caused incidents needs changes.
    assert measures["F8"]["value"] is None and measures["F8"]["status"] == "grey"
    assert measures["F1"]["value"] is not None and measures["F1"]["n"] > 0
    assert measures["F5"]["value"] is None and measures["F5"]["status"] == "grey"
    assert card["previous_period"] == "2026-04"


def test_scorecard_table_reads_without_colour(synced: Path) -> None:
    text = run(synced, "scorecard", "--period", "2026-05")
    for word in (
        "CUSTOMER",
        "FINANCIAL",
        "INTERNAL BUSINESS PROCESSES",
        "LEARNING AND GROWTH",
        "NO DATA",
    ):
        assert word in text
    assert "last successful sync: snow/incident" in text


def test_status_json_reports_each_stream(synced: Path) -> None:
    (row,) = json.loads(run(synced, "status", "--format", "json"))["streams"]
    assert row["records"] == 600
    assert row["last_run"]["outcome"] == "succeeded"
    assert row["cursor"]["sys_id"]


def test_status_says_when_kept_attributions_wait_for_a_restatement(synced: Path) -> None:
    kept = json.loads(run(synced, "status", "--format", "json"))["kept"]["attribution"]
    assert kept["current"] and kept["stale_incidents"] == 0  # the sync's restatement did it
    assert "attributed changes" not in run(synced, "status")
    engine = sa.create_engine(f"sqlite:///{synced.parent / 'itbsc.db'}")
    with engine.begin() as conn:  # as a sync page leaves them, before its restatement
        conn.execute(sa.text("UPDATE itil_incident SET attribution_current = 0 WHERE rowid <= 3"))
    engine.dispose()
    kept = json.loads(run(synced, "status", "--format", "json"))["kept"]["attribution"]
    assert not kept["current"] and kept["stale_incidents"] == 3
    assert "attributed changes: 3 incident(s) written since" in run(synced, "status")
    run(synced, "recompute")
    kept = json.loads(run(synced, "status", "--format", "json"))["kept"]["attribution"]
    assert kept["current"] and kept["stale_incidents"] == 0


def test_status_table_fits_a_terminal_and_gives_a_failure_whole(
    synced: Path, snow: RunningSandbox
) -> None:
    """One line per stream within 100 columns; the error of a failed run below the table,
    whole, and never the password."""
    snow.instance.users.clear()
    result = CliRunner().invoke(app, ["--config", str(synced), "resync"], env=ENV)
    assert result.exit_code == 1
    text = run(synced, "status")
    table = [line for line in text.splitlines() if line[:1] in "┏┃┡│└"]
    assert table and max(len(line) for line in table) <= 100
    (row,) = [line for line in table if "incident" in line]
    assert "failed 20" in row and " 600 " in row  # the failed run's time; nothing lost
    (note,) = [line for line in text.splitlines() if "last failure" in line]
    assert note.startswith("snow/incident: last failure 20") and "HTTP 401" in note
    assert SANDBOX_PASSWORD not in text


def test_recompute_remaps_stored_records_without_refetching(
    synced: Path, snow: RunningSandbox
) -> None:
    mapping = synced.parent / "mappings" / "servicenow.toml"
    mapping.write_text(mapping.read_text().replace('"3" = "P3"', '"3" = "P2"'))
    served = snow.instance.requests_served
    output = run(synced, "recompute")
    assert "re-mapped 600 record(s)" in output
    assert snow.instance.requests_served == served
    engine = sa.create_engine(f"sqlite:///{synced.parent / 'itbsc.db'}")
    with engine.connect() as conn:
        priorities = {
            r[0] for r in conn.execute(sa.text("select distinct priority from itil_incident"))
        }
    assert "P3" not in priorities


def test_failed_source_exits_1_keeps_data_and_hides_the_password(
    synced: Path, snow: RunningSandbox
) -> None:
    snow.instance.users.clear()
    result = CliRunner().invoke(app, ["--config", str(synced), "resync", "--full"], env=ENV)
    assert result.exit_code == 1
    assert "HTTP 401" in result.output and SANDBOX_PASSWORD not in result.output
    (row,) = json.loads(run(synced, "status", "--format", "json"))["streams"]
    assert row["records"] == 600
    assert row["last_run"]["outcome"] == "failed"
    assert SANDBOX_PASSWORD not in json.dumps(row)
    db_bytes = b"".join(p.read_bytes() for p in synced.parent.glob("itbsc.db*"))
    assert SANDBOX_PASSWORD.encode() not in db_bytes


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--dir", str(tmp_path / "demo"), "--count", "800"])
    assert result.exit_code == 0, result.output
    assert "succeeded — 1600 fetched" in result.stdout  # two years of 800 by default
    for word in ("CUSTOMER", "FINANCIAL", "INTERNAL BUSINESS PROCESSES", "LEARNING AND GROWTH"):
        assert word in result.stdout
    # two years: the year-on-year trend has a year to compare with, on the card and per source
    (card_row,) = [line for line in result.stdout.splitlines() if " L5 First-assignment" in line]
    assert " pp " in card_row and "NO DATA" not in card_row
    by_source = [line for line in result.stdout.splitlines() if line.startswith("│ L5 ")]
    assert len(by_source) == 2 and all(" pp " in line for line in by_source)
    assert (tmp_path / "demo" / "itbsc.toml").is_file()


def test_baseline_proposes_targets_from_the_synced_history_and_states_its_method(
    synced: Path,
) -> None:
    data = json.loads(run(synced, "baseline", "--months", "12", "--format", "json"))
    assert "better-quartile" in data["method"]
    proposals = {p["metric"]: p for p in data["proposals"]}
    c1 = proposals["C1"]
    # the generated year ends 2026-06-30: later months have no data and are counted as skipped
    assert c1["months_used"] + c1["months_skipped"] == 12 and c1["months_used"] >= 3
    assert c1["target"] >= c1["median"]  # higher is better: the better quartile
    assert proposals["I1"]["target"] <= proposals["I1"]["median"]  # lower is better
    assert c1["current_target"] == 95.0


def test_recompute_restates_only_the_range_asked_for(synced: Path) -> None:
    def month(label: str) -> dict[str, object]:
        rows = json.loads(run(synced, "metrics", "--metric", "I1", "--grain", "month"))
        (row,) = [r for r in rows if r["period"] == label and r["dimension"] == "all"]
        return row

    before_may, before_march = month("2026-05"), month("2026-03")
    assert before_may["exclusions"].get("duplicate") and before_march["exclusions"].get("duplicate")
    mapping = synced.parent / "mappings" / "servicenow.toml"
    mapping.write_text(
        mapping.read_text().replace('"Duplicate" = "duplicate"', '"Duplicate" = "solved"')
    )
    run(synced, "recompute", "--from", "2026-05-01", "--to", "2026-05-31")
    after_may, after_march = month("2026-05"), month("2026-03")
    assert "duplicate" not in after_may["exclusions"]  # restated under the new map
    assert after_may["n"] > before_may["n"]
    assert after_march == before_march  # outside the range: untouched, with its old stamp
    with sa.create_engine(f"sqlite:///{synced.parent / 'itbsc.db'}").connect() as conn:
        pending = conn.execute(sa.text("select count(*) from metric_dirty_day")).scalar_one()
    assert pending == 0  # nothing outside the range was queued for a later sync to restate
    refused = CliRunner().invoke(
        app, ["--config", str(synced), "recompute", "--from", "2026-05-01"], env=ENV
    )
    assert refused.exit_code == 2


def test_a_source_not_synced_for_too_long_greys_the_periods_it_has_not_covered(
    synced: Path,
) -> None:
    config = load_config(synced, env=ENV)
    engine = sa.create_engine(config.database_url)
    with engine.begin() as conn:  # the last success: mid-June, long ago
        conn.execute(
            sa.update(store.state_table).values(last_success_at=datetime(2026, 6, 15, tzinfo=UTC))
        )
    engine.dispose()
    june = json.loads(run(synced, "scorecard", "--period", "2026-06", "--format", "json"))
    measures = {
        m["metric"]: m for p in june["perspectives"] for o in p["objectives"] for m in o["measures"]
    }
    assert measures["C1"]["status"] == "grey" and measures["C1"]["score"] is None
    assert measures["C1"]["stale"] == "snow/incident last synced 2026-06-15 00:00 UTC"
    assert measures["C1"]["value"] is not None  # the number is kept, but not scored
    assert measures["F8"]["stale"] is None  # manual inputs do not come from a sync
    assert "STALE" in run(synced, "scorecard", "--period", "2026-06")
    may = json.loads(run(synced, "scorecard", "--period", "2026-05", "--format", "json"))
    may_c1 = [m for p in may["perspectives"] for o in p["objectives"] for m in o["measures"]]
    assert all(m["stale"] is None for m in may_c1)  # synced after May ended: complete


def test_resync_on_a_terminal_shows_a_progress_bar_with_the_sources_total(
    snow: RunningSandbox, tmp_path: Path
) -> None:
    import os
    import pty
    import subprocess
    import sys

    files = write_config(tmp_path, url=snow.url, db_url="sqlite:///itbsc.db")
    primary, secondary = pty.openpty()
    env = {**os.environ, **ENV, "COLUMNS": "160", "TERM": "xterm"}
    process = subprocess.Popen(
        [sys.executable, "-m", "daemon.cli", "--config", str(files.path), "resync", "--full"],
        stdin=secondary,
        stdout=secondary,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    os.close(secondary)
    chunks = []
    while True:
        try:
            data = os.read(primary, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    assert process.wait(timeout=60) == 0
    os.close(primary)
    import re

    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode(errors="replace"))
    assert "snow/incident" in screen
    assert "600/600" in screen  # records of the total the source announced
    assert "rec/s" in screen


# The documented export schemas: changing them breaks users' scripts, so they are fixed here.
CSV_HEADER = (
    "period,perspective,objective,metric,name,unit,direction,manual,value,target,amber,"
    "status,stale,score,n,previous,trend"
)
JSON_TOP = {
    "title",
    "period",
    "period_start",
    "period_end",
    "previous_period",
    "score",
    "notes",
    "perspectives",
    "links",
    "freshness",
}
JSON_PERSPECTIVE = {"id", "name", "score", "objectives"}
JSON_OBJECTIVE = {"id", "name", "score", "status", "initiatives", "measures"}
JSON_MEASURE = {
    "metric",
    "name",
    "manual",
    "unit",
    "direction",
    "value",
    "n",
    "target",
    "amber",
    "status",
    "score",
    "previous",
    "trend",
    "better",
    "stale",
}


def test_scorecard_exports_keep_their_documented_schemas(synced: Path) -> None:
    import csv
    import io

    text = run(synced, "scorecard", "--period", "2026-05", "--format", "csv")
    lines = text.splitlines()
    assert lines[0] == CSV_HEADER
    rows = list(csv.DictReader(io.StringIO(text)))
    card = json.loads(run(synced, "scorecard", "--period", "2026-05", "--format", "json"))
    measures = [m for p in card["perspectives"] for o in p["objectives"] for m in o["measures"]]
    assert len(rows) == len(measures)
    by_metric = {r["metric"]: r for r in rows}
    assert by_metric["C1"]["period"] == "2026-05" and by_metric["C1"]["perspective"] == "customer"
    assert float(by_metric["C1"]["value"]) == pytest.approx(
        next(m["value"] for m in measures if m["metric"] == "C1"), rel=1e-5
    )
    assert by_metric["F8"]["manual"] == "true" and by_metric["F8"]["value"] == ""
    assert set(card) == JSON_TOP
    for perspective in card["perspectives"]:
        assert set(perspective) == JSON_PERSPECTIVE
        for objective in perspective["objectives"]:
            assert set(objective) == JSON_OBJECTIVE
            for measure in objective["measures"]:
                assert set(measure) == JSON_MEASURE


def test_scorecard_for_one_source_or_dimension_with_a_sparkline(synced: Path) -> None:
    whole = json.loads(run(synced, "scorecard", "--period", "2026-05", "--format", "json"))
    p3 = json.loads(
        run(synced, "scorecard", "--period", "2026-05", "--by", "priority=P3", "--format", "json")
    )

    def measure(card: dict[str, Any], metric: str) -> dict[str, Any]:
        return next(
            m
            for p in card["perspectives"]
            for o in p["objectives"]
            for m in o["measures"]
            if m["metric"] == metric
        )

    assert 0 < measure(p3, "C1")["n"] < measure(whole, "C1")["n"]
    assert measure(p3, "F8")["value"] is None  # a manual figure has no priority
    only = json.loads(
        run(synced, "scorecard", "--period", "2026-05", "--source", "snow", "--format", "json")
    )
    assert measure(only, "C1")["n"] == measure(whole, "C1")["n"]  # the only source
    table = run(synced, "scorecard", "--period", "2026-05", "--spark", "6")
    assert "Last 6" in table
    assert any(ch in table for ch in "▁▂▃▄▅▆▇█")
    bad = CliRunner().invoke(
        app, ["--config", str(synced), "scorecard", "--source", "nope"], env=ENV
    )
    assert bad.exit_code == 2 and "unknown source 'nope'" in bad.output


def test_a_stored_scorecard_reads_back_through_the_dashboard_view(synced: Path) -> None:
    card = json.loads(run(synced, "scorecard", "--period", "2026-05", "--format", "json"))
    run(synced, "scorecard", "--period", "2026-05", "--store")
    run(synced, "scorecard", "--period", "2026-05", "--store")  # a second judgement replaces
    engine = sa.create_engine(load_config(synced, env=ENV).database_url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT metric, objective, status, value FROM v_scorecard WHERE period = '2026-05'"
            )
        ).all()
    engine.dispose()
    measures = {
        (m["metric"], o["id"]): m
        for p in card["perspectives"]
        for o in p["objectives"]
        for m in o["measures"]
    }
    assert len(rows) == len(measures)
    for metric, objective, status, value in rows:
        assert status == measures[(metric, objective)]["status"]
        expected = measures[(metric, objective)]["value"]
        assert (value is None) == (expected is None)
        if value is not None:
            assert value == pytest.approx(expected)
