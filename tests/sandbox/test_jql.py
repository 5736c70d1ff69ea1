"""The emulator's JQL subset: dates read in the user's zone to the minute, boolean logic, order."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from sandbox import jql

HONOLULU = ZoneInfo("Pacific/Honolulu")
NOW = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)


def issue(
    key: str, updated: datetime, status: str = "Open", kind: str = "[System] Incident"
) -> dict[str, Any]:
    category = {"Open": ("new", "To Do"), "Resolved": ("done", "Done")}[status]
    return {
        "id": key.split("-")[1],
        "key": key,
        "fields": {
            "project": {"id": "1", "key": key.split("-")[0], "name": f"{key.split('-')[0]} desk"},
            "issuetype": {"id": "9", "name": kind},
            "status": {
                "id": "1",
                "name": status,
                "statusCategory": {"id": 2, "key": category[0], "name": category[1]},
            },
            "priority": {"id": "3", "name": "Medium"},
        },
        "_updated": updated,
        "_created": updated,
    }


def test_date_literals_are_read_in_the_users_zone_to_the_minute() -> None:
    # 10:00 in Honolulu is 20:00 UTC.
    early = issue("IT-1", datetime(2026, 6, 1, 19, 59, 59, tzinfo=UTC))
    on_the_minute = issue("IT-2", datetime(2026, 6, 1, 20, 0, 59, tzinfo=UTC))
    query = jql.parse('project = IT AND updated >= "2026/06/01 10:00"', HONOLULU, NOW)
    assert not query.matches(early) and query.matches(on_the_minute)
    same = jql.parse('updated >= "2026-06-01 10:00"', HONOLULU, NOW)
    assert same.matches(on_the_minute)
    epoch = jql.parse(
        f"updated >= {int(datetime(2026, 6, 1, 20, 0, tzinfo=UTC).timestamp() * 1000)}",
        HONOLULU,
        NOW,
    )
    assert epoch.matches(on_the_minute) and not epoch.matches(early)
    relative = jql.parse('updated >= "-2d"', HONOLULU, NOW)
    assert not relative.matches(early)


def test_boolean_logic_lists_and_order() -> None:
    issues = [
        issue("IT-3", NOW, "Resolved"),
        issue("IT-1", NOW, "Open"),
        issue("IT-2", NOW, "Open", kind="[System] Change"),
        issue("HR-7", NOW, "Open"),
    ]
    query = jql.parse(
        'project IN ("IT") AND (status = Open OR statusCategory = Done) AND issuetype != "[System] Change" ORDER BY key DESC',
        HONOLULU,
        NOW,
    )
    found = [i for i in issues if query.matches(i)]
    for name, descending in reversed(query.order_by):
        found.sort(key=jql.sort_key(name), reverse=descending)
    assert [i["key"] for i in found] == ["IT-3", "IT-1"]
    assert jql.parse("ORDER BY created ASC", HONOLULU).predicate is None  # unbounded


@pytest.mark.parametrize(
    "text",
    ['updated >= "yesterday"', "summary ~ vpn", "project = ", 'project IN ("A"', "status WAS Open"],
)
def test_invalid_jql_is_an_error_in_the_jql_query(text: str) -> None:
    with pytest.raises(jql.JqlError, match="Error in the JQL Query"):
        jql.parse(text, HONOLULU, NOW)
