"""Canonical ITIL record kinds: the fields every source is translated into.

A canonical record is a plain dict (cheap to build, upsert and stream). Coded
fields keep both the standard value and the source's original value
(``state`` and ``state_original``), so a mapping can be corrected later and
re-applied to stored records without refetching.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

FieldType = Literal["str", "code", "int", "bool", "datetime"]
CanonicalRecord = dict[str, Any]

IDENTITY_FIELDS = ("source", "source_id", "updated_at", "mapping_version")


@dataclass(frozen=True)
class KindSchema:
    """One canonical record kind: its typed fields and the standard values of coded ones."""

    name: str
    fields: Mapping[str, FieldType]
    standard_values: Mapping[str, frozenset[str]]

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
        if name.endswith("_original") and self.fields.get(name[: -len("_original")]) == "code":
            return "str"
        if name in ("source", "source_id"):
            return "str"
        if name == "updated_at":
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
        "service": "str",
        "contact_type": "code",
        "close_code": "code",
        "opened_at": "datetime",
        "resolved_at": "datetime",
        "closed_at": "datetime",
        "reopen_count": "int",
        "reassignment_count": "int",
        "made_sla": "bool",
        "caused_by": "str",
        "problem_id": "str",
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
)

KINDS: dict[str, KindSchema] = {INCIDENT.name: INCIDENT}
