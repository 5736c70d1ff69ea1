"""The field/value map TOML of one source: how its records become canonical ITIL records."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mapping.errors import SpecError
from mapping.history import FACTS
from mapping.model import KINDS, KindSchema
from mapping.periods import ZoneName
from mapping.tomlfile import read_toml, validate


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KindMap(_Strict):
    """How one source stream becomes one canonical kind."""

    stream: str
    match: dict[str, list[str]] = Field(default_factory=dict)
    """Only records whose source values are listed become this kind (Jira: by issue type);
    the others are counted as skipped with the reason."""
    each: Literal["jsm_sla_cycles", "jsm_satisfaction"] | None = None
    """Expand each record into several rows (mapping.router.EXPANSIONS); the fields then
    name keys of the expanded items."""
    fields: dict[str, str | list[str]]
    values: dict[str, dict[str, str]] = Field(default_factory=dict)

    def source_fields(self) -> list[str]:
        """Source field names this map reads: what the connector must request."""
        names: list[str] = list(self.match)
        for spec in self.fields.values():
            names.extend([spec] if isinstance(spec, str) else spec)
        facts = {"@link.": "fields.issuelinks", "@label.": "fields.labels"}
        names = [next((v for k, v in facts.items() if n.startswith(k)), n) for n in names]
        return [n for n in dict.fromkeys(names) if not n.startswith("@")]


class SlaGoals(_Strict):
    """``[sla_goals]``: the SLA clock computed from the ticket's own timestamps, for a source
    without SLA records: met when the business hours from opened to resolved (to the first
    response) stay within the priority's goal. ``calendar``: else the group's or default one."""

    calendar: str | None = None
    resolution: dict[str, float] = Field(default_factory=dict)  # canonical priority -> hours
    response: dict[str, float] = Field(default_factory=dict)


class MappingSpec(_Strict):
    """A source's mapping file. ``version`` is stamped on every record and metric value."""

    version: str = Field(min_length=1)
    datetime_format: str = "%Y-%m-%d %H:%M:%S"
    timezone: ZoneName = "UTC"
    sla_attainment: Literal["auto", "sla_records", "made_sla", "goals"] = "auto"
    """Where an incident's "SLA met" comes from: its SLA cycles (``sla_records``), the
    source's own flag (``made_sla``), a clock over its timestamps against ``[sla_goals]``
    (``goals``), or ``auto``: cycles when this source syncs the stream mapped to ``[sla]``,
    the flag otherwise."""
    sla_goals: SlaGoals | None = None
    automation_actors: list[str] = Field(default_factory=list)
    """Who resolves tickets by automation (user ids or names as ``resolved_by`` holds them):
    an incident resolved by one of them is ``auto_resolved`` (metric L3)."""
    incident: KindMap | None = None
    change: KindMap | None = None
    sla: KindMap | None = None
    problem: KindMap | None = None
    request_item: KindMap | None = None
    group: KindMap | None = None
    survey: KindMap | None = None

    def first_response_from_cycles(self) -> bool:
        """Whether incidents take their first response from their response SLA cycles."""
        return self.incident is not None and (
            self.incident.fields.get("first_response_at") == RESPONSE_END
        )

    def kind_maps(self) -> dict[str, KindMap]:
        return {name: m for name in KINDS if (m := getattr(self, name)) is not None}

    def uses_sla_records(self, synced_streams: list[str]) -> bool:
        """Whether incidents of this source take "SLA met" from SLA cycles (see sla_attainment)."""
        if self.sla_attainment in ("made_sla", "goals") or self.sla is None:
            return False
        return self.sla_attainment == "sla_records" or self.sla.stream in synced_streams

    def for_stream(self, stream: str) -> tuple[str, KindMap] | None:
        """The first canonical kind a stream maps into, if the mapping covers it."""
        found = self.targets(stream)
        return found[0] if found else None

    def targets(self, stream: str) -> list[tuple[str, KindMap]]:
        """Every kind derived from ``stream``: matched kinds first, expansions after."""
        found = [(n, m) for n, m in self.kind_maps().items() if m.stream == stream]
        return sorted(found, key=lambda t: t[1].each is not None)


