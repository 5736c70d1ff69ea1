"""Configuration that reaches a ServiceNow encoded query or a JQL string cannot change its meaning."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from connectors.errors import FatalSourceError
from connectors.jira import project_clause
from connectors.servicenow import filter_problem, filter_query, keyset_query
from daemon import census, db, sync
from daemon.settings import ConfigError, load_config
from sandbox import encoded_query, jql
from sandbox.servicenow import RunningSandbox
from tests.conftest import write_config
from tests.helpers import stored_raw

FIELDS = {"sys_id", "category", "priority", "sys_updated_on"}


@pytest.mark.parametrize(
    "value",
    [
        "network^priority=1",  # a second condition
        "network^ORpriority=1",  # an OR widening the match
        "network^NQpriority=1",  # a new block: everything with priority 1
        "x^^y",  # even an escaped caret: refused, not guessed at
        "ORDERBYDESCsys_id^",
        "network\npriority=1",
        "nul\x00",
        " ",
    ],
)
def test_servicenow_filter_values_that_could_change_the_query_are_refused(value: str) -> None:
    assert filter_problem("category", [value]) is not None
    with pytest.raises(FatalSourceError):
        filter_query({"category": value})


@pytest.mark.parametrize(
    "field",
    ["category=x^priority", "Category", "ORDERBYsys_id", "category name", "", "a..b", "^NQsys_id"],
)
def test_servicenow_filter_fields_must_be_plain_names(field: str) -> None:
    assert filter_problem(field, "x") is not None


@pytest.mark.parametrize(
    "value", ['he said "hi"', "it's", "a,b", "a=b", "priority<=1", "ORx", "NQ", "LIKE%"]
)
def test_quotes_commas_and_operators_in_a_value_are_compared_literally(value: str) -> None:
    rows = [
        {"sys_id": "1", "category": value, "priority": "3", "sys_updated_on": "2026-01-01"},
        {"sys_id": "2", "category": "network", "priority": "1", "sys_updated_on": "2026-01-01"},
        {"sys_id": "3", "category": "a", "priority": "1", "sys_updated_on": "2026-01-01"},
    ]
    query = encoded_query.parse(keyset_query(None, None, filter_query({"category": value})), FIELDS)
    assert [r["sys_id"] for r in rows if query.matches(r)] == ["1"]


def test_a_filter_scopes_each_block_of_the_keyset_query() -> None:
    scope = filter_query({"category": ["network", 'it\'s "odd"'], "priority": "1"})
    query = keyset_query({"sys_updated_on": "2026-01-01 00:00:00", "sys_id": "b"}, None, scope)
    rows = [
        {
            "sys_id": "a",
            "category": "network",
            "priority": "1",
            "sys_updated_on": "2026-01-02 00:00:00",
        },
        {
            "sys_id": "c",
            "category": 'it\'s "odd"',
            "priority": "1",
            "sys_updated_on": "2026-01-01 00:00:00",
        },
        {
            "sys_id": "d",
            "category": "software",
            "priority": "1",
            "sys_updated_on": "2026-01-02 00:00:00",
        },
        {
            "sys_id": "e",
            "category": "network",
            "priority": "2",
            "sys_updated_on": "2026-01-02 00:00:00",
        },
    ]
    parsed = encoded_query.parse(query, FIELDS)
    assert [r["sys_id"] for r in rows if parsed.matches(r)] == ["a", "c"]


def test_a_filtered_source_stores_only_matching_records_and_its_census_agrees(
    snow: RunningSandbox, tmp_path: Path
) -> None:
    records = snow.instance.records("incident")
    odd = 'it\'s "odd", =x'
    for record in records[:40]:
        snow.instance.update("incident", record["sys_id"], category=odd)
    wanted = {
        r["sys_id"] for r in snow.instance.records("incident") if r["category"] in (odd, "network")
    }
    assert 40 <= len(wanted) < len(records)
    files = write_config(
        tmp_path,
        url=snow.url,
        db_url=f"sqlite:///{tmp_path / 'itbsc.db'}",
        extra_source='[sources.snow.filters.incident]\ncategory = ["network", "it\'s \\"odd\\", =x"]',
    )
    config = load_config(files.path, env=files.env)
    assert config.settings.sources["snow"].filters["incident"]["category"] == ["network", odd]
    engine = db.create_db_engine(config.database_url)
    db.upgrade(engine)
    sync.resync(engine, config, mode="full")
    assert set(stored_raw(engine)) == wanted
    results = census.census(engine, config)
    assert [(r.outcome, r.marked_deleted, r.fetched) for r in results] == [("succeeded", 0, 0)]
    engine.dispose()


def test_a_caret_in_a_configured_filter_exits_before_any_query(tmp_path: Path) -> None:
    files = write_config(
        tmp_path,
        url="https://acme.service-now.com",
        db_url="sqlite:///itbsc.db",
        extra_source='[sources.snow.filters.incident]\ncategory = "network^NQpriority=1"',
    )
    with pytest.raises(ConfigError) as caught:
        load_config(files.path, env=files.env)
    assert any(
        "sources.snow.filters.incident.category" in line and "caret" in line
        for line in caught.value.problems
    )


@pytest.mark.parametrize(
    "key",
    [
        'ITSM") OR project IS NOT EMPTY OR ("',
        'ITSM" OR "X',
        "ITSM ORDER BY created",
        "ITSM\\",
        "itsm",
        "A B",
        "",
        "ITSM'",
    ],
)
def test_jira_project_keys_that_are_not_keys_are_refused(key: str) -> None:
    with pytest.raises(FatalSourceError, match="not a Jira project key"):
        project_clause([key])


def project(key: str, project_id: str) -> dict[str, str]:
    return {"key": key, "name": f"{key} project", "id": project_id}


@pytest.mark.parametrize("keyword", ["AND", "OR", "NOT", "EMPTY", "NULL", "ORDER", "IN", "IS"])
def test_a_project_key_spelled_like_a_jql_keyword_stays_a_literal(keyword: str) -> None:
    clause = project_clause([keyword, "ITSM"])
    query = jql.parse(f"{clause} ORDER BY created ASC", ZoneInfo("UTC"))
    issues = [
        {"id": "1", "key": f"{keyword}-1", "fields": {"project": project(keyword, "10")}},
        {"id": "2", "key": "ITSM-1", "fields": {"project": project("ITSM", "11")}},
        {"id": "3", "key": "OPS-1", "fields": {"project": project("OPS", "12")}},
    ]
    assert [i["id"] for i in issues if query.matches(i)] == ["1", "2"]


def test_a_bad_project_key_is_a_configuration_error(tmp_path: Path) -> None:
    files = write_config(
        tmp_path,
        url="https://acme.service-now.com",
        db_url="sqlite:///itbsc.db",
    )
    path = files.path
    path.write_text(
        path.read_text() + '\n[sources.jsm]\nkind = "jira"\nurl = "https://acme.atlassian.net"\n'
        'username = "a@b.c"\npassword_env = "ITBSC_TEST_SNOW_PASSWORD"\n'
        'streams = ["issues"]\nmapping = "mappings/servicenow.toml"\n'
        "projects = ['ITSM\" OR project IS NOT EMPTY OR project = \"X']\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, env=files.env)
    assert any("sources.jsm.projects" in line for line in caught.value.problems)
