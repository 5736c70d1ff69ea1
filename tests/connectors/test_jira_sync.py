"""Jira Cloud and Data Center through the real ``jira`` client against the sandbox, into the store."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from connectors.base import ConnectionParams, Secret
from connectors.jira import JiraSource, jql_time
from daemon import db, store
from daemon.defaults import config_dir
from daemon.models import CANONICAL_TABLES
from daemon.settings import Config, load_config
from daemon.sync import resync
from sandbox.jira import JiraInstance, RunningJira, serve_jira
from sandbox.jira_data import generate_jira
from tests import sla_cycles

END = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)
EMAIL, TOKEN = "itbsc@example.com", "jira-Token-Marker-3a9"
INCIDENT_TYPES = {"[System] Incident"}


@pytest.fixture(params=["cloud", "datacenter"])
def jira_site(request: pytest.FixtureRequest) -> Iterator[RunningJira]:
    instance = JiraInstance(flavour=request.param, users={EMAIL: TOKEN})
    instance.load(generate_jira(400, end=END, seed=5))
    with serve_jira(instance) as running:
        yield running


def write_jira_config(
    directory: Path,
    url: str,
    page_size: int = 50,
    *,
    max_retries: int = 2,
    timeout_seconds: float = 10,
    db_url: str = "sqlite:///itbsc.db",
) -> Path:
    shipped = config_dir()
    (directory / "mappings").mkdir(parents=True, exist_ok=True)
    for name in ("metrics.toml", "scorecard.toml", "mappings/jira.toml"):
        shutil.copyfile(shipped / name, directory / name)
    path = directory / "itbsc.toml"
    path.write_text(
        f"""
[database]
url = "{db_url}"

[reporting]
timezone = "Europe/Amsterdam"

[sources.jsm]
kind = "jira"
url = "{url}"
username = "{EMAIL}"
password_env = "ITBSC_TEST_JIRA_TOKEN"
projects = ["ITSM"]
streams = ["issues"]
mapping = "mappings/jira.toml"
page_size = {page_size}
max_retries = {max_retries}
timeout_seconds = {timeout_seconds}
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def setup(jira_site: RunningJira, tmp_path: Path) -> Iterator[tuple[Config, sa.Engine]]:
    config = load_config(
        write_jira_config(tmp_path, jira_site.url), env={"ITBSC_TEST_JIRA_TOKEN": TOKEN}
    )
    engine = db.create_db_engine(config.database_url)
    db.upgrade(engine)
    yield config, engine
    engine.dispose()


def stored_incidents(engine: sa.Engine) -> dict[str, dict[str, Any]]:
    table = CANONICAL_TABLES["incident"]
    with engine.connect() as conn:
        return {r.source_id: dict(r._mapping) for r in conn.execute(sa.select(table))}


def site_incidents(site: RunningJira) -> dict[str, dict[str, Any]]:
    return {
        i["id"]: i
        for i in site.instance.issues.values()
        if i["fields"]["issuetype"]["name"] in INCIDENT_TYPES
    }


def test_full_sync_stores_every_incident_with_its_lifecycle_from_the_changelog(
    jira_site: RunningJira, setup: tuple[Config, sa.Engine]
) -> None:
    config, engine = setup
    summary = resync(engine, config)
    assert summary.ok, summary.streams[0].error
    expected = site_incidents(jira_site)
    stored = stored_incidents(engine)
    assert set(stored) == set(expected)
    for issue_id, issue in expected.items():
        row = stored[issue_id]
        assert row["number"] == issue["key"]
        # resolved_at comes from the last move into a done status (resolutiondate is cleared
        # on reopen); the generator knows the truth.
        truth = issue["_resolved"]
        assert (row["resolved_at"] is None) == (truth is None)
        if truth is not None:
            assert abs(row["resolved_at"] - truth) < timedelta(milliseconds=1)
        assert row["opened_at"] == issue["_created"].replace(
            microsecond=issue["_created"].microsecond // 1000 * 1000
        )
    states = {r["state"] for r in stored.values()}
    assert states <= {"new", "in_progress", "on_hold", "resolved", "closed", "cancelled"}
    assert any(r["reopen_count"] for r in stored.values())
    assert all(
        r["first_response_at"] is None or r["opened_at"] <= r["first_response_at"]
        for r in stored.values()
    )
    assert sum(r["first_response_at"] is not None for r in stored.values()) > len(stored) * 0.9
    assert any(r["reassignment_count"] for r in stored.values())
    # requests and changes went to their own kinds: nothing fell through
    assert not summary.streams[0].skipped
    assert summary.streams[0].written == len(jira_site.instance.issues)


