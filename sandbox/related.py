"""The tables around the incidents, generated consistently with them.

Changes some incidents were caused by, problems incidents are linked to, the
SLA cycles (task_sla) of every incident under the contract SLA of its
priority, request items under requests, and satisfaction survey answers about
resolved incidents. Every cross-reference points at a record that exists, so
a test can follow any link. Values are strings, as the Table API returns them
with ``sysparm_display_value=false``.
"""

from __future__ import annotations

import bisect
import random
from datetime import UTC, datetime, timedelta
from typing import Any

from sandbox.generator import PRIORITIES, SERVICES, SN_FORMAT

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
RESPONSE_GOAL_HOURS = {"1": 0.25, "2": 1.0, "3": 4.0, "4": 8.0, "5": 24.0}
CHANGE_TYPES = (("normal", 0.55), ("standard", 0.35), ("emergency", 0.10))
CHANGE_OUTCOMES = (("successful", 0.86), ("successful_issues", 0.08), ("unsuccessful", 0.06))
CATALOGUE_ITEMS = ("Standard Laptop", "Software Install", "Access Request", "New Mobile Phone")
SURVEY_QUESTION = "How satisfied are you with the resolution of your incident?"


def _fmt(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime(SN_FORMAT) if value else ""


def _duration(seconds: float) -> str:
    """ServiceNow durations are date-times counted from the epoch."""
    return (EPOCH + timedelta(seconds=int(max(seconds, 0)))).strftime(SN_FORMAT)


def _parse(value: str) -> datetime | None:
    return datetime.strptime(value, SN_FORMAT).replace(tzinfo=UTC) if value else None


def _sys_id(rng: random.Random) -> str:
    return f"{rng.getrandbits(128):032x}"


def _pick(rng: random.Random, weighted: tuple[tuple[str, float], ...]) -> str:
    return rng.choices([v for v, _ in weighted], weights=[w for _, w in weighted])[0]


def _updated(rng: random.Random, *moments: datetime | None, end: datetime) -> str:
    last = max(m for m in moments if m is not None)
    return _fmt(min(last + timedelta(seconds=rng.randrange(1, 300)), end))


def changes(
    rng: random.Random, count: int, *, start: datetime, end: datetime, group_ids: list[str]
) -> list[dict[str, Any]]:
    rows = []
    span = (end - start).total_seconds()
    for i in range(count):
        change_type = _pick(rng, CHANGE_TYPES)
        opened = start + timedelta(seconds=rng.uniform(0, span))
        planned_start = opened + timedelta(
            hours=rng.uniform(2, 24 if change_type == "emergency" else 240)
        )
        planned_end = planned_start + timedelta(hours=rng.uniform(0.5, 6))
        started = planned_start + timedelta(minutes=rng.uniform(-30, 60))
        ended = started + (planned_end - planned_start) * rng.uniform(0.6, 1.5)
        work_start: datetime | None = started
        work_end: datetime | None = ended
        closed: datetime | None = ended + timedelta(hours=rng.uniform(1, 72))
        state, close_code = "3", _pick(rng, CHANGE_OUTCOMES)
        if rng.random() < 0.05:
            state, close_code, work_start, work_end = "4", "", None, None
            closed = opened + timedelta(hours=rng.uniform(1, 48))
        elif closed and closed > end:
            state, close_code, closed = ("-1" if started < end else "-2"), "", None
            work_end = ended if ended <= end else None
            work_start = started if started <= end else None
        risk = _pick(rng, (("2", 0.1), ("3", 0.4), ("4", 0.5)))
        rows.append(
            {
                "sys_id": _sys_id(rng),
                "sys_class_name": "change_request",
                "number": f"CHG{30000 + i:07d}",
                "type": change_type,
                "state": state,
                "close_code": close_code,
                "risk": risk,
                "impact": "2",
                "urgency": "2" if change_type != "emergency" else "1",
                "priority": "2" if change_type == "emergency" else "3",
                "approval": "approved" if state != "4" else "rejected",
                "category": rng.choice(("Software", "Hardware", "Network", "Database")),
                "assignment_group": rng.choice(group_ids),
                "business_service": "",
                "opened_at": _fmt(opened),
                "sys_created_on": _fmt(opened),
                "start_date": _fmt(planned_start),
                "end_date": _fmt(planned_end),
                "work_start": _fmt(work_start),
                "work_end": _fmt(work_end),
                "closed_at": _fmt(closed),
                "active": "false" if closed else "true",
                "sys_updated_on": _updated(rng, opened, work_end, closed, end=end),
                "sys_mod_count": str(rng.randrange(4, 15)),
            }
        )
    return rows


def problems(
    rng: random.Random, count: int, *, start: datetime, end: datetime, group_ids: list[str]
) -> list[dict[str, Any]]:
    rows = []
    span = (end - start).total_seconds()
    for i in range(count):
        opened = start + timedelta(seconds=rng.uniform(0, span))
        resolved: datetime | None = opened + timedelta(days=rng.lognormvariate(3.0, 0.8))
        closed = resolved + timedelta(days=rng.uniform(1, 10)) if resolved else None
        state = "107"
        if resolved and resolved > end:
            resolved, closed, state = None, None, rng.choice(("101", "102", "103", "104"))
        elif closed and closed > end:
            closed, state = None, "106"
        rows.append(
            {
                "sys_id": _sys_id(rng),
                "sys_class_name": "problem",
                "number": f"PRB{40000 + i:07d}",
                "state": state,
                "problem_state": state,
                "priority": rng.choice(("2", "3", "3", "4")),
                "category": rng.choice(("software", "hardware", "network", "database")),
                "assignment_group": rng.choice(group_ids),
                "known_error": "true" if rng.random() < 0.3 else "false",
                "resolution_code": "fix_applied" if resolved else "",
                "first_reported_by_task": "",
                "opened_at": _fmt(opened),
                "sys_created_on": _fmt(opened),
                "resolved_at": _fmt(resolved),
                "closed_at": _fmt(closed),
                "active": "false" if closed else "true",
                "sys_updated_on": _updated(rng, opened, resolved, closed, end=end),
                "sys_mod_count": str(rng.randrange(3, 20)),
            }
        )
    return rows


def link_incidents(
    rng: random.Random,
    incidents: list[dict[str, Any]],
    change_rows: list[dict[str, Any]],
    problem_rows: list[dict[str, Any]],
) -> None:
    """Some incidents follow a change that caused them; some are tied to a problem."""
    implemented = sorted(
        (row for row in change_rows if row["work_end"]), key=lambda row: row["work_end"]
    )
    ends = [row["work_end"] for row in implemented]
    for incident in incidents:
        if implemented and rng.random() < 0.015:
            # the latest change finished within three days before the incident opened
            i = bisect.bisect_left(ends, incident["opened_at"]) - 1
            opened = _parse(incident["opened_at"])
            change_end = _parse(ends[i]) if i >= 0 else None
            if opened and change_end and opened - change_end <= timedelta(days=3):
                incident["caused_by"] = implemented[i]["sys_id"]
                incident["business_service"] = implemented[i]["business_service"]
        if problem_rows and rng.random() < 0.08:
            problem = rng.choice(problem_rows)
            incident["problem_id"] = problem["sys_id"]
            if not problem["first_reported_by_task"]:
                problem["first_reported_by_task"] = incident["sys_id"]


def contract_slas(rng: random.Random) -> list[dict[str, Any]]:
    rows = []
    for priority, (_, _, resolve_hours) in PRIORITIES.items():
        for target, hours in (
            ("resolution", resolve_hours),
            ("response", RESPONSE_GOAL_HOURS[priority]),
        ):
            rows.append(
                {
                    "sys_id": _sys_id(rng),
                    "name": f"P{priority} {target} ({hours:g}h)",
                    "type": "SLA",
                    "target": target,
                    "collection": "incident",
                    "duration": _duration(hours * 3600),
                    "sys_updated_on": "2020-01-01 00:00:00",
                    "priority": priority,
                }
            )
    return rows


def task_slas(
    rng: random.Random,
    incidents: list[dict[str, Any]],
    definitions: list[dict[str, Any]],
    *,
    end: datetime,
) -> list[dict[str, Any]]:
    """A response and a resolution cycle per incident, agreeing with the incident's made_sla."""
    by_key = {(d["priority"], d["target"]): d for d in definitions}
    rows = []
    for incident in incidents:
        opened = _parse(incident["opened_at"])
        assert opened is not None
        resolved = _parse(incident["resolved_at"])
        cancelled = incident["state"] == "8"
        for target in ("response", "resolution"):
            definition = by_key[(incident["priority"], target)]
            goal = timedelta(seconds=_seconds(definition["duration"]))
            if target == "resolution":
                stop = resolved
                breached = incident["made_sla"] == "false"
            else:
                stop = opened + min(goal * rng.uniform(0.05, 1.3), end - opened)
                breached = stop - opened > goal
            stage = "completed" if stop else "in_progress"
            if cancelled:
                stage, breached = "cancelled", False
                stop = _parse(incident["closed_at"])
            elapsed = ((stop or end) - opened).total_seconds()
            rows.append(
                {
                    "sys_id": _sys_id(rng),
                    "task": incident["sys_id"],
                    "sla": definition["sys_id"],
                    "stage": stage,
                    "has_breached": "true" if breached else "false",
                    "active": "true" if stage == "in_progress" else "false",
                    "start_time": incident["opened_at"],
                    "end_time": _fmt(stop) if stage != "in_progress" else "",
                    "planned_end_time": _fmt(opened + goal),
                    "duration": _duration(elapsed),
                    "business_duration": _duration(elapsed * 0.4),
                    "pause_duration": _duration(0),
                    "percentage": f"{100 * elapsed / goal.total_seconds():.2f}",
                    "sys_created_on": incident["opened_at"],
                    "sys_updated_on": _updated(rng, stop or opened, end=end),
                }
            )
    return rows


def _seconds(duration: str) -> float:
    moment = _parse(duration)
    assert moment is not None
    return (moment - EPOCH).total_seconds()


def requests_and_items(
    rng: random.Random, count: int, *, start: datetime, end: datetime, group_ids: list[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Catalogue items, requests, and ``count`` request items (one to three per request)."""
    items = [
        {"sys_id": _sys_id(rng), "name": name, "sys_updated_on": "2020-01-01 00:00:00"}
        for name in CATALOGUE_ITEMS
    ]
    request_rows: list[dict[str, Any]] = []
    item_rows: list[dict[str, Any]] = []
    span = (end - start).total_seconds()
    while len(item_rows) < count:
        opened = start + timedelta(seconds=rng.uniform(0, span))
        request = {
            "sys_id": _sys_id(rng),
            "sys_class_name": "sc_request",
            "number": f"REQ{50000 + len(request_rows):07d}",
            "opened_at": _fmt(opened),
            "sys_updated_on": _fmt(opened),
        }
        request_rows.append(request)
        for _ in range(min(rng.choice((1, 1, 1, 2, 3)), count - len(item_rows))):
            due = opened + timedelta(days=rng.choice((2, 3, 5)))
            closed: datetime | None = opened + timedelta(hours=rng.lognormvariate(3.3, 0.9))
            state = "3" if rng.random() < 0.93 else rng.choice(("4", "7"))
            if closed and closed > end:
                closed, state = None, rng.choice(("1", "2"))
            item_rows.append(
                {
                    "sys_id": _sys_id(rng),
                    "sys_class_name": "sc_req_item",
                    "number": f"RITM{60000 + len(item_rows):07d}",
                    "request": request["sys_id"],
                    "cat_item": rng.choice(items)["sys_id"],
                    "state": state,
                    "priority": "4",
                    "assignment_group": rng.choice(group_ids),
                    "reassignment_count": str(min(int(rng.expovariate(2.0)), 3)),
                    "opened_at": _fmt(opened),
                    "sys_created_on": _fmt(opened),
                    "due_date": _fmt(due),
                    "closed_at": _fmt(closed),
                    "active": "false" if closed else "true",
                    "sys_updated_on": _updated(rng, opened, closed, end=end),
                }
            )
    return items, request_rows, item_rows


def surveys(
    rng: random.Random, incidents: list[dict[str, Any]], *, end: datetime
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """One question, instances sent for some resolved incidents, answers for about a quarter."""
    question = {
        "sys_id": _sys_id(rng),
        "name": SURVEY_QUESTION,
        "datatype": "scale",
        "scale_factor": "5",
        "sys_updated_on": "2020-01-01 00:00:00",
    }
    instances: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for incident in incidents:
        resolved = _parse(incident["resolved_at"])
        if resolved is None or rng.random() > 0.6:
            continue
        answered = rng.random() < 0.4
        taken = resolved + timedelta(hours=rng.uniform(0.5, 96))
        if taken > end:
            answered = False
        instance = {
            "sys_id": _sys_id(rng),
            "number": f"AINST{70000 + len(instances):07d}",
            "trigger_id": incident["sys_id"],
            "trigger_table": "incident",
            "state": "complete" if answered else "ready",
            "taken_on": _fmt(taken) if answered else "",
            "sys_updated_on": _fmt(taken if answered else resolved),
        }
        instances.append(instance)
        if answered:
            slow = incident["made_sla"] == "false"
            weights = (0.08, 0.08, 0.14, 0.35, 0.35) if slow else (0.02, 0.03, 0.07, 0.28, 0.60)
            rating = rng.choices(("1", "2", "3", "4", "5"), weights=weights)[0]
            results.append(
                {
                    "sys_id": _sys_id(rng),
                    "instance": instance["sys_id"],
                    "metric": question["sys_id"],
                    "actual_value": rating,
                    "sys_created_on": _fmt(taken),
                    "sys_updated_on": _fmt(taken),
                }
            )
    return [question], instances, results


def related_tables(
    rng: random.Random,
    incidents: list[dict[str, Any]],
    *,
    end: datetime,
    groups: list[dict[str, Any]],
    days: int = 365,
) -> dict[str, list[dict[str, Any]]]:
    """Every table around ``incidents``, at sizes in proportion to them, linked both ways,
    over the same ``days`` before ``end``."""
    start = end - timedelta(days=days)
    group_ids = [g["sys_id"] for g in groups]
    count = len(incidents)
    change_rows = changes(rng, max(1, count // 10), start=start, end=end, group_ids=group_ids)
    services = random.Random(len(change_rows))  # its own stream: no other value moved
    for row in change_rows:
        row["business_service"] = services.choice(SERVICES)
    problem_rows = problems(rng, max(1, count // 40), start=start, end=end, group_ids=group_ids)
    link_incidents(rng, incidents, change_rows, problem_rows)
    definitions = contract_slas(rng)
    items, request_rows, item_rows = requests_and_items(
        rng, max(1, count // 2), start=start, end=end, group_ids=group_ids
    )
    questions, instances, answers = surveys(rng, incidents, end=end)
    return {
        "change_request": change_rows,
        "problem": problem_rows,
        "contract_sla": definitions,
        "task_sla": task_slas(rng, incidents, definitions, end=end),
        "sc_cat_item": items,
        "sc_request": request_rows,
        "sc_req_item": item_rows,
        "asmt_metric": questions,
        "asmt_assessment_instance": instances,
        "asmt_metric_result": answers,
    }
