"""Lifecycle facts from changelogs: generated cases and real Jira Cloud histories."""

from __future__ import annotations

import gzip
from datetime import datetime
from typing import Any

import orjson
import pytest

from mapping.history import history_facts
from tests.conftest import SHARED_DATA

ISSUES = SHARED_DATA / "jira_cloud_devlake_issues.jsonl.gz"
STATUSES = SHARED_DATA / "jira_cloud_devlake_statuses.jsonl.gz"
JIRA_TIME = "%Y-%m-%dT%H:%M:%S.%f%z"


def move(when: str, before: str, after: str, by: str = "", **extra: Any) -> dict[str, Any]:
    items = [{"field": "status", "fromCategory": before, "toCategory": after}]
    items += [{"field": k, **v} for k, v in extra.items()]
    return {"created": when, "items": items, "author": {"accountId": by} if by else {}}


def test_reopen_clears_the_resolution_time_and_the_last_resolution_counts() -> None:
    record = {
        "fields": {"status": {"name": "Failed", "statusCategory": {"key": "done"}}},
        "changelog": {
            "histories": [
                move("2026-05-01T09:00:00.000+0000", "new", "indeterminate"),
                move("2026-05-02T09:00:00.000+0000", "indeterminate", "done", by="agent"),
                move("2026-05-03T09:00:00.000+0000", "done", "indeterminate", by="customer"),
                move("2026-05-04T09:00:00.000+0000", "indeterminate", "done", by="robot"),
                {
                    "created": "2026-05-01T08:00:00.000+0000",
                    "items": [{"field": "assignee", "from": None, "to": "a"}],
                },
                {
                    "created": "2026-05-01T10:00:00.000+0000",
                    "items": [{"field": "assignee", "from": "a", "to": "b"}],
                },
            ]
        },
    }
    facts = history_facts(record)
    assert facts == {
        "resolved_at": "2026-05-04T09:00:00.000+0000",
        "resolved_by": "robot",  # who resolved it last, not the first resolver
        "reopen_count": 1,
        "reassignment_count": 1,
        "first_response_at": "2026-05-01T08:00:00.000+0000",
        "ended_in": "Failed",  # the status it ended in: a change's outcome
    }
    record["fields"]["status"] = {
        "name": "Implementing",
        "statusCategory": {"key": "indeterminate"},
    }
    reopened = history_facts(record)
    assert reopened["resolved_at"] is None and reopened["resolved_by"] is None  # open again
    assert reopened["ended_in"] is None  # an open issue has not ended in anything


def test_a_workflow_migration_is_not_a_reopen() -> None:
    record = {
        "fields": {"status": {"statusCategory": {"key": "new"}}},
        "changelog": {
            "histories": [
                move("2026-05-02T09:00:00.000+0000", "indeterminate", "done"),
                move(
                    "2026-05-03T09:00:00.000+0000",
                    "done",
                    "new",
                    Workflow={"fromString": "Old", "toString": "New"},
                ),
            ]
        },
    }
    assert history_facts(record)["reopen_count"] == 0


@pytest.mark.skipif(
    not (ISSUES.is_file() and STATUSES.is_file()), reason=f"real data not present at {ISSUES}"
)
def test_real_jira_histories_give_the_resolution_time_jira_recorded() -> None:
    with gzip.open(STATUSES) as handle:
        category = {str(s["id"]): s["statusCategory"]["key"] for s in map(orjson.loads, handle)}
    with gzip.open(ISSUES) as handle:
        issues = [orjson.loads(line) for line in handle]
    resolved = 0
    for issue in issues:
        for history in issue["changelog"]["histories"]:  # what the connector adds from /status
            for item in history["items"]:
                if item["field"] == "status":
                    item["fromCategory"] = category.get(str(item.get("from")))
                    item["toCategory"] = category.get(str(item.get("to")))
        facts = history_facts(issue)
        recorded = issue["fields"].get("resolutiondate")
        assert (facts["resolved_at"] is None) == (recorded is None), issue["key"]
        if recorded:
            resolved += 1
            gap = datetime.strptime(facts["resolved_at"], JIRA_TIME) - datetime.strptime(
                recorded, JIRA_TIME
            )
            assert abs(gap.total_seconds()) < 1, issue["key"]
        # The 14 "Resolved -> To Do" moves in this data came with workflow migrations.
        assert facts["reopen_count"] == 0, issue["key"]
    assert resolved == 30
