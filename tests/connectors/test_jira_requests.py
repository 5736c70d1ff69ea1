"""Request shapes and error paths of the Jira connector, pinned with `responses`."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from connectors.base import ConnectionParams, Secret
from connectors.errors import FatalSourceError, SourceAuthError
from connectors.jira import JiraSource, project_clause

BASE = "https://acme.atlassian.net"
API = f"{BASE}/rest/api/2"
FIELDS = [
    {
        "id": "status",
        "name": "Status",
        "custom": False,
        "clauseNames": ["status"],
        "schema": {"system": "status"},
    },
    {
        "id": "customfield_10030",
        "name": "Time to resolution",
        "custom": True,
        "clauseNames": ["cf[10030]"],
        "schema": {
            "type": "sd-servicelevelagreement",
            "custom": "com.atlassian.servicedesk:sd-sla-field",
        },
    },
    {
        "id": "customfield_10099",
        "name": "Time to resolution",  # the same name, not an SLA: must not be taken
        "custom": True,
        "clauseNames": ["cf[10099]"],
        "schema": {
            "type": "number",
            "custom": "com.atlassian.jira.plugin.system.customfieldtypes:float",
        },
    },
]


def issue(issue_id: str, updated: str = "2026-05-01T10:11:12.000-1000") -> dict[str, Any]:
    return {
        "id": issue_id,
        "key": f"ITSM-{issue_id}",
        "fields": {"updated": updated, "customfield_10030": None},
        "changelog": {"startAt": 0, "maxResults": 0, "total": 0, "histories": []},
    }


def site(
    rsps: responses.RequestsMock, deployment: str, fields: list[dict[str, Any]] = FIELDS
) -> None:
    version = [1001, 0, 0] if deployment == "Cloud" else [9, 12, 2]
    rsps.get(f"{API}/serverInfo", json={"versionNumbers": version, "deploymentType": deployment})
    rsps.get(f"{API}/myself", json={"timeZone": "America/Los_Angeles"})
    rsps.get(f"{API}/field", json=fields)
    rsps.get(f"{API}/status", json=[{"id": "1", "statusCategory": {"key": "new"}}])


def source(**options: Any) -> JiraSource:
    params = ConnectionParams(
        name="jsm",
        url=BASE,
        username="itbsc@example.com",
        password=Secret("tok-Marker-55"),
        page_size=2,
        max_retries=0,
        options={"projects": ["ITSM"], "overlap_minutes": 10, **options},
    )
    return JiraSource(params)


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def searches(rsps: responses.RequestsMock, path: str) -> list[dict[str, list[str]]]:
    return [
        parse_qs(urlsplit(c.request.url).query)
        for c in rsps.calls
        if urlsplit(c.request.url).path.endswith(path)
    ]


def test_cloud_pages_search_jql_with_tokens_in_the_users_zone(rsps: responses.RequestsMock) -> None:
    site(rsps, "Cloud")
    rsps.get(
        f"{API}/search/jql",
        json={"issues": [issue("1"), issue("2")], "nextPageToken": "t2", "isLast": False},
    )
    rsps.get(f"{API}/search/jql", json={"issues": [issue("3")], "isLast": True})
    since = datetime(2026, 5, 1, 7, 30, 59, tzinfo=UTC)  # 00:30 in Los Angeles (PDT)
    with source() as src:
        pages = list(
            src.read("issues", fields=["fields.itbsc:sla", "fields.priority.name"], since=since)
        )
    assert [r.source_id for p in pages for r in p.records] == ["1", "2", "3"]
    assert [p.cursor is not None for p in pages] == [False, True]  # the cursor moves at the end
    first, second = searches(rsps, "/search/jql")
    # 00:30 minus the 10-minute overlap, as the user's zone reads it
    assert first["jql"] == [
        'project IN ("ITSM") AND updated >= "2026/05/01 00:20" ORDER BY created ASC, id ASC'
    ]
    assert "nextPageToken" not in first and second["nextPageToken"] == ["t2"]
    wanted = set(first["fields"])
    assert {"updated", "created", "status", "issuetype", "project", "priority"} <= wanted
    assert "customfield_10030" in wanted and "customfield_10099" not in wanted  # by schema
    assert first["expand"] == ["changelog"] and first["maxResults"] == ["2"]
    sla = pages[0].records[0].data["fields"]["itbsc:sla"]
    assert sla == {"Time to resolution": None}


def select_list(number: int, name: str) -> dict[str, Any]:
    return {
        "id": f"customfield_{number}",
        "name": name,
        "custom": True,
        "clauseNames": [f"cf[{number}]", name],
        "schema": {
            "type": "option",
            "custom": "com.atlassian.jira.plugin.system.customfieldtypes:select",
        },
    }


@pytest.mark.parametrize(
    ("field_names", "found"),
    [
        ({}, {"customfield_10050", "customfield_10051"}),  # "Change type", both of that name
        ({"itbsc:change_type": "Type of change"}, {"customfield_10052"}),  # renamed on this site
    ],
)
def test_the_change_type_list_is_found_by_name_and_the_filled_one_is_delivered(
    rsps: responses.RequestsMock, field_names: dict[str, str], found: set[str]
) -> None:
    lists = [
        select_list(10050, "Change type"),
        select_list(10051, "Change type"),
        select_list(10052, "Type of change"),
        {"id": "labels", "name": "Change type", "custom": False, "schema": {"type": "array"}},
    ]
    site(rsps, "Cloud", FIELDS + lists)
    first, second = issue("1"), issue("2")
    first["fields"] |= {"customfield_10051": {"id": "1", "value": "Emergency"}}
    second["fields"] |= {
        "customfield_10050": {"id": "2", "value": "Standard"},
        "customfield_10051": {"id": "1", "value": "Emergency"},
        "customfield_10052": {"id": "3", "value": "Normal"},
    }
    rsps.get(f"{API}/search/jql", json={"issues": [first, second], "isLast": True})
    with source(field_names=field_names) as src:
        (page,) = list(src.read("issues", fields=["fields.itbsc:change_type"]))
    (query,) = searches(rsps, "/search/jql")
    requested = {f for f in query["fields"] if f.startswith("customfield_100")}
    assert requested == found and "labels" not in query["fields"]  # custom fields only
    delivered = [r.data["fields"].get("itbsc:change_type") for r in page.records]
    if field_names:
        assert delivered == [None, {"id": "3", "value": "Normal"}]
    else:  # the first field of the name that is filled: an empty one does not hide another
        assert delivered == [{"id": "1", "value": "Emergency"}, {"id": "2", "value": "Standard"}]


def test_data_center_pages_with_start_at_and_follows_a_capped_page_size(
    rsps: responses.RequestsMock,
) -> None:
    site(rsps, "DataCenter")
    # The server caps maxResults at 1 (reply says so): the connector advances by what came back.
    rsps.get(
        f"{API}/search", json={"startAt": 0, "maxResults": 1, "total": 3, "issues": [issue("1")]}
    )
    rsps.get(
        f"{API}/search", json={"startAt": 1, "maxResults": 1, "total": 3, "issues": [issue("2")]}
    )
    rsps.get(
        f"{API}/search", json={"startAt": 2, "maxResults": 1, "total": 3, "issues": [issue("3")]}
    )
    with source() as src:
        pages = list(src.read("issues", fields=[]))
    assert [r.source_id for p in pages for r in p.records] == ["1", "2", "3"]
    assert [q["startAt"] for q in searches(rsps, "/search")] == [["0"], ["1"], ["2"]]
    assert all("isLast" not in q for q in searches(rsps, "/search"))


def test_a_rejected_query_names_the_source_and_quotes_jira(rsps: responses.RequestsMock) -> None:
    site(rsps, "Cloud")
    rsps.get(
        f"{API}/search/jql",
        status=400,
        json={
            "errorMessages": [
                "Error in the JQL Query: The value 'ITSM' does not exist for the field 'project'."
            ]
        },
    )
    with source() as src, pytest.raises(FatalSourceError) as caught:
        list(src.read("issues", fields=[]))
    message = str(caught.value)
    assert "'jsm'" in message and "HTTP 400" in message and "does not exist" in message


def test_forbidden_says_what_is_missing_without_the_token(rsps: responses.RequestsMock) -> None:
    site(rsps, "Cloud")
    rsps.get(f"{API}/search/jql", status=403, body="<html>Forbidden</html>")
    with source() as src, pytest.raises(SourceAuthError) as caught:
        list(src.read("issues", fields=[]))
    assert "403" in str(caught.value) and "tok-Marker-55" not in str(caught.value)


@pytest.mark.parametrize("key", ['ITSM") OR project IS NOT EMPTY OR ("', "itsm", "A B", ""])
def test_project_keys_cannot_change_the_query(key: str) -> None:
    with pytest.raises(FatalSourceError, match="not a Jira project key"):
        project_clause([key])
