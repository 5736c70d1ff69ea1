"""Source record + field/value map -> canonical record. Pure; unmappable records are skipped with a reason."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from mapping.history import history_facts
from mapping.model import CanonicalRecord, FieldType, KindSchema
from mapping.spec import KindMap, MappingSpec

ISO_FORMATS = frozenset({"%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"})
# Jira's 2024-05-01T10:11:12.000+0200: fromisoformat reads it (Python 3.11+), 20x faster
ISO_WITH_OFFSET = frozenset({"%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z"})
UTC_ZONE = ZoneInfo("UTC")
_TRUE = frozenset({"true", "1", "yes"})
TEXT_LIMIT = 255  # canonical text columns; the raw record keeps the whole value
CODE_LIMIT = 100  # a source code longer than this cannot be a code
INT_RANGE = (-(2**31), 2**31 - 1)  # "int" columns (PostgreSQL integer)
SECONDS_RANGE = (-(2**63), 2**63 - 1)  # "seconds" columns (bigint)
ID_LIMIT = 200  # source_id column
_FALSE = frozenset({"false", "0", "no"})


LINK = "@link."
"""``@link.is caused by``: the id of the first issue linked with that description (Jira
``issuelinks``: an ``inwardIssue`` reads with the type's inward phrase, an ``outwardIssue``
with its outward one). ``@link.is caused by/Change|[System] Change``: the first such issue
of one of those issue types — JSM links an incident to its problem and to the change behind
it with the same "is caused by"."""
LABEL = "@label."
"""``@label.kb-used``: whether the record carries that label (None when labels are absent)."""


class SkippedRecord(Exception):
    """This record cannot be mapped; the reason is counted and logged, the run goes on."""


class Translator:
    """Translates records of one stream with one mapping; built once per run, used per record."""

    def __init__(
        self, schema: KindSchema, kind_map: KindMap, spec: MappingSpec, source: str
    ) -> None:
        self.schema = schema
        self._map = kind_map
        self._spec = spec
        self._source = source
        self._zone: tzinfo = ZoneInfo(spec.timezone)
        # fromisoformat is ~20x faster than strptime and reads exactly these layouts
        self._iso = spec.datetime_format in ISO_FORMATS
        self._iso_offset = spec.datetime_format in ISO_WITH_OFFSET
        # Decided once per run, not per record: (field, type, source names, value map).
        self._plan: list[tuple[str, FieldType, tuple[str, ...], Mapping[str, str] | None]] = []
        for name, kind in schema.fields.items():
            spec_fields = kind_map.fields.get(name)
            sources = (spec_fields,) if isinstance(spec_fields, str) else tuple(spec_fields or ())
            values = kind_map.values.get(name, {}) if kind == "code" else None
            self._plan.append((name, kind, sources, values))
        names = [n for _, _, sources, _ in self._plan for n in sources]
        self._uses_history = any(n.startswith("@history.") for n in names)
        self._link_facts = sorted({n for n in names if n.startswith(LINK)})
        self._label_facts = sorted({n for n in names if n.startswith(LABEL)})
        self._actors = frozenset(spec.automation_actors)
        self._derive_automation = (
            "auto_resolved" in schema.fields and "auto_resolved" not in kind_map.fields
        )

    def mismatch(self, data: Mapping[str, Any]) -> str | None:
        """Why the record is not of this kind (``match``), or None when it is."""
        for path, allowed in self._map.match.items():
            value = _lookup(data, path)
            if value not in allowed:
                return f"not a {self.schema.name}: {path} is {value!r}"
        return None

    def translate(
        self, source_id: str, updated_at: datetime, data: Mapping[str, Any]
    ) -> CanonicalRecord:
        if self._map.match:
            reason = self.mismatch(data)
            if reason is not None:
                raise SkippedRecord(reason)
        if len(source_id) > ID_LIMIT or "\x00" in source_id:
            raise SkippedRecord(f"id {source_id[:40]!r}... is not a usable record id")
        record: CanonicalRecord = {
            "source": self._source,
            "source_id": source_id,
            "updated_at": updated_at.astimezone(UTC),
            "mapping_version": self._spec.version,
        }
        if self._uses_history:  # facts named @history.<fact>, computed once per record
            facts = {f"@history.{k}": v for k, v in history_facts(data).items()}
            data = {**data, **facts}
        if self._link_facts or self._label_facts:
            data = {**data, **_link_and_label_facts(data, self._link_facts, self._label_facts)}
        for name, kind, sources, values in self._plan:
            raw = _first_present(data, sources)
            if values is not None and len(sources) > 1:
                raw = _first_mapped(data, sources, values) or raw
            if raw is None:
                value = None
            elif kind == "str" or kind == "code":
                value = _text(raw, TEXT_LIMIT)
            else:
                try:
                    value = self._convert(kind, raw)
                except ValueError as exc:
                    raise SkippedRecord(f"{name}: {exc}") from None
            if values is not None:
                record[f"{name}_original"] = value
                record[name] = (values.get(value) or None) if value is not None else None
            else:
                record[name] = value
        if self._derive_automation:
            resolver = record.get("resolved_by")
            known = resolver is not None and self._actors
            record["auto_resolved"] = resolver in self._actors if known else None
        return record

    def _convert(self, kind: FieldType, raw: Any) -> Any:
        """Non-text kinds (text is handled inline in ``translate``, the hot path)."""
        if kind == "int":
            return _in_range(_to_int(raw), INT_RANGE)
        if kind == "bool":
            return _to_bool(raw)
        if kind == "seconds":
            return _in_range(_to_seconds(raw), SECONDS_RANGE)
        return self._to_datetime(raw)

    def _to_datetime(self, raw: Any) -> datetime:
        text = str(raw).strip()
        try:
            if (self._iso and len(text) == 19) or self._iso_offset:
                parsed = datetime.fromisoformat(text)
            else:
                parsed = datetime.strptime(text, self._spec.datetime_format)
        except ValueError:
            try:
                parsed = datetime.fromisoformat(text)
            except ValueError:
                raise ValueError(f"{text[:40]!r} is not a date-time") from None
        try:
            if parsed.tzinfo is None:
                if self._zone is UTC_ZONE:
                    return parsed.replace(tzinfo=UTC)
                parsed = parsed.replace(tzinfo=self._zone)
            return parsed.astimezone(UTC)
        except OverflowError:
            raise ValueError(f"{text[:40]!r} is outside the calendar") from None


def _text(raw: Any, limit: int) -> str | None:
    """Stripped text, NUL removed (PostgreSQL refuses it), cut to the column's width."""
    text = raw if type(raw) is str else str(raw)
    if "\x00" in text:
        text = text.replace("\x00", "")
    return text.strip()[:limit] or None