def test_incremental_sync_across_midnight_in_a_far_zone_loses_nothing(
    jira_site: RunningJira, setup: tuple[Config, sa.Engine]
) -> None:
    """The user's zone is Pacific/Honolulu (UTC-10): a UTC-formatted bound would skip 10 hours."""
    config, engine = setup
    assert resync(engine, config).ok
    with engine.connect() as conn:
        cursor = store.read_cursor(conn, "jsm", "issues")
    assert cursor is not None
    bound = datetime.fromisoformat(cursor["updated_since"])
    # Edits just after the cursor, on both sides of Auckland's midnight and UTC's.
    incident_ids = sorted(site_incidents(jira_site))
    edits = [bound + timedelta(minutes=m) for m in (1, 7, 61, 12 * 60 + 5)]
    for issue_id, at in zip(incident_ids, edits, strict=False):
        jira_site.instance.update(issue_id, at, summary=f"edited at {at.isoformat()}")
    second = resync(engine, config)
    assert second.ok
    stored = stored_incidents(engine)
    for issue_id, at in zip(incident_ids, edits, strict=False):
        assert stored[issue_id]["updated_at"] >= at.replace(microsecond=0), issue_id
    # Only the overlap and the edits were re-read, not the whole site.
    assert second.streams[0].fetched < len(jira_site.instance.issues) / 4


def test_jql_literals_are_written_in_the_users_zone() -> None:
    from zoneinfo import ZoneInfo

    moment = datetime(2026, 6, 30, 11, 30, 59, tzinfo=UTC)
    assert jql_time(moment, ZoneInfo("Pacific/Auckland")) == "2026/06/30 23:30"
    assert jql_time(moment, ZoneInfo("America/Los_Angeles")) == "2026/06/30 04:30"


def test_an_http_date_retry_after_is_waited_for_not_a_crash(jira_site: RunningJira) -> None:
    jira_site.instance.rate_limit_next = 1
    jira_site.instance.retry_after = format_datetime(
        datetime.now(UTC) + timedelta(seconds=1), usegmt=True
    )
    params = ConnectionParams(
        name="jsm",
        url=jira_site.url,
        username=EMAIL,
        password=Secret(TOKEN),
        page_size=100,
        max_retries=2,
        options={"projects": ["ITSM"]},
    )
    with JiraSource(params) as source:
        pages = list(source.read("issues", fields=["fields.status.name"]))
    assert sum(len(p.records) for p in pages) == len(jira_site.instance.issues)
    assert jira_site.instance.rate_limit_next == 0


def test_wrong_token_names_the_source_and_what_to_check(jira_site: RunningJira) -> None:
    params = ConnectionParams(
        name="jsm",
        url=jira_site.url,
        username=EMAIL,
        password=Secret("Wrong-Marker-77"),
        max_retries=0,
        options={"projects": ["ITSM"]},
    )
    from connectors.errors import SourceAuthError

    with JiraSource(params) as source, pytest.raises(SourceAuthError) as caught:
        list(source.read("issues", fields=[]))
    message = str(caught.value)
    assert "'jsm'" in message and "401" in message and "Wrong-Marker-77" not in message


def test_requests_changes_and_sla_cycles_land_in_their_kinds_and_c1_uses_the_cycles(
    jira_site: RunningJira, setup: tuple[Config, sa.Engine]
) -> None:
    from daemon.compute import compute
    from mapping.periods import parse_period

    config, engine = setup
    assert resync(engine, config).ok
    issues = jira_site.instance.issues.values()
    by_type: dict[str, set[str]] = {}
    for issue in issues:
        by_type.setdefault(issue["fields"]["issuetype"]["name"], set()).add(issue["id"])
    with engine.connect() as conn:
        ids = {
            kind: {r.source_id for r in conn.execute(sa.select(CANONICAL_TABLES[kind].c.source_id))}
            for kind in ("incident", "request_item", "change")
        }
        slas = [dict(r._mapping) for r in conn.execute(sa.select(CANONICAL_TABLES["sla"]))]
    assert ids["request_item"] == by_type["[System] Service request"]
    assert ids["change"] == by_type["[System] Change"]
    # Each change's type comes from the filled one of the two "Change type" lists (found
    # by name: no schema type tells them apart), its outcome from a "Failed" status, else
    # from its resolution.
    with engine.connect() as conn:
        change_rows = conn.execute(
            sa.select(CANONICAL_TABLES["change"].c["source_id", "type", "close_code"])
        )
        stored_changes = {r.source_id: (r.type, r.close_code) for r in change_rows}

    def outcome(fields: dict[str, Any]) -> str | None:
        if fields["status"]["name"] == "Failed":
            return "unsuccessful"
        resolution = fields["resolution"]
        return "successful" if resolution and resolution["name"] == "Done" else None

    expected_changes = {
        i["id"]: (i["fields"]["customfield_10050"]["value"].lower(), outcome(i["fields"]))
        for i in issues
        if i["fields"]["issuetype"]["name"] == "[System] Change"
    }
    assert stored_changes == expected_changes
    outcomes = {code for _, code in expected_changes.values()}
    assert {"successful", "unsuccessful", None} <= outcomes
    assert {s["sla_type"] for s in slas} == {"response", "resolution"}
    with engine.connect() as conn:
        surveys = {r.task: r.rating for r in conn.execute(sa.select(CANONICAL_TABLES["survey"]))}
    rated = {
        i["id"]: i["fields"]["customfield_10040"]["rating"]
        for i in issues
        if i["fields"].get("customfield_10040")
    }
    assert rated and surveys == rated  # satisfaction found by schema, one answer per rating
    assert {s["task"] for s in slas} <= ids["incident"] | ids["request_item"]

    # C1 for May straight from the site: incidents resolved in May (not cancelled) with a
    # resolution SLA; met when its cycle did not breach.
    may = parse_period("2026-05", config.zone)
    met = total = 0
    for issue in issues:
        fields = issue["fields"]
        sla = fields.get("customfield_10030")
        resolved = issue["_resolved"]
        if (
            fields["issuetype"]["name"] != "[System] Incident"
            or resolved is None
            or not may.contains(resolved)
            or fields["status"]["name"] == "Canceled"
            or sla is None
        ):
            continue
        total += 1
        met += not any(c["breached"] for c in sla["cycles"])
    with engine.connect() as conn:
        (value,) = [v for v in compute(conn, config, {"C1": [may]}) if v.dimension == "all"]
    assert total > 10
    assert value.denominator == total and value.numerator == met


