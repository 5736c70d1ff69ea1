"""Seeded generator of a realistic ServiceNow incident year.

Shapes follow what real desks show: priorities skewed towards P3/P4,
log-normal resolution times whose median grows as priority falls, weekday and
office-hour arrivals, some reassigned, reopened, cancelled and breached
records, auto-closure a few days after resolution. Every value is a string, as
the Table API returns it with ``sysparm_display_value=false``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

SN_FORMAT = "%Y-%m-%d %H:%M:%S"

# priority -> (share of incidents, median hours to resolve, resolution SLA goal in hours)
PRIORITIES = {
    "1": (0.015, 3.0, 4.0),
    "2": (0.07, 7.0, 8.0),
    "3": (0.40, 14.0, 24.0),
    "4": (0.46, 30.0, 72.0),
    "5": (0.055, 90.0, 240.0),
}
# priority -> (impact, urgency) consistent with the base lookup (sum 2->1 ... 6->5)
IMPACT_URGENCY = {
    "1": ("1", "1"),
    "2": ("1", "2"),
    "3": ("2", "2"),
    "4": ("2", "3"),
    "5": ("3", "3"),
}
GROUPS = (
    ("Service Desk", "1", 0.0),
    ("Desktop Support", "2", 0.35),
    ("Network Operations", "2", 0.2),
    ("Application Support", "2", 0.25),
    ("Database Administration", "3", 0.1),
    ("Identity & Access", "2", 0.1),
)
CATEGORIES = ("inquiry", "software", "hardware", "network", "database")
# business services (cmdb_ci_service sys_ids): incidents and changes name one, or none
SERVICES = tuple(f"{0x5E12 + i:04x}{'0' * 24}{i:04x}" for i in range(40))
AGENTS_PER_GROUP = 8
AUTOMATION_USER = "a0be0e1000000000000000000000a070"
"""The sys_id of the instance's automation user (flows, auto-resolution), named in the mapping."""
CONTACT_TYPES = (
    ("phone", 0.35),
    ("email", 0.25),
    ("self-service", 0.3),
    ("chat", 0.07),
    ("walk-in", 0.03),
)
CLOSE_CODES = (
    ("Solution provided", 0.7),
    ("Workaround provided", 0.12),
    ("Resolved by caller", 0.08),
    ("Duplicate", 0.03),
    ("User error", 0.07),
)
SHORT_DESCRIPTIONS = (
    "Unable to connect to VPN",
    "Outlook keeps asking for password",
    "Laptop does not boot",
    "Printer on 3rd floor offline",
    "Cannot access shared drive",
    "Application error when saving invoice",
    "Request password reset",
    "Slow network in building B",
    "Database job failed overnight",
    "Teams calls drop after 5 minutes",
)


@dataclass(frozen=True)
class Dataset:
    """Tables keyed by name, each a list of string-valued records."""

    tables: dict[str, list[dict[str, Any]]]


def _sys_id(rng: random.Random) -> str:
    return f"{rng.getrandbits(128):032x}"


def _pick(rng: random.Random, weighted: tuple[tuple[str, float], ...]) -> str:
    return rng.choices([v for v, _ in weighted], weights=[w for _, w in weighted])[0]


