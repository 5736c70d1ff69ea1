"""Real Jira Cloud responses (Apache DevLake fixtures) replayed through the emulator, jira client and mapping.

The issues come from a Jira Software site with Chinese status names and a
deleted "Resolved" status, so categories and histories are messy the way
real ones are. The test checks that every issue arrives, and that the
resolved times and reopen counts read from the changelogs match what it
computes directly from the JSON: Jira's own ``resolutiondate`` for the former,
resolution-clearing history items for the latter.
"""

from __future__ import annotations

import gzip
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from daemon import db
from daemon.defaults import config_dir
from daemon.models import CANONICAL_TABLES
from daemon.settings import load_config
from daemon.sync import resync
from sandbox.jira import JiraInstance, serve_jira
from tests.conftest import SHARED_DATA

ISSUES = SHARED_DATA / "jira_cloud_devlake_issues.jsonl.gz"
STATUSES = SHARED_DATA / "jira_cloud_devlake_statuses.jsonl.gz"
pytestmark = pytest.mark.skipif(
    not (ISSUES.is_file() and STATUSES.is_file()), reason=f"real data not present at {ISSUES}"
)
EMAIL, TOKEN = "replay@example.com", "replay-Token-1"
JIRA_TIME = "%Y-%m-%dT%H:%M:%S.%f%z"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with gzip.open(path) as handle:
        return [orjson.loads(line) for line in handle]


def reopens_in(issue: dict[str, Any]) -> int:
    """Times the resolution was cleared: Jira's own record of a reopen."""
    return sum(
        1
        for history in issue["changelog"]["histories"]
        for item in history["items"]
        if item["field"] == "resolution" and item.get("from") and not item.get("to")
    )


def test_replayed_real_issues_map_with_resolution_times_from_their_changelogs(
    tmp_path: Path,
) -> None:
    issues, statuses = read_jsonl(ISSUES), read_jsonl(STATUSES)
    assert len(issues) == 33
    instance = JiraInstance(flavour="cloud", users={EMAIL: TOKEN}, user_zone="Asia/Shanghai")
    instance.replay(issues, statuses)
    types = sorted({i["fields"]["issuetype"]["name"] for i in issues})
    projects = sorted({i["fields"]["project"]["key"] for i in issues})
    (tmp_path / "mappings").mkdir()
    for name in ("metrics.toml", "scorecard.toml"):
        shutil.copyfile(config_dir() / name, tmp_path / name)
    mapping = (config_dir() / "mappings" / "jira.toml").read_text()
    # A Jira Software site: every issue type is treated as an incident for this check.
    mapping = mapping.replace(
        'match = { "fields.issuetype.name" = ["[System] Incident", "Incident"] }',
        'match = { "fields.issuetype.name" = ' + orjson.dumps(types).decode() + " }",
    )
    (tmp_path / "mappings" / "jira.toml").write_text(mapping)
    with serve_jira(instance) as site:
        (tmp_path / "itbsc.toml").write_text(
            f"""
[database]
url = "sqlite:///replay.db"

[sources.devlake]
kind = "jira"
url = "{site.url}"
username = "{EMAIL}"
password_env = "ITBSC_TEST_JIRA_TOKEN"
projects = {orjson.dumps(projects).decode()}
streams = ["issues"]
mapping = "mappings/jira.toml"
page_size = 10
"""
        )
        config = load_config(tmp_path / "itbsc.toml", env={"ITBSC_TEST_JIRA_TOKEN": TOKEN})
        engine = db.create_db_engine(config.database_url)
        db.upgrade(engine)
        summary = resync(engine, config)
    assert summary.ok, summary.streams[0].error
    with engine.connect() as conn:
        table = CANONICAL_TABLES["incident"]
        stored = {r.source_id: dict(r._mapping) for r in conn.execute(sa.select(table))}
    engine.dispose()
    assert set(stored) == {str(i["id"]) for i in issues}  # every issue present
    for issue in issues:
        row = stored[str(issue["id"])]
        recorded = issue["fields"].get("resolutiondate")
        if recorded is None:
            assert row["resolved_at"] is None, issue["key"]
        else:
            truth = datetime.strptime(recorded, JIRA_TIME)
            assert row["resolved_at"] is not None, issue["key"]
            assert abs((row["resolved_at"] - truth).total_seconds()) < 1, issue["key"]
        assert row["reopen_count"] == reopens_in(issue), issue["key"]
        assert row["number"] == issue["key"]
    # Chinese status names map through their category.
    assert {r["state"] for r in stored.values()} <= {
        "new",
        "in_progress",
        "resolved",
        "closed",
        "cancelled",
    }
    assert all(r["state"] is not None for r in stored.values())
