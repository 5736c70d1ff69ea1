"""Seeded Jira Service Management data: incidents, service requests and changes with real-looking histories.

Issues carry the JSM custom fields a real site has — request type, the SLA
fields "Time to first response" and "Time to resolution" (cycles with goal,
elapsed, breached, ongoing or completed) — and a changelog: status moves
through the workflow (sometimes a reopen), assignee changes. Changes carry
JSM's "Change type" select list (Standard / Normal / Emergency) and some end
in a "Failed" status. Ids of custom fields are arbitrary per site, and a
plain number field is deliberately also called "Time to resolution":
connectors must find fields by schema, and by name only where no schema
type tells a field apart (then an empty field of the same name comes first).
Times are aware UTC datetimes here; the emulator renders them in the
user's zone.
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

SLA_SCHEMA = "com.atlassian.servicedesk:sd-sla-field"
FEEDBACK_SCHEMA = "com.atlassian.servicedesk:sd-request-feedback"
FEEDBACK_DATE_SCHEMA = "com.atlassian.servicedesk:sd-request-feedback-date"
REQUEST_TYPE_SCHEMA = "com.atlassian.servicedesk:vp-origin"
FIELD_IDS = {
    "request_type": "customfield_10010",
    "time_to_resolution": "customfield_10030",
    "time_to_first_response": "customfield_10031",
    "decoy_time_to_resolution": "customfield_10099",
    "satisfaction": "customfield_10040",
    "satisfaction_date": "customfield_10041",
    "change_type": "customfield_10050",
    "decoy_change_type": "customfield_10098",  # another project's "Change type", never filled
}
SELECT_SCHEMA = "com.atlassian.jira.plugin.system.customfieldtypes:select"
# JSM's change fields: (option id, value) and share of changes
CHANGE_TYPES = (("10200", "Standard", 0.45), ("10201", "Normal", 0.45), ("10202", "Emergency", 0.1))
FAILED_SHARE = 0.12  # completed changes that end in "Failed"
# (id, name, category id, category key, category name)
STATUSES = {
    "open": ("1", "Open", 2, "new", "To Do"),
    "progress": ("3", "Work in progress", 4, "indeterminate", "In Progress"),
    "pending": ("10002", "Pending", 4, "indeterminate", "In Progress"),
    "resolved": ("5", "Resolved", 3, "done", "Done"),
    "closed": ("6", "Closed", 3, "done", "Done"),
    "canceled": ("10003", "Canceled", 3, "done", "Done"),
    "failed": ("10004", "Failed", 3, "done", "Done"),  # a change's unsuccessful end
}
ISSUE_TYPES = {
    "incident": ("10100", "[System] Incident"),
    "request": ("10101", "[System] Service request"),
    "change": ("10102", "[System] Change"),
    "problem": ("10103", "[System] Problem"),
}
PRIORITIES = (
    ("1", "Highest", 0.03, 4),
    ("2", "High", 0.12, 8),
    ("3", "Medium", 0.5, 24),
    ("4", "Low", 0.35, 72),
)
AGENTS = [f"5b10ac8d82e05b22cc7d4e{i:03d}" for i in range(12)]
AUTOMATION = "557058:f58131cb-b67d-43c7-b30d-6b58d40bd077"  # "Automation for Jira" on Cloud
# components standing for services
SERVICES = ("Email", "VPN", "ERP", "Website", "Payroll", "Wi-Fi", "Printing", "CRM", "HR portal")
CAUSE = {"id": "10002", "name": "Cause", "inward": "is caused by", "outward": "causes"}
# JSM's own type for problems and their incidents: the same phrase as a change's cause
PROBLEM_CAUSE = {
    "id": "10003",
    "name": "Problem/Incident",
    "inward": "is caused by",
    "outward": "causes",
}
PROBLEMS_EVERY = 66  # one issue in 66 is a problem (one for every 40 incidents)
PROBLEM_LINKED = 0.1  # incidents linked to a problem opened before them


@dataclass
class JiraDataset:
    issues: list[dict[str, Any]]
    histories: dict[str, list[dict[str, Any]]]  # issue id -> histories, oldest first
    fields: list[dict[str, Any]] = field(default_factory=list)


def field_definitions() -> list[dict[str, Any]]:
    """``/rest/api/2/field`` of the generated site (system fields abridged)."""
    system = [
        ("summary", "Summary", "string"),
        ("status", "Status", "status"),
        ("issuetype", "Issue Type", "issuetype"),
        ("project", "Project", "project"),
        ("priority", "Priority", "priority"),
        ("resolution", "Resolution", "resolution"),
        ("resolutiondate", "Resolved", "datetime"),
        ("created", "Created", "datetime"),
        ("updated", "Updated", "datetime"),
        ("assignee", "Assignee", "user"),
    ]
    fields = [
        {
            "id": fid,
            "key": fid,
            "name": name,
            "custom": False,
            "orderable": True,
            "navigable": True,
            "searchable": True,
            "clauseNames": [fid],
            "schema": {"type": kind, "system": fid},
        }
        for fid, name, kind in system
    ]

    def custom(fid: str, name: str, kind: str, schema: str) -> dict[str, Any]:
        number = fid.rsplit("_", 1)[1]
        return {
            "id": fid,
            "key": fid,
            "name": name,
            "untranslatedName": name,
            "custom": True,
            "orderable": True,
            "navigable": True,
            "searchable": True,
            "clauseNames": [f"cf[{number}]", name],
            "schema": {"type": kind, "custom": schema, "customId": int(number)},
        }

    fields += [
        custom(
            FIELD_IDS["request_type"], "Request Type", "sd-customerrequesttype", REQUEST_TYPE_SCHEMA
        ),
        custom(
            FIELD_IDS["time_to_resolution"],
            "Time to resolution",
            "sd-servicelevelagreement",
            SLA_SCHEMA,
        ),
        custom(
            FIELD_IDS["time_to_first_response"],
            "Time to first response",
            "sd-servicelevelagreement",
            SLA_SCHEMA,
        ),
        custom(FIELD_IDS["satisfaction"], "Satisfaction", "sd-feedback", FEEDBACK_SCHEMA),
        custom(
            FIELD_IDS["satisfaction_date"], "Satisfaction date", "datetime", FEEDBACK_DATE_SCHEMA
        ),
        custom(
            FIELD_IDS["decoy_time_to_resolution"],
            "Time to resolution",
            "number",
            "com.atlassian.jira.plugin.system.customfieldtypes:float",
        ),
        # Two fields share the name, as on sites with several change projects; the first
        # listed is never filled here.
        custom(FIELD_IDS["decoy_change_type"], "Change type", "option", SELECT_SCHEMA),
        custom(FIELD_IDS["change_type"], "Change type", "option", SELECT_SCHEMA),
    ]
    return fields


def _status(name: str) -> dict[str, Any]:
    sid, label, cid, ckey, cname = STATUSES[name]
    return {"id": sid, "name": label, "statusCategory": {"id": cid, "key": ckey, "name": cname}}


def _user(account: str) -> dict[str, Any]:
    return {"accountId": account, "displayName": f"Agent {account[-3:]}", "active": True}


def _cycle(
    start: datetime, stop: datetime | None, goal_hours: float, now: datetime
) -> dict[str, Any]:
    goal = timedelta(hours=goal_hours)
    elapsed = (stop or now) - start
    return {
        "start": start,
        "stop": stop,
        "breach": start + goal,
        "breached": elapsed > goal,
        "goal_ms": int(goal.total_seconds() * 1000),
        "elapsed_ms": int(elapsed.total_seconds() * 1000),
    }


def generate_jira(
    count: int, *, end: datetime, seed: int = 42, project: str = "ITSM", days: int = 365
) -> JiraDataset:
    """``count`` issues over the ``days`` (a year) before ``end``: one in 66 a problem, the
    rest 60 % incidents, 30 % requests, 10 % changes."""
    rng = random.Random(seed)
    feedback = random.Random(seed + 1)  # its own stream: the rest of the data does not move
    extras = random.Random(seed + 2)  # services, labels, links, automation: their own stream
    outcomes = random.Random(seed + 3)  # change types and failures: their own stream
    changes: list[dict[str, Any]] = []
    linkable: list[dict[str, Any]] = []  # incidents, linked to changes once all exist
    start = end - timedelta(days=days)
    issues: list[dict[str, Any]] = []
    histories: dict[str, list[dict[str, Any]]] = {}
    history_id = 100000
    problem_count = count // PROBLEMS_EVERY
    for i in range(count - problem_count):
        kind = rng.choices(("incident", "request", "change"), weights=(0.6, 0.3, 0.1))[0]
        pid, pname, _, goal_hours = rng.choices(PRIORITIES, weights=[p[2] for p in PRIORITIES])[0]
        created = start + timedelta(seconds=rng.uniform(0, days * 86400))
        issue_id = str(20000 + i)
        events: list[tuple[datetime, list[dict[str, Any]]]] = []
        workflow = {"status": "open"}
        moment = created
        first_response = moment + timedelta(minutes=rng.lognormvariate(math.log(45), 1.0))
        assignee: str | None = None
        resolved_at: datetime | None = None
        cancelled = rng.random() < 0.03
        change_type = _pick_change_type(outcomes) if kind == "change" else None
        ending = "failed" if kind == "change" and outcomes.random() < FAILED_SHARE else "resolved"

        def move(
            to: str,
            at: datetime,
            events: list[tuple[datetime, list[dict[str, Any]]]] = events,
            workflow: dict[str, str] = workflow,
        ) -> None:
            events.append((at, [_status_item(workflow["status"], to)]))
            workflow["status"] = to

        if first_response < end:
            assignee = rng.choice(AGENTS)
            events.append((first_response, [_assignee_item(None, assignee)]))
            move("progress", first_response + timedelta(seconds=5))
            moment = first_response
            hours = math.exp(rng.gauss(math.log(goal_hours * 0.7), 0.9))
            for _ in range(min(int(rng.expovariate(1.5)), 3)):  # reassignments
                at = moment + timedelta(hours=rng.uniform(0.2, hours / 2 + 0.3))
                if at >= end:
                    break
                new = rng.choice([a for a in AGENTS if a != assignee])
                events.append((at, [_assignee_item(assignee, new)]))
                assignee, moment = new, at
            done = created + timedelta(hours=hours)
            if cancelled and done < end:
                move("canceled", done)
                resolved_at = done
            elif done < end:
                move(ending, done)
                resolved_at = done
                if rng.random() < 0.06:  # the customer reopens it
                    reopen = done + timedelta(hours=rng.uniform(1, 48))
                    if reopen < end:
                        move("progress", reopen)
                        resolved_at = None
                        again = reopen + timedelta(hours=rng.uniform(2, 30))
                        if again < end:
                            move(ending, again)
                            resolved_at = again
                if (
                    resolved_at
                    and resolved_at + timedelta(days=3) < end
                    and workflow["status"] == "resolved"
                ):
                    move("closed", resolved_at + timedelta(days=3))
        status = workflow["status"]
        updated = max([created] + [at for at, _ in events])
        issue_histories = []
        for at, items in sorted(events, key=lambda e: e[0]):
            history_id += 1
            issue_histories.append(
                {
                    "id": str(history_id),
                    "author": _user(rng.choice(AGENTS)),
                    "created": at,
                    "items": items,
                }
            )
        histories[issue_id] = issue_histories
        type_id, type_name = ISSUE_TYPES[kind]
        fields: dict[str, Any] = {
            "summary": f"{type_name.split('] ')[1]} {i}",
            "project": {"id": "10000", "key": project, "name": "IT Service Management"},
            "issuetype": {"id": type_id, "name": type_name, "subtask": False},
            "status": _status(status),
            "priority": {"id": pid, "name": pname},
            "resolution": (
                {"id": "10001", "name": "Won't Do" if status == "canceled" else "Done"}
                if resolved_at and status in ("resolved", "closed", "canceled", "failed")
                else None
            ),
            "resolutiondate": resolved_at,
            "created": created,
            "updated": updated,
            "assignee": _user(assignee) if assignee else None,
            FIELD_IDS["decoy_time_to_resolution"]: round(rng.uniform(1, 9), 1),
        }
        if kind in ("incident", "request"):
            fields[FIELD_IDS["request_type"]] = {
                "requestType": {
                    "id": "12" if kind == "incident" else "13",
                    "name": "Report a system problem" if kind == "incident" else "Get IT help",
                    "issueTypeId": type_id,
                    "serviceDeskId": "1",
                },
                "currentStatus": {
                    "status": STATUSES[status][1],
                    "statusCategory": STATUSES[status][3].upper(),
                },
            }
            response_stop = first_response if first_response < end else None
            fields[FIELD_IDS["time_to_first_response"]] = {
                "id": "1",
                "name": "Time to first response",
                "cycles": [_cycle(created, response_stop, max(goal_hours / 8, 0.5), end)],
            }
            resolution_stop = resolved_at if not cancelled else None
            fields[FIELD_IDS["time_to_resolution"]] = (
                None
                if cancelled
                else {
                    "id": "2",
                    "name": "Time to resolution",
                    "cycles": [_cycle(created, resolution_stop, goal_hours, end)],
                }
            )
        if change_type is not None:
            option_id, value, _ = change_type
            fields[FIELD_IDS["change_type"]] = {"id": option_id, "value": value}
        if kind in ("incident", "request") and resolved_at and feedback.random() < 0.3:
            answered = resolved_at + timedelta(hours=feedback.uniform(1, 72))
            if answered < end:
                rating = feedback.choices((1, 2, 3, 4, 5), weights=(4, 4, 10, 30, 52))[0]
                fields[FIELD_IDS["satisfaction"]] = {"_links": {}, "rating": rating}
                fields[FIELD_IDS["satisfaction_date"]] = answered
                updated = max(updated, answered)
                fields["updated"] = updated
        _extras(
            extras, kind, fields, issue_histories, changes, linkable, issue_id, f"{project}-{i + 1}"
        )
        issues.append(
            {
                "id": issue_id,
                "key": f"{project}-{i + 1}",
                "fields": fields,
                "_created": created,
                "_updated": updated,
                "_resolved": resolved_at,
            }
        )
    _link_causes(extras, linkable, changes)
    problems = _problems(
        random.Random(seed + 4),
        linkable,
        problem_count,
        start=start,
        end=end,
        first=count - problem_count,
        project=project,
    )
    for problem, problem_histories in problems:
        issues.append(problem)
        histories[problem["id"]] = problem_histories
    return JiraDataset(issues=issues, histories=histories, fields=field_definitions())


def _summary(issue: dict[str, Any]) -> dict[str, Any]:
    """A linked issue as Jira summarises it inside ``issuelinks``."""
    fields = issue["fields"]
    return {
        "id": issue["id"],
        "key": issue["key"],
        "fields": {
            "summary": fields["summary"],
            "status": fields["status"],
            "priority": fields["priority"],
            "issuetype": fields["issuetype"],
        },
    }


def _problems(
    rng: random.Random,
    incidents: list[dict[str, Any]],
    count: int,
    *,
    start: datetime,
    end: datetime,
    first: int,
    project: str,
) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """``count`` problems (numbered after the other issues, from their own random stream),
    each with its history; some incidents are linked "is caused by" to a problem opened
    before them — listed ahead of a change's link, as a site may order them."""
    made: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    for j in range(count):
        issue_id, key = str(20000 + first + j), f"{project}-{first + j + 1}"
        created = start + (end - start) * rng.random()
        _, pname, _, _ = rng.choice(PRIORITIES)
        workflow, events = "open", []
        analysed = created + timedelta(hours=rng.uniform(1, 72))
        if analysed < end:
            events.append((analysed, _status_item("open", "progress")))
            workflow = "progress"
            fixed = analysed + timedelta(days=rng.lognormvariate(2.5, 0.8))
            if fixed < end:
                events.append((fixed, _status_item("progress", "resolved")))
                workflow = "resolved"
        resolved = events[-1][0] if workflow == "resolved" else None
        type_id, type_name = ISSUE_TYPES["problem"]
        fields: dict[str, Any] = {
            "summary": f"Problem {j}",
            "project": {"id": "10000", "key": project, "name": "IT Service Management"},
            "issuetype": {"id": type_id, "name": type_name, "subtask": False},
            "status": _status(workflow),
            "priority": next({"id": p[0], "name": p[1]} for p in PRIORITIES if p[1] == pname),
            "resolution": {"id": "10000", "name": "Done"} if resolved else None,
            "resolutiondate": resolved,
            "created": created,
            "updated": events[-1][0] if events else created,
            "assignee": _user(rng.choice(AGENTS)),
            "labels": [],
            "issuelinks": [],
            "components": [],
        }
        problem = {
            "id": issue_id,
            "key": key,
            "fields": fields,
            "_created": created,
            "_updated": fields["updated"],
            "_resolved": resolved,
        }
        problem_histories = [
            {"id": f"7{issue_id}{n}", "author": _user(AGENTS[0]), "created": at, "items": [item]}
            for n, (at, item) in enumerate(events)
        ]
        made.append((problem, problem_histories))
    by_opening = sorted((p for p, _ in made), key=lambda p: p["fields"]["created"])
    openings = [p["fields"]["created"] for p in by_opening]
    for incident in incidents:
        fields = incident["fields"]
        known = bisect.bisect_left(openings, fields["created"])
        if known == 0 or rng.random() >= PROBLEM_LINKED:
            continue
        problem = by_opening[rng.randrange(known)]
        link = {"id": f"4{incident['id']}", "type": PROBLEM_CAUSE}
        fields["issuelinks"].insert(0, link | {"inwardIssue": _summary(problem)})
        problem["fields"]["issuelinks"].append(link | {"outwardIssue": _summary(incident)})
    return made


