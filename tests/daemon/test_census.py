"""The deletion census: records gone at the source stop counting; missed ones are fetched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from daemon import store
from daemon.census import census
from daemon.models import CANONICAL_TABLES
from daemon.settings import Config
from mapping.periods import parse_period
from sandbox.servicenow import RunningSandbox
from tests.conftest import write_config
from tests.daemon.conftest import synced_store


@pytest.fixture
def synced(snow: RunningSandbox, db_url: str, tmp_path: Path) -> Iterator[tuple[Config, sa.Engine]]:
    files = write_config(tmp_path, url=snow.url, db_url=db_url, page_size=200)
    with synced_store(files.path, files.env) as config_and_engine:
        yield config_and_engine


def alive_ids(engine: sa.Engine) -> set[str]:
    table = CANONICAL_TABLES["incident"]
    with engine.connect() as conn:
        rows = conn.execute(sa.select(table.c.source_id).where(table.c.deleted_at.is_(None)))
        return {r.source_id for r in rows}


def month_count(engine: sa.Engine, metric: str, label: str) -> int:
    with engine.connect() as conn:
        (row,) = [
            r
            for r in store.read_metric_values(
                conn, metrics=[metric], grain="month", dimension="all"
            )
            if r["period"] == label
        ]
    return int(row["n"]) + sum(row["exclusions"].values())


def resolved_in(snow: RunningSandbox, config: Config, label: str) -> list[dict[str, Any]]:
    period = parse_period(label, config.zone)
    return [
        r
        for r in snow.instance.records("incident")
        if r["resolved_at"]
        and period.contains(
            datetime.strptime(r["resolved_at"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        )
    ]


def test_deleted_records_are_marked_and_leave_the_metrics(
    snow: RunningSandbox, synced: tuple[Config, sa.Engine]
) -> None:
    config, engine = synced
    may = resolved_in(snow, config, "2026-05")
    before = month_count(engine, "I1", "2026-05")
    assert before == len(may)
    gone = [r["sys_id"] for r in may[:4]]
    for sys_id in gone:
        snow.instance.delete("incident", sys_id)
    # A record the incremental sync cannot see: inserted with an old sys_updated_on.
    missed = dict(may[5], sys_id="f" * 32, number="INC9999999")
    snow.instance.insert_many("incident", [missed])

    (result,) = census(engine, config)
    assert (result.outcome, result.marked_deleted, result.fetched) == ("succeeded", 4, 1)
    assert alive_ids(engine) == {r["sys_id"] for r in snow.instance.records("incident")}
    assert month_count(engine, "I1", "2026-05") == before - 4 + 1
    with engine.connect() as conn:
        assert store.stream_counts(conn)[("snow", "incident")] == (600 - 4 + 1, 4)

    (again,) = census(engine, config)  # nothing changed since: nothing to do
    assert (again.marked_deleted, again.fetched) == (0, 0)


def test_a_record_visible_again_is_restored(
    snow: RunningSandbox, synced: tuple[Config, sa.Engine]
) -> None:
    config, engine = synced
    hidden = snow.instance.records("incident")[0]["sys_id"]
    snow.instance.acl_hidden.add(hidden)
    (first,) = census(engine, config)
    assert first.marked_deleted == 1 and hidden not in alive_ids(engine)
    snow.instance.acl_hidden.clear()
    (second,) = census(engine, config)
    assert second.fetched == 1 and hidden in alive_ids(engine)


def test_mass_disappearance_is_refused_and_changes_nothing(
    snow: RunningSandbox, synced: tuple[Config, sa.Engine]
) -> None:
    config, engine = synced
    snow.instance.acl_hidden.update(r["sys_id"] for r in snow.instance.records("incident")[:300])
    (result,) = census(engine, config)
    assert result.outcome == "failed" and result.marked_deleted == 0
    assert result.error and "refusing" in result.error and "--force" in result.error
    assert len(alive_ids(engine)) == 600
    (forced,) = census(engine, config, force=True)
    assert forced.marked_deleted == 300 and len(alive_ids(engine)) == 300


def test_census_cli_reports_and_status_and_scorecard_show_removed_records(
    snow: RunningSandbox, synced: tuple[Config, sa.Engine]
) -> None:
    config, _ = synced
    for record in snow.instance.records("incident")[:3]:
        snow.instance.delete("incident", record["sys_id"])
    env = {**os.environ, "ITBSC_TEST_SNOW_PASSWORD": "s3cret-Marker-7f1c", "NO_COLOR": "1"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "daemon.cli", "--config", str(config.path), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )

    done = run("census", "--format", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["streams"][0]["marked_deleted"] == 3
    (status,) = json.loads(run("status", "--format", "json").stdout)["streams"]
    assert status["deleted"] == 3 and status["records"] == 597 and status["last_census_at"]
    card = json.loads(run("scorecard", "--period", "2026-05", "--format", "json").stdout)
    assert card["freshness"][0]["deleted"] == 3
    assert "removed at the source" in run("scorecard", "--period", "2026-05").stdout
