"""Canonical ITIL record kinds: the fields every source is translated into.

A canonical record is a plain dict (cheap to build, upsert and stream). Coded
fields keep both the standard value and the source's original value
(``state`` and ``state_original``), so a mapping can be corrected later and
re-applied to stored records without refetching.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

FieldType = Literal["str", "code", "int", "bool", "datetime", "seconds", "number"]
"""``seconds``: a duration, stored as whole seconds (ServiceNow sends epoch-style date-times);
``number``: a derived amount (a cost), never stored."""
CanonicalRecord = dict[str, Any]

IDENTITY_FIELDS = ("source", "source_id", "updated_at", "mapping_version")


@dataclass(frozen=True)
class KindSchema:
    """One canonical record kind: its typed fields and the standard values of coded ones."""

    name: str
    fields: Mapping[str, FieldType]
    standard_values: Mapping[str, frozenset[str]]
    derived: Mapping[str, FieldType] = field(default_factory=dict)
    """Fields metrics may use that are computed from other kinds when metrics run, not stored."""

    def columns(self) -> list[str]:
        """Every stored column besides the identity ones, ``_original`` twins included."""
        names: list[str] = []
        for name, kind in self.fields.items():
            names.append(name)
            if kind == "code":
                names.append(f"{name}_original")
        return names

    def type_of(self, name: str) -> FieldType | None:
        if name in self.fields:
            return self.fields[name]
        if name in self.derived:
            return self.derived[name]
        if name.endswith("_original") and self.fields.get(name[: -len("_original")]) == "code":
            return "str"
        if name in ("source", "source_id"):
            return "str"
        if name in ("updated_at", "deleted_at"):
            return "datetime"
        return None


INCIDENT = KindSchema(
    name="incident",
    fields={
        "number": "str",
        "state": "code",
        "priority": "code",
        "impact": "code",
        "urgency": "code",
        "category": "str",
        "assignment_group": "str",
        "assigned_to": "str",
        "service": "str",
        "contact_type": "code",
        "close_code": "code",
        "opened_at": "datetime",
        "first_response_at": "datetime",
        "resolved_at": "datetime",
        "closed_at": "datetime",
        "resolved_by": "str",
        "auto_resolved": "bool",  # resolved_by is one of the mapping's automation_actors
        "kb_used": "bool",  # a knowledge article was used / linked
        "reopen_count": "int",
        "reassignment_count": "int",
        "made_sla": "bool",
        "caused_by": "str",
        "problem_id": "str",
        "parent_incident": "str",
    },
    standard_values={
        "state": frozenset({"new", "in_progress", "on_hold", "resolved", "closed", "cancelled"}),
        "priority": frozenset({"P1", "P2", "P3", "P4", "P5"}),
        "impact": frozenset({"high", "medium", "low"}),
        "urgency": frozenset({"high", "medium", "low"}),
        "contact_type": frozenset(
            {"phone", "email", "self_service", "chat", "walk_in", "monitoring", "other"}
        ),
        "close_code": frozenset(
            {
                "solved",
                "workaround",
                "duplicate",
                "user_error",
                "resolved_by_caller",
                "resolved_by_change",
                "resolved_by_problem",
                "known_error",
                "not_solved",
                "other",
            }
        ),
    },
    derived={
        # Filled when metrics run, from the source's SLA cycles or its made_sla flag
        # (``sla_attainment`` in the mapping): met / not met / None = no SLA.
        "sla_met": "bool",
        "response_sla_met": "bool",
        # The support tier of the resolving group (catalogue [tiers], else the group record).
        "tier": "str",
        # Unit cost by the catalogue's [[cost]] table valid when the record was resolved.
        "unit_cost": "number",
        # The change the incident is attributed to (caused_by link, else the service and
        # time-window rule of [attribution]) and when that change ended.
        "attributed_change": "str",
        "change_end": "datetime",
    },
)

CHANGE = KindSchema(
    name="change",
    fields={
        "number": "str",
        "type": "code",
        "state": "code",
        "close_code": "code",
        "risk": "code",
        "priority": "code",
        "category": "str",
        "assignment_group": "str",
        "service": "str",
        "opened_at": "datetime",
        "planned_start": "datetime",
        "planned_end": "datetime",
        "work_start": "datetime",
        "work_end": "datetime",
        "closed_at": "datetime",
    },
    derived={
        # Incidents attributed to this change (see the incident's attributed_change) and the
        # sum of their unit costs.
        "caused_incidents": "int",
        "caused_incident_cost": "number",
    },
    standard_values={
        "type": frozenset({"normal", "standard", "emergency"}),
        "state": frozenset(
            {
                "new",
                "assess",
                "authorize",
                "scheduled",
                "implement",
                "review",
                "closed",
                "cancelled",
            }
        ),
        "close_code": frozenset({"successful", "successful_issues", "unsuccessful"}),
        "risk": frozenset({"very_high", "high", "moderate", "low"}),
        "priority": frozenset({"P1", "P2", "P3", "P4", "P5"}),
    },
)

SLA = KindSchema(
    name="sla",
    fields={
        "task": "str",  # source id of the ticket the clock runs on
        "task_kind": "str",  # incident, request_item, change, problem ...
        "name": "str",
        "sla_type": "code",
        "stage": "code",
        "breached": "bool",
        "start_time": "datetime",
        "end_time": "datetime",
        "breach_time": "datetime",
        "elapsed_seconds": "seconds",
        "business_elapsed_seconds": "seconds",
        "pause_seconds": "seconds",
    },
    standard_values={
        "sla_type": frozenset({"response", "resolution", "other"}),
        "stage": frozenset({"in_progress", "paused", "completed", "cancelled"}),
    },
)

PROBLEM = KindSchema(
    name="problem",
    fields={
        "number": "str",
        "state": "code",
        "priority": "code",
        "category": "str",
        "assignment_group": "str",
        "service": "str",
        "known_error": "bool",
        "resolution_code": "str",
        "first_reported_by": "str",
        "opened_at": "datetime",
        "resolved_at": "datetime",
        "closed_at": "datetime",
    },
    standard_values={
        "state": frozenset(
            {
                "new",
                "assess",
                "root_cause_analysis",
                "fix_in_progress",
                "resolved",
                "closed",
                "cancelled",
            }
        ),
        "priority": frozenset({"P1", "P2", "P3", "P4", "P5"}),
    },
)

REQUEST_ITEM = KindSchema(
    name="request_item",
    fields={
        "number": "str",
        "request": "str",  # source id of the parent request (sc_request)
        "item": "str",
        "state": "code",
        "priority": "code",
        "assignment_group": "str",
        "reassignment_count": "int",
        "opened_at": "datetime",
        "due_at": "datetime",
        "closed_at": "datetime",
    },
    standard_values={
        "state": frozenset(
            {"open", "in_progress", "closed_complete", "closed_incomplete", "cancelled"}
        ),
        "priority": frozenset({"P1", "P2", "P3", "P4", "P5"}),
    },
)

GROUP = KindSchema(
    name="group",
    fields={
        "name": "str",
        "tier": "code",
        "type": "str",
        "parent": "str",
        "active": "bool",
    },
    standard_values={"tier": frozenset({"L1", "L2", "L3", "vendor"})},
)

SURVEY = KindSchema(
    name="survey",
    fields={
        "task": "str",  # source id of the ticket the response is about
        "survey": "str",
        "question": "str",
        "rating": "int",
        "responded_at": "datetime",
    },
    standard_values={},
)

KINDS: dict[str, KindSchema] = {
    kind.name: kind for kind in (INCIDENT, CHANGE, SLA, PROBLEM, REQUEST_ITEM, GROUP, SURVEY)
}
