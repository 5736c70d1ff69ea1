"""Facts read from a record's change history, for sources whose current fields forget them.

Jira clears ``resolutiondate`` on reopen and keeps no reopen or reassignment
counters, so the lifecycle is read from the changelog: status moves carry the
category they move from and to (``fromCategory``/``toCategory``, added by
the connector from ``/status``), so local-language status names still work.
Mapping files name these facts as ``@history.<fact>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

FACTS = frozenset(
    {
        "resolved_at",
        "resolved_by",
        "reopen_count",
        "reassignment_count",
        "first_response_at",
        "ended_in",
    }
)
DONE = "done"
NEW = "new"


def history_facts(record: Mapping[str, Any]) -> dict[str, Any]:
    """``resolved_at``: when the issue was last resolved, if it still is; ``reopen_count``: how
    often a resolution was undone; ``reassignment_count``: assignee changes after the first
    assignment; ``first_response_at``: the first move out of the new category or the first
    assignment, whichever came first; ``resolved_by``: who made the change that resolved it
    (account id on Cloud, user name on Data Center); ``ended_in``: the name of the status a
    resolved issue is in ("Failed", "Canceled"), None while it is open — a change's outcome
    where the workflow records it as a status. Times stay as the source wrote them.

    Resolution is read from ``resolution`` changes where the history has them (Jira sets
    ``resolutiondate`` with the resolution, and sites delete statuses, so a status's category
    can be unknown); from moves into and out of the done category otherwise."""
    histories = sorted(
        (record.get("changelog") or {}).get("histories") or [], key=lambda h: str(h.get("created"))
    )
    # A status move recorded with a workflow change is a scheme migration, not a user's act.
    items = [
        (
            h.get("created"),
            item,
            any(i.get("field") == "Workflow" for i in h.get("items") or []),
            _author(h),
        )
        for h in histories
        for item in h.get("items") or []
    ]
    by_resolution = any(item.get("field") == "resolution" for _, item, _, _ in items)
    resolved_at: str | None = None
    resolved_by: str | None = None
    resolved = False
    reopens = reassignments = 0
    first_response: str | None = None
    for when, item, migration, author in items:
        field = item.get("field")
        if field == "resolution" and by_resolution:
            if item.get("to"):
                resolved_at, resolved, resolved_by = when, True, author
            elif item.get("from"):
                reopens += 1
                resolved = False
        elif field == "status":
            before, after = item.get("fromCategory"), item.get("toCategory")
            if not by_resolution and not migration:
                if after == DONE and before != DONE:
                    resolved_at, resolved, resolved_by = when, True, author
                elif before == DONE and after not in (DONE, None):
                    reopens += 1
                    resolved = False
            if before == NEW and after not in (NEW, None) and first_response is None:
                first_response = when
        elif field == "assignee":
            if item.get("from"):
                reassignments += 1
            elif item.get("to") and first_response is None:
                first_response = when
    fields = record.get("fields") or {}
    if "resolution" in fields and by_resolution:
        resolved = fields.get("resolution") is not None
    elif ((fields.get("status") or {}).get("statusCategory") or {}).get("key") is not None:
        resolved = fields["status"]["statusCategory"]["key"] == DONE
    return {
        "resolved_at": resolved_at if resolved else None,
        "resolved_by": resolved_by if resolved else None,
        "reopen_count": reopens,
        "reassignment_count": reassignments,
        "first_response_at": first_response,
        "ended_in": (fields.get("status") or {}).get("name") if resolved else None,
    }


def _author(history: Mapping[str, Any]) -> str | None:
    author = history.get("author") or {}
    value = author.get("accountId") or author.get("name") or author.get("displayName")
    return str(value) if value else None
