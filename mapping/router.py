"""One source stream -> canonical rows of every kind the mapping derives from it.

A ServiceNow table maps to one kind. A Jira search returns incidents, service
requests and changes together: kinds with a ``match`` take the records whose
values they list (the first match wins), and a kind with ``each`` expands a
record into several rows (JSM SLA fields -> one row per SLA cycle). Pure:
records in, rows and reasons out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mapping.model import KINDS, CanonicalRecord
from mapping.spec import KindMap, MappingSpec
from mapping.translate import SkippedRecord, Translator

UNREADABLE = (TypeError, AttributeError, ValueError, KeyError, IndexError, OverflowError)
"""What reading a record of an unexpected shape raises; such a record is skipped, not fatal."""

Expansion = Callable[[str, Mapping[str, Any]], Iterator[dict[str, Any]]]


def _jira_time(bean: Any) -> str | None:
    """A JSM date bean (``{"jira": "2024-05-01T10:11:12.000+0200", ...}``) -> its Jira string."""
    if isinstance(bean, Mapping):
        value = bean.get("jira") or bean.get("iso8601")
        return str(value) if value else None
    return None


def jsm_sla_cycles(record_id: str, data: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every cycle of every JSM SLA field: completed ones and the ongoing one, flat.

    ``fields["itbsc:sla"]`` is {SLA name: field value}, as the Jira connector
    delivers it (fields found by schema type). Cycles without a start (old
    ``OLD_SLA_FORMAT`` values) are skipped: there is no clock to measure.
    """
    slas = ((data.get("fields") or {}).get("itbsc:sla")) or {}
    for name, value in slas.items():
        if not isinstance(value, Mapping):
            continue
        cycles = [(c, "completed") for c in value.get("completedCycles") or []]
        ongoing = value.get("ongoingCycle")
        if isinstance(ongoing, Mapping):
            cycles.append((ongoing, "paused" if ongoing.get("paused") else "in_progress"))
        for number, (cycle, stage) in enumerate(cycles):
            start = _jira_time(cycle.get("startTime"))
            if start is None:
                continue
            yield {
                "id": f"{record_id}:{value.get('id', name)}:{number}",
                "task": record_id,
                "task_type": ((data.get("fields") or {}).get("issuetype") or {}).get("name"),
                "name": str(value.get("name") or name),
                "stage": stage,
                "breached": bool(cycle.get("breached")),
                "start": start,
                "stop": _jira_time(cycle.get("stopTime")),
                "breach": _jira_time(cycle.get("breachTime")),
                "elapsed_seconds": int((cycle.get("elapsedTime") or {}).get("millis", 0)) // 1000,
                "goal_seconds": int((cycle.get("goalDuration") or {}).get("millis", 0)) // 1000,
            }