def _fmt(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime(SN_FORMAT) if value else ""


def _arrival(rng: random.Random, start: datetime, days: int) -> datetime:
    """Weekdays carry most of the load, and office hours most of each day."""
    while True:
        day = start + timedelta(days=rng.randrange(days))
        if day.weekday() < 5 or rng.random() < 0.25:
            break
    hour = rng.gauss(12.5, 3.0) if rng.random() < 0.85 else rng.uniform(0, 24)
    seconds = int(min(max(hour, 0.0), 23.99) * 3600) + rng.randrange(60)
    return day.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(seconds=seconds)


def groups(rng: random.Random) -> list[dict[str, Any]]:
    return [
        {
            "sys_id": _sys_id(rng),
            "name": name,
            "u_tier": tier,
            "active": "true",
            "type": "itil",
            "sys_updated_on": "2020-01-01 00:00:00",
            "sys_created_on": "2020-01-01 00:00:00",
        }
        for name, tier, _ in GROUPS
    ]


def incidents(
    count: int, *, end: datetime, days: int = 365, seed: int = 42, group_rows: list[dict[str, Any]]
) -> Iterator[dict[str, Any]]:
    """Yield ``count`` incidents opened over the ``days`` before ``end``, as the instance holds them."""
    rng = random.Random(seed)
    start = end - timedelta(days=days)
    desk = group_rows[0]["sys_id"]
    escalation = [(g["sys_id"], w) for g, (_, _, w) in zip(group_rows, GROUPS, strict=True) if w]
    priorities = tuple((p, share) for p, (share, _, _) in PRIORITIES.items())
    people = random.Random(seed + 7)  # its own stream: adding people moved no other value
    for i in range(count):
        row = _incident(rng, i, start, days, end, desk, tuple(escalation), priorities)
        _people_and_knowledge(people, row)
        yield row


def _people_and_knowledge(rng: random.Random, row: dict[str, Any]) -> None:
    """Assignee from the group's agents, resolver (automation for some), service, KB use."""
    group = row["assignment_group"]
    if row["state"] != "1":
        row["assigned_to"] = f"{group[:24]}{rng.randrange(AGENTS_PER_GROUP):08x}"
    if row["resolved_at"]:
        automated = row["priority"] in ("4", "5") and rng.random() < 0.12
        row["resolved_by"] = AUTOMATION_USER if automated else row["assigned_to"]
    row["knowledge"] = "true" if rng.random() < 0.22 else "false"
    if rng.random() < 0.6:
        row["business_service"] = rng.choice(SERVICES)


def _incident(
    rng: random.Random,
    i: int,
    start: datetime,
    days: int,
    end: datetime,
    desk: str,
    escalation: tuple[tuple[str, float], ...],
    priorities: tuple[tuple[str, float], ...],
) -> dict[str, Any]:
    priority = _pick(rng, priorities)
    _, median_hours, goal_hours = PRIORITIES[priority]
    opened = _arrival(rng, start, days)
    reassignments = min(int(rng.expovariate(1.4)), 6)
    hours = math.exp(rng.gauss(math.log(median_hours), 1.0)) * (1 + 0.35 * reassignments)
    reopens = 0
    if rng.random() < 0.06:
        reopens = 1 if rng.random() < 0.85 else 2
        hours += rng.uniform(4, 72) * reopens  # the reopened work adds to the last resolution
    resolved: datetime | None = opened + timedelta(hours=hours)
    cancelled = rng.random() < 0.02
    state, closed = "7", None
    if cancelled:
        state, resolved = "8", None
        closed = opened + timedelta(hours=rng.uniform(0.2, 24))
    elif resolved and resolved > end:
        resolved = None
        state = _pick(rng, (("1", 0.2), ("2", 0.6), ("3", 0.2)))
    elif resolved:
        closed = resolved + timedelta(days=3)
        if closed > end:
            state, closed = "6", None
    if closed and closed > end:
        closed = end - timedelta(minutes=rng.randrange(1, 60))
    group = desk if reassignments == 0 else _pick(rng, escalation)
    impact, urgency = IMPACT_URGENCY[priority]
    last_event = max(t for t in (opened, resolved, closed) if t is not None)
    updated = min(last_event + timedelta(seconds=rng.randrange(1, 300)), end)
    made_sla = "" if cancelled else ("true" if resolved and hours <= goal_hours else "false")
    if not resolved and not cancelled:
        made_sla = "true" if (end - opened) <= timedelta(hours=goal_hours) else "false"
    return {
        "sys_id": _sys_id(rng),
        "sys_class_name": "incident",
        "number": f"INC{10000 + i:07d}",
        "short_description": rng.choice(SHORT_DESCRIPTIONS),
        "state": state,
        "incident_state": state,
        "active": "true" if state in ("1", "2", "3", "6") else "false",
        "priority": priority,
        "impact": impact,
        "urgency": urgency,
        "category": rng.choice(CATEGORIES),
        "contact_type": _pick(rng, CONTACT_TYPES),
        "assignment_group": group,
        "assigned_to": "",
        "caller_id": _sys_id(rng),
        "opened_at": _fmt(opened),
        "sys_created_on": _fmt(opened),
        "resolved_at": _fmt(resolved),
        "closed_at": _fmt(closed),
        "sys_updated_on": _fmt(updated),
        "sys_mod_count": str(3 + reassignments * 2 + reopens * 3 + (2 if closed else 0)),
        "reassignment_count": str(reassignments),
        "reopen_count": str(reopens),
        "made_sla": made_sla,
        "close_code": _pick(rng, CLOSE_CODES) if resolved else "",
        "calendar_stc": str(int((resolved - opened).total_seconds())) if resolved else "",
        "hold_reason": "1" if state == "3" else "",
        "problem_id": "",
        "caused_by": "",
        "business_service": "",
        "resolved_by": "",
        "knowledge": "false",
    }


def generate(
    count: int = 5000,
    *,
    end: datetime | None = None,
    seed: int = 42,
    related: bool = True,
    days: int = 365,
) -> Dataset:
    """``count`` incidents over the ``days`` (a year) ending at ``end`` (default: now, to the
    hour) plus their groups.

    With ``related`` the tables around them too (see sandbox.related): changes,
    problems, SLA cycles, requests and survey answers, all cross-referenced.
    """
    end = end or datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    rng = random.Random(seed + 1)
    group_rows = groups(rng)
    rows = list(incidents(count, end=end, days=days, seed=seed, group_rows=group_rows))
    tables = {"incident": rows, "sys_user_group": group_rows}
    if related:
        from sandbox.related import related_tables  # it builds on this module's constants

        tables.update(
            related_tables(random.Random(seed + 2), rows, end=end, groups=group_rows, days=days)
        )
    return Dataset(tables=tables)