def _link_causes(
    rng: random.Random, incidents: list[dict[str, Any]], changes: list[dict[str, Any]]
) -> None:
    """Some incidents are linked "is caused by" to the change that finished last within
    three days before they were created (and take that change's service)."""
    done = sorted(
        (c for c in changes if c["fields"]["resolutiondate"] is not None),
        key=lambda c: c["fields"]["resolutiondate"],
    )
    ends = [c["fields"]["resolutiondate"] for c in done]
    for incident in incidents:
        fields = incident["fields"]
        i = bisect.bisect_right(ends, fields["created"]) - 1
        if i < 0 or fields["created"] - ends[i] > timedelta(days=3) or rng.random() >= 0.08:
            continue
        change = done[i]
        link = {"id": f"3{incident['id']}", "type": CAUSE}
        fields["issuelinks"].append(link | {"inwardIssue": _summary(change)})
        change["fields"]["issuelinks"].append(link | {"outwardIssue": _summary(incident)})
        fields["components"] = list(change["fields"]["components"])


def _extras(
    rng: random.Random,
    kind: str,
    fields: dict[str, Any],
    histories: list[dict[str, Any]],
    changes: list[dict[str, Any]],
    incidents: list[dict[str, Any]],
    issue_id: str,
    key: str,
) -> None:
    """A service (component), a "kb-used" label, and automation resolving some low ones."""
    fields["labels"] = []
    fields["issuelinks"] = []
    fields["components"] = []
    if kind in ("incident", "change") and rng.random() < 0.7:
        service = rng.choice(SERVICES)
        fields["components"] = [{"id": str(10100 + SERVICES.index(service)), "name": service}]
    if kind == "change":
        changes.append({"id": issue_id, "key": key, "fields": fields})
        return
    if kind == "incident":
        incidents.append({"id": issue_id, "key": key, "fields": fields})
    if kind != "incident":
        return
    if rng.random() < 0.25:
        fields["labels"].append("kb-used")
    low = fields["priority"]["name"] in ("Low", "Lowest")
    if fields["resolutiondate"] is not None and low and rng.random() < 0.15:
        resolving = [h for h in histories if any(_resolves(i) for i in h["items"])]
        if resolving:
            resolving[-1]["author"] = {
                "accountId": AUTOMATION,
                "displayName": "Automation for Jira",
                "active": True,
            }


def _pick_change_type(rng: random.Random) -> tuple[str, str, float]:
    return rng.choices(CHANGE_TYPES, weights=[t[2] for t in CHANGE_TYPES])[0]


def _resolves(item: dict[str, Any]) -> bool:
    return item.get("field") == "status" and item.get("to") == STATUSES["resolved"][0]


def _status_item(before: str, after: str) -> dict[str, Any]:
    return {
        "field": "status",
        "fieldtype": "jira",
        "fieldId": "status",
        "from": STATUSES[before][0],
        "fromString": STATUSES[before][1],
        "to": STATUSES[after][0],
        "toString": STATUSES[after][1],
    }


def _assignee_item(before: str | None, after: str) -> dict[str, Any]:
    return {
        "field": "assignee",
        "fieldtype": "jira",
        "fieldId": "assignee",
        "from": before,
        "fromString": f"Agent {before[-3:]}" if before else None,
        "to": after,
        "toString": f"Agent {after[-3:]}",
    }


def statuses() -> list[dict[str, Any]]:
    """``/rest/api/2/status``."""
    return [_status(name) for name in STATUSES]


UTC_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