def mapping_problems(spec: MappingSpec) -> list[tuple[str, str]]:
    """(key, message) for what the schema alone cannot check: canonical names and values."""
    problems: list[tuple[str, str]] = []
    for kind_name, kind_map in spec.kind_maps().items():
        problems.extend(_check_kind(KINDS[kind_name], kind_map))
    primaries: dict[str, list[KindMap]] = {}
    for kind_map in spec.kind_maps().values():
        if kind_map.each is None:
            primaries.setdefault(kind_map.stream, []).append(kind_map)
    for stream, maps in primaries.items():
        if len(maps) > 1 and not all(m.match for m in maps):
            problems.append(
                (
                    "match",
                    f"stream {stream!r} is mapped by several record kinds: give each a `match`",
                )
            )
    if spec.first_response_from_cycles() and spec.sla is None:
        problems.append(
            ("incident.fields.first_response_at", f"{RESPONSE_END!r} needs an [sla] map")
        )
    if spec.sla_attainment == "sla_records" and spec.sla is None:
        problems.append(("sla_attainment", "'sla_records' needs an [sla] map"))
    if spec.sla_attainment == "goals" and spec.sla_goals is None:
        problems.append(("sla_attainment", "'goals' needs [sla_goals] (hours per priority)"))
    return problems


HISTORY = "@history."
RESPONSE_END = "@sla.response_end"
"""``first_response_at = "@sla.response_end"``: an incident's first response is when its first
completed response SLA cycle ended — for a source whose tickets do not record it (ServiceNow):
the store fills it from the cycles it keeps, whenever they or the incident are written."""
NO_VALUE = ""
"""A value map's "known, and no standard value": ``"Canceled" = ""`` in a change's
close_code map says a cancelled change has no outcome, and check-mapping does not list it."""


def deliberately_unmapped(table: dict[str, str]) -> list[str]:
    """The source values a value map names as having no standard value."""
    return [original for original, standard in table.items() if standard == NO_VALUE]


def _check_kind(schema: KindSchema, kind_map: KindMap) -> list[tuple[str, str]]:
    problems = []
    for name in kind_map.fields:
        if name not in schema.fields:
            problems.append(
                (f"{schema.name}.fields.{name}", f"not a canonical {schema.name} field")
            )
    for name, spec in kind_map.fields.items():
        paths = [spec] if isinstance(spec, str) else spec
        if any(p.startswith("@sla.") for p in paths) and (
            (schema.name, name) != ("incident", "first_response_at") or paths != [RESPONSE_END]
        ):
            problems.append(
                (
                    f"{schema.name}.fields.{name}",
                    f"SLA facts are read only as incident first_response_at = {RESPONSE_END!r}, "
                    "alone",
                )
            )
        for path in paths:
            fact = path.removeprefix(HISTORY)
            if path.startswith(HISTORY) and fact not in FACTS:
                problems.append(
                    (
                        f"{schema.name}.fields.{name}",
                        f"{path!r}: no such history fact (use one of {', '.join(sorted(FACTS))})",
                    )
                )
    for name, table in kind_map.values.items():
        if schema.fields.get(name) != "code":
            problems.append((f"{schema.name}.values.{name}", "only coded fields take a value map"))
            continue
        allowed = schema.standard_values[name]
        for original, standard in table.items():
            if standard not in allowed and standard != NO_VALUE:
                problems.append(
                    (
                        f"{schema.name}.values.{name}.{original!r}",
                        f"{standard!r} is not a standard value "
                        f'(use one of {", ".join(sorted(allowed))}, or "" for none)',
                    )
                )
    return problems


def load_mapping(path: Path) -> MappingSpec:
    data: dict[str, Any] = read_toml(path)
    spec = validate(MappingSpec, data, path)
    problems = mapping_problems(spec)
    if problems:
        raise SpecError(str(path), problems)
    if not spec.kind_maps():
        raise SpecError(
            str(path), [("", f"maps no record kind; add one of [{'], ['.join(KINDS)}]")]
        )
    return spec