def _in_range(number: int, bounds: tuple[int, int]) -> int:
    if not bounds[0] <= number <= bounds[1]:
        raise ValueError(f"{str(number)[:40]} is out of range")
    return number


def _to_int(raw: Any) -> int:
    if isinstance(raw, bool):
        raise ValueError(f"{raw!r} is not a whole number")
    if isinstance(raw, int):
        return raw
    text = str(raw).strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"{text[:40]!r} is not a whole number") from None
    if not number.is_integer():
        raise ValueError(f"{text[:40]!r} is not a whole number")
    return int(number)


def _lookup(data: Mapping[str, Any], name: str) -> Any:
    """A flat key (``sla.name`` as ServiceNow dot-walks send it), else a path into nested JSON."""
    value = data.get(name)
    if value is not None or "." not in name:
        return value
    current: Any = data
    for part in name.split("."):
        if isinstance(current, Mapping):
            current = current.get(part)
        elif isinstance(current, list) and part.lstrip("-").isdigit() and current:
            index = int(part)
            current = current[index] if -len(current) <= index < len(current) else None
        else:
            return None
        if current is None:
            return None
    return current


def _first_mapped(
    data: Mapping[str, Any], sources: tuple[str, ...], values: Mapping[str, str]
) -> Any:
    """For coded fields with fallbacks: the first source value the value map knows.

    ``state = ["fields.status.name", "fields.status.statusCategory.key"]`` maps a
    status by name where the map lists it and by its category otherwise, so a site
    with local-language status names still maps."""
    for name in sources:
        value = _lookup(data, name)
        if isinstance(value, dict):
            value = value.get("value")
        if value is not None and str(value).strip() in values:
            return value
    return None


def _first_present(data: Mapping[str, Any], sources: tuple[str, ...]) -> Any:
    """The first listed source field with a value (``["opened_at", "sys_created_on"]``)."""
    for name in sources:
        value = _lookup(data, name)
        if value is None or value == "":
            continue
        if isinstance(value, dict):  # reference delivered with its link
            value = value.get("value")
            if value is None or value == "":
                continue
        return value
    return None


_EPOCH = datetime(1970, 1, 1)


def _to_seconds(raw: Any) -> int:
    """Whole seconds from a number or ServiceNow's epoch-style duration ``1970-01-02 03:04:05``."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    text = str(raw).strip()
    try:
        number = float(raw) if isinstance(raw, float) else float(text)
    except ValueError:
        number = None
    if number is not None:
        if number != number or number in (float("inf"), float("-inf")):
            raise ValueError(f"{text[:40]!r} is not a duration")
        return int(number)
    try:
        moment = datetime.strptime(text, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        raise ValueError(f"{text[:40]!r} is not a duration") from None
    return int((moment - _EPOCH).total_seconds())


def _to_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{text[:40]!r} is not true or false")


def _link_and_label_facts(
    data: Mapping[str, Any], links: list[str], labels: list[str]
) -> dict[str, Any]:
    fields = data.get("fields") or {}
    facts: dict[str, Any] = {}
    for name in links:
        phrase, types = link_fact(name)
        facts[name] = None
        for link in fields.get("issuelinks") or []:
            kind = link.get("type") or {}
            for side, issue_key in (("inward", "inwardIssue"), ("outward", "outwardIssue")):
                issue = link.get(issue_key)
                if not issue or str(kind.get(side) or "").strip().lower() != phrase:
                    continue
                if types and _issue_type(issue) not in types:
                    continue
                facts[name] = issue.get("id")
                break
            if facts[name] is not None:
                break
    present = fields.get("labels")
    for name in labels:
        facts[name] = None if present is None else name[len(LABEL) :] in present
    return facts


@functools.cache
def link_fact(name: str) -> tuple[str, frozenset[str]]:
    """``@link.is caused by/Problem|[System] Problem`` -> ("is caused by", {"problem",
    "[system] problem"}); no types: any linked issue. Compared case-insensitively."""
    phrase, _, types = name[len(LINK) :].partition("/")
    wanted = frozenset(t.strip().lower() for t in types.split("|") if t.strip())
    return phrase.strip().lower(), wanted


def _issue_type(issue: Mapping[str, Any]) -> str:
    """A linked issue's type name, as Jira summarises linked issues (``fields.issuetype``)."""
    kind = (issue.get("fields") or {}).get("issuetype") or {}
    return str(kind.get("name") or "").strip().lower()
