"""`itbsc explain`: for every shipped metric, the records listed reproduce the value."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from daemon.compute import compute
from daemon.explain import explain_metric
from daemon.settings import Config
from mapping.periods import parse_period
from sandbox.servicenow import RunningSandbox
from tests.conftest import ALL_STREAMS, SANDBOX_PASSWORD, write_config
from tests.daemon.conftest import synced_store


@pytest.fixture
def synced(snow: RunningSandbox, tmp_path: Path) -> Iterator[tuple[Config, sa.Engine]]:
    files = write_config(
        tmp_path, url=snow.url, db_url=f"sqlite:///{tmp_path / 'x.db'}", streams=ALL_STREAMS
    )
    with synced_store(files.path, files.env) as config_and_engine:
        yield config_and_engine


def test_every_metric_is_reproduced_by_the_records_it_lists(
    synced: tuple[Config, sa.Engine],
) -> None:
    config, engine = synced
    period = parse_period("2026-05", config.zone)
    explained = 0
    # Manual metrics list register entries and composites their parts (tested below).
    listed = [m for m in config.catalogue.metric if not m.manual and not m.composite]
    assert {"C6", "F1", "F3", "F5", "I7", "I10", "L1", "L3", "L6", "I3", "I4"} <= {
        m.id for m in listed
    }
    for metric in listed:
        with engine.connect() as conn:
            values = compute(conn, config, {metric.id: [period]})
        dimensions = {v.dimension: v for v in values}
        for dimension in ["all", *sorted(d for d in dimensions if d != "all")[:2]]:
            explanation = explain_metric(engine, config, metric.id, period, dimension)
            value, numerator, denominator, excluded = explanation.reproduced()
            expected = dimensions[dimension]
            assert value == pytest.approx(expected.value), (metric.id, dimension)
            assert numerator == pytest.approx(expected.numerator), (metric.id, dimension)
            assert denominator == pytest.approx(expected.denominator), (metric.id, dimension)
            assert excluded == expected.exclusions, (metric.id, dimension)
            assert explanation.value.value == pytest.approx(expected.value)
            explained += bool(explanation.records)
    assert explained >= 20  # most metrics have records in May on this data


def test_a_composite_is_explained_by_the_values_it_combines(
    synced: tuple[Config, sa.Engine],
) -> None:
    config, _ = synced
    env = {**os.environ, "ITBSC_TEST_SNOW_PASSWORD": SANDBOX_PASSWORD, "NO_COLOR": "1"}
    command = [sys.executable, "-m", "daemon.cli", "--config", str(config.path), "explain", "F6"]
    done = subprocess.run(
        [*command, "--period", "2026-05", "--format", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    backlog, cost = data["components"]
    assert (backlog["metric"], cost["metric"]) == ("I4B", "F1")
    assert data["value"] == pytest.approx(backlog["value"] * cost["value"])
    assert cost["explain"] == "itbsc explain F1 --period 2026-05"


def test_explain_cli_lists_the_tickets_as_json(synced: tuple[Config, sa.Engine]) -> None:
    config, _ = synced
    env = {**os.environ, "ITBSC_TEST_SNOW_PASSWORD": SANDBOX_PASSWORD, "NO_COLOR": "1"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "daemon.cli",
            "--config",
            str(config.path),
            "explain",
            "C1",
            "--period",
            "2026-05",
            "--by",
            "priority=P3",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["dimension"] == "priority=P3"
    parts = [r["part"] for r in data["records"]]
    assert parts.count("numerator") == data["numerator"]
    assert parts.count("numerator") + parts.count("denominator") == data["denominator"]
    assert all(r["number"].startswith("INC") for r in data["records"])
    unknown = subprocess.run(
        [sys.executable, "-m", "daemon.cli", "--config", str(config.path), "explain", "Z9"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert unknown.returncode == 2 and "unknown metric 'Z9'" in unknown.stderr


def test_explain_table_shows_each_record_in_the_reporting_zone(
    synced: tuple[Config, sa.Engine],
) -> None:
    """Periods are cut in the reporting zone, so the table lists moments there: a record
    resolved late on a UTC evening shows the next day's date, the one that placed it."""
    config, _ = synced
    env = {**os.environ, "ITBSC_TEST_SNOW_PASSWORD": SANDBOX_PASSWORD, "COLUMNS": "200"}
    command = [sys.executable, "-m", "daemon.cli", "--config", str(config.path), "explain", "C1"]
    command += ["--period", "2025-07-01..2026-06-30"]

    def run(*extra: str) -> str:
        done = subprocess.run(
            [*command, *extra], capture_output=True, text=True, env=env, timeout=120
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    data = json.loads(run("--format", "json"))
    assert data["timezone"] == config.zone.key != "UTC"
    moments = {r["number"]: datetime.fromisoformat(r["resolved_at"]) for r in data["records"]}
    crossing = {
        number: moment
        for number, moment in moments.items()
        if moment.astimezone(config.zone).date() != moment.date()
    }
    assert crossing  # late-evening resolutions, a day later in the reporting zone
    table = run("--limit", str(len(moments)))
    assert f"resolved_at ({config.zone.key})" in table
    for number, moment in crossing.items():
        (line,) = [line for line in table.splitlines() if f" {number} " in line]
        assert f"{moment.astimezone(config.zone):%Y-%m-%d %H:%M:%S}" in line
        assert f"{moment:%Y-%m-%d %H:%M}" not in line


def test_explain_table_shows_the_moments_each_value_was_measured_between(
    synced: tuple[Config, sa.Engine],
) -> None:
    """A duration's records show where each sample started (opened_at) beside the time that
    placed it, and a stock's records when they left it — the timestamps behind each value."""
    config, _ = synced
    env = {**os.environ, "ITBSC_TEST_SNOW_PASSWORD": SANDBOX_PASSWORD}

    def run(metric: str, *extra: str) -> str:
        command = [sys.executable, "-m", "daemon.cli", "--config", str(config.path), "explain"]
        done = subprocess.run(
            [*command, metric, "--period", "2026-05", *extra],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    data = json.loads(run("I1", "--format", "json"))
    assert (data["start_field"], data["end_field"]) == ("opened_at", "resolved_at")
    samples = [r for r in data["records"] if r["part"] == "sample"]
    assert len(samples) > 20
    table = run("I1", "--limit", str(len(data["records"])))
    header = next(line for line in table.splitlines() if "resolved_at (" in line)
    assert "opened_at" in header  # the end is the placing time: shown once
    for record in samples:
        start = datetime.fromisoformat(record["start"])
        end = datetime.fromisoformat(record["end"])
        assert record["sample"] == pytest.approx((end - start).total_seconds() / 3600)
        (line,) = [line for line in table.splitlines() if f" {record['number']} " in line]
        assert f" {record['source_id']} " in line  # whole, written to a pipe: traceable
        assert f"{start.astimezone(config.zone):%Y-%m-%d %H:%M:%S}" in line
        assert f"{record['sample']:.2f}" in line

    stock = json.loads(run("I4", "--format", "json"))
    assert stock["end_field"] == "resolved_at / closed_at"
    assert "resolved_at / closed_at" in run("I4")