def test_a_truncated_changelog_is_completed_on_cloud(jira_site: RunningJira) -> None:
    target = next(iter(site_incidents(jira_site)))
    histories = jira_site.instance.histories[target]
    base = histories[0]["created"] if histories else END - timedelta(days=30)
    extra = [
        {
            "id": str(800000 + n),
            "author": None,
            "created": base + timedelta(minutes=n + 1),
            "items": [{"field": "labels", "fieldtype": "jira", "from": None, "to": None}],
        }
        for n in range(130)
    ]
    jira_site.instance.histories[target] = sorted(histories + extra, key=lambda h: h["created"])
    params = ConnectionParams(
        name="jsm",
        url=jira_site.url,
        username=EMAIL,
        password=Secret(TOKEN),
        page_size=100,
        options={"projects": ["ITSM"]},
    )
    with JiraSource(params) as source:
        records = {r.source_id: r for p in source.read("issues", fields=[]) for r in p.records}
    changelog = records[target].data["changelog"]
    total = len(histories) + 130
    assert changelog["total"] == total
    if jira_site.instance.flavour == "cloud":
        assert len(changelog["histories"]) == total  # fetched from /issue/{id}/changelog
    else:
        assert len(changelog["histories"]) == 100  # Data Center has no changelog endpoint


def test_data_center_personal_access_token(tmp_path: Path) -> None:
    instance = JiraInstance(flavour="datacenter", users={}, tokens={"pat-Marker-19"})
    instance.load(generate_jira(120, end=END, seed=9))
    with serve_jira(instance) as running:
        path = write_jira_config(tmp_path, running.url)
        path.write_text(path.read_text().replace(f'username = "{EMAIL}"\n', 'auth = "token"\n'))
        config = load_config(path, env={"ITBSC_TEST_JIRA_TOKEN": "pat-Marker-19"})
        engine = db.create_db_engine(config.database_url)
        db.upgrade(engine)
        summary = resync(engine, config)
        engine.dispose()
    assert summary.ok, summary.streams[0].error
    assert summary.streams[0].fetched == 120


def test_census_marks_deleted_issues_and_their_sla_cycles_and_fetches_missed_ones(
    jira_site: RunningJira, setup: tuple[Config, sa.Engine]
) -> None:
    import copy

    from daemon.census import census

    config, engine = setup
    assert resync(engine, config).ok
    incidents = sorted(site_incidents(jira_site))
    gone = incidents[:3]
    for issue_id in gone:
        jira_site.instance.delete(issue_id)
    # An issue the incremental search never saw: created with an old updated time.
    template = jira_site.instance.issues[incidents[5]]
    missed = copy.deepcopy(template)
    missed["id"], missed["key"] = "99999", "ITSM-99999"
    jira_site.instance.add(missed)
    (result,) = census(engine, config)
    assert (result.outcome, result.marked_deleted, result.fetched) == ("succeeded", 3, 1)
    alive = {k: set(r) for k, r in stored_by_kind(engine, alive_only=True).items()}
    assert not set(gone) & alive["incident"] and "99999" in alive["incident"]
    assert not {s.split(":")[0] for s in alive["sla"]} & set(gone)  # their cycles too
    # and every incident's SLA summary follows its cycles (both deletions and the new one)
    assert sla_cycles.stored(engine) == sla_cycles.expected(engine)


def stored_by_kind(engine: sa.Engine, *, alive_only: bool) -> dict[str, list[str]]:
    out = {}
    with engine.connect() as conn:
        for kind in ("incident", "sla"):
            table = CANONICAL_TABLES[kind]
            query = sa.select(table.c.source_id)
            if alive_only:
                query = query.where(table.c.deleted_at.is_(None))
            out[kind] = [r.source_id for r in conn.execute(query)]
    return out