def jsm_satisfaction(record_id: str, data: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The customer's satisfaction rating of a JSM request, if one was given (0 or 1 item)."""
    fields = data.get("fields") or {}
    feedback = fields.get("itbsc:satisfaction")
    rating = feedback.get("rating") if isinstance(feedback, Mapping) else None
    if rating is None:
        return
    yield {
        "id": f"{record_id}:satisfaction",
        "task": record_id,
        "survey": "JSM customer satisfaction",
        "question": "How satisfied are you with this request?",
        "rating": rating,
        "responded_at": fields.get("itbsc:satisfaction_date") or fields.get("updated"),
    }


EXPANSIONS: dict[str, Expansion] = {
    "jsm_sla_cycles": jsm_sla_cycles,
    "jsm_satisfaction": jsm_satisfaction,
}
EXPANSION_FIELDS: dict[str, tuple[str, ...]] = {
    "jsm_sla_cycles": ("fields.itbsc:sla", "fields.issuetype.name"),
    "jsm_satisfaction": ("fields.itbsc:satisfaction", "fields.itbsc:satisfaction_date"),
}


@dataclass
class MappedPage:
    """What a page of records became: rows per kind, which records each kind no longer holds."""

    rows: dict[str, list[CanonicalRecord]] = field(default_factory=dict)
    not_in_kind: dict[str, list[str]] = field(default_factory=dict)  # kind -> record ids
    children: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # kind -> parent -> ids
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (record id, reason)

    def count(self) -> int:
        return sum(len(rows) for kind, rows in self.rows.items() if kind not in self.children)


@dataclass(frozen=True)
class _Target:
    kind: str
    kind_map: KindMap
    translator: Translator


class StreamMapper:
    """Maps records of one stream with one source's mapping."""

    def __init__(self, spec: MappingSpec, stream: str, source: str) -> None:
        self.targets = [
            _Target(kind, kind_map, Translator(KINDS[kind], kind_map, spec, source))
            for kind, kind_map in spec.targets(stream)
        ]
        self.primary = [t for t in self.targets if t.kind_map.each is None]
        self.expanding = [t for t in self.targets if t.kind_map.each is not None]

    @property
    def kinds(self) -> list[str]:
        return [t.kind for t in self.targets]

    def source_fields(self) -> list[str]:
        names: list[str] = []
        for target in self.targets:
            each = target.kind_map.each
            names.extend(EXPANSION_FIELDS[each] if each else target.kind_map.source_fields())
        return list(dict.fromkeys(names))

    def map_page(self, records: Iterable[tuple[str, datetime, Mapping[str, Any]]]) -> MappedPage:
        page = MappedPage(
            rows={t.kind: [] for t in self.targets},
            not_in_kind={t.kind: [] for t in self.primary},
            children={t.kind: {} for t in self.expanding},
        )
        for record_id, updated_at, data in records:
            try:
                one = self._map_record(record_id, updated_at, data)
            except UNREADABLE as exc:
                # A record whose shape the mapping cannot read (a list where an object
                # belongs, a number where a list does) is skipped, counted and logged.
                reason = f"unreadable record ({type(exc).__name__}: {str(exc)[:80]})"
                one = MappedPage(
                    not_in_kind={t.kind: [record_id] for t in self.primary},
                    children={t.kind: {record_id: []} for t in self.expanding},
                    skipped=[(record_id, reason)],
                )
            for kind, rows in one.rows.items():
                page.rows[kind].extend(rows)
            for kind, ids in one.not_in_kind.items():
                page.not_in_kind[kind].extend(ids)
            for kind, kept in one.children.items():
                page.children[kind].update(kept)
            page.skipped.extend(one.skipped)
        return page

    def _map_record(
        self, record_id: str, updated_at: datetime, data: Mapping[str, Any]
    ) -> MappedPage:
        one = MappedPage(
            rows={t.kind: [] for t in self.targets},
            not_in_kind={t.kind: [] for t in self.primary},
            children={t.kind: {} for t in self.expanding},
        )
        if not isinstance(data, Mapping):
            raise TypeError(f"a record must be an object, not {type(data).__name__}")
        reasons: list[str] = []
        placed = False
        for target in self.primary:
            mismatch = None if placed else target.translator.mismatch(data)
            if placed or mismatch is not None:
                if mismatch is not None:
                    reasons.append(mismatch)
                one.not_in_kind[target.kind].append(record_id)
                continue
            try:
                one.rows[target.kind].append(
                    target.translator.translate(record_id, updated_at, data)
                )
                placed = True
            except SkippedRecord as exc:
                reasons.append(str(exc))
                one.not_in_kind[target.kind].append(record_id)
        if self.primary and not placed:
            # a conversion failure says more than "not an incident, not a change"
            real = [r for r in reasons if not r.startswith("not a ")]
            one.skipped.append((record_id, (real or reasons)[0]))
        for target in self.expanding:
            kept = one.children[target.kind].setdefault(record_id, [])
            for item in EXPANSIONS[str(target.kind_map.each)](record_id, data):
                try:
                    row = target.translator.translate(str(item["id"]), updated_at, item)
                except SkippedRecord as exc:
                    one.skipped.append((str(item["id"])[:200], f"{target.kind}: {exc}"))
                    continue
                one.rows[target.kind].append(row)
                kept.append(row["source_id"])
        return one
