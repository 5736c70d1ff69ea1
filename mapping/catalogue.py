"""The metric catalogue TOML: each metric declared as data over canonical records."""

from __future__ import annotations

from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mapping.calendar import CalendarChoice, CalendarSpec
from mapping.errors import SpecError
from mapping.filters import Filter, parse_filter
from mapping.model import KINDS
from mapping.periods import GRAINS, Grain
from mapping.tomlfile import read_toml, validate

DEFAULT_GRAINS: tuple[Grain, ...] = ("week", "month", "quarter", "year")
MetricKind = Literal[
    "ratio",
    "duration",
    "count",
    "average",
    "input",
    "input_ratio",
    "input_change",
    "stock",
    "stock_ratio",
    "flow_ratio",
    "sum",
    "per_distinct",
    "year_over_year",
    "product",
]
INPUT_KINDS = frozenset({"input", "input_ratio", "input_change"})
"""Kinds read from the manual input register, not from records: the value of one input
(``input``), a / b (``input_ratio``, times ``scale``) or (a - b) / b x 100 (``input_change``)."""
STOCK_KINDS = frozenset({"stock", "stock_ratio", "flow_ratio"})
"""Kinds over intervals rather than one timestamp: records open at the period's end (``stock``),
the share of those older than ``age_days`` (``stock_ratio``), records started / records ended
in the period (``flow_ratio``). Computed when read, since a record's change moves every later
period's stock."""
COMPOSITE_KINDS = frozenset({"year_over_year", "product"})
"""Kinds over other metrics' values, computed when read: ``year_over_year`` (``of`` one
metric: this period minus the same period a year before, in the metric's unit, so percentage
points for a percentage) and ``product`` (``of`` two metrics: a x b, e.g. the open backlog
times the cost per resolved ticket)."""
NUMERIC = ("int", "seconds", "number")
Statistic = Literal["median", "mean", "p90"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Exclusion(_Strict):
    """A named rule that removes records from a metric; what it removed is counted and shown."""

    name: str = Field(min_length=1)
    where: dict[str, Any]


class MetricSpec(_Strict):
    """One metric. ``cohort`` is the timestamp that places a record in a period."""

    id: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    name: str
    description: str = ""
    record: str = "incident"
    kind: MetricKind
    unit: str = ""
    direction: Literal["higher", "lower"]
    cohort: str = ""
    inputs: list[str] = Field(default_factory=list)  # input kinds: the register names used
    scale: float = 1.0  # input_ratio: multiply a / b by this
    closed_by: list[str] = Field(default_factory=list)  # stock: the record leaves at the first
    age_days: float | None = None  # stock_ratio: "aged" when open longer than this at period end
    where: dict[str, Any] = Field(default_factory=dict)
    exclude: list[Exclusion] = Field(default_factory=list)
    numerator: dict[str, Any] | None = None  # ratio: the share of the population that counts
    start: str | None = None  # duration: from this timestamp ...
    end: str | None = None  # ... to this one
    value: str | None = None  # average: the numeric field averaged (sum / records)
    statistic: Statistic = "median"
    clock: Literal["wall", "business"] = "wall"
    """duration: wall-clock hours, or working hours of the calendar (see ``calendar``)."""
    calendar: str | None = None
    """business clock: this calendar; else the assignment group's, else the default one."""
    per: str | None = None  # per_distinct: records / distinct values of this field (agents)
    of: list[str] = Field(default_factory=list)  # composite kinds: the metrics combined
    breakdowns: list[str] = Field(default_factory=list)
    grains: list[Grain] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> MetricSpec:
        problems = self._problems()
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def manual(self) -> bool:
        """Read from manual inputs (budget, training hours ...), not computed from records."""
        return self.kind in INPUT_KINDS

    @property
    def live(self) -> bool:
        """Computed when read, never stored per period (manual inputs, stocks, flows, composites)."""
        return self.kind in INPUT_KINDS or self.kind in STOCK_KINDS or self.composite

    @property
    def composite(self) -> bool:
        return self.kind in COMPOSITE_KINDS

    def _problems(self) -> list[str]:
        if self.manual:
            wanted = 1 if self.kind == "input" else 2
            if len(self.inputs) != wanted:
                return [f"inputs: a {self.kind} metric names {wanted} input(s)"]
            return []
        if self.composite:
            wanted = 1 if self.kind == "year_over_year" else 2
            if len(self.of) != wanted:
                return [f"of: a {self.kind} metric combines {wanted} metric(s)"]
            return []
        if self.kind in STOCK_KINDS:
            return self._interval_problems()
        if not self.cohort:
            return ["cohort: a metric over records needs the timestamp that places them"]
        schema = KINDS.get(self.record)
        if schema is None:
            return [f"record: unknown kind {self.record!r} (known: {', '.join(KINDS)})"]
        problems: list[str] = []

        def field(key: str, name: str | None, expected: str | None = None) -> None:
            kind = schema.type_of(name) if name else None
            if name and kind is None:
                problems.append(f"{key}: {name!r} is not a {self.record} field")
            elif name and expected and kind != expected:
                problems.append(f"{key}: {name!r} is not a {expected} field")

        field("cohort", self.cohort, "datetime")
        for key, spec in self._filters().items():
            if spec is None:
                continue
            _, bad = parse_filter(spec)
            problems.extend(f"{key}.{k}: {m}" for k, m in bad)
            for name in spec:
                field(f"{key}.{name}", name)
        for name in self.breakdowns:
            field(f"breakdowns.{name}", name)
        if self.kind == "ratio" and self.numerator is None:
            problems.append("numerator: a ratio metric needs a numerator filter")
        if self.kind == "duration":
            if not (self.start and self.end):
                problems.append("start/end: a duration metric needs both timestamps")
            field("start", self.start, "datetime")
            field("end", self.end, "datetime")
        if self.kind in ("average", "sum"):
            if not self.value:
                problems.append(f"value: a {self.kind} metric needs the numeric field it adds")
            elif schema.type_of(self.value) not in NUMERIC:
                problems.append(f"value: {self.value!r} is not a numeric {self.record} field")
        if self.kind == "per_distinct":
            if not self.per:
                problems.append("per: a per_distinct metric needs the field whose values it counts")
            field("per", self.per)
        if self.clock == "business" and self.kind != "duration":
            problems.append("clock: only duration metrics run on a business clock")
        if self.grains and set(self.grains) - set(GRAINS):
            problems.append(f"grains: use {', '.join(GRAINS)}")
        return problems

    def _interval_problems(self) -> list[str]:
        schema = KINDS.get(self.record)
        if schema is None:
            return [f"record: unknown kind {self.record!r} (known: {', '.join(KINDS)})"]
        problems = []
        kind = self.kind
        ends = self.closed_by if kind != "flow_ratio" else [self.end or ""]
        for key, name in [("start", self.start or ""), *(("closed_by/end", n) for n in ends)]:
            if not name or schema.type_of(name) != "datetime":
                problems.append(f"{key}: {name!r} is not a {self.record} date-time field")
        if kind == "stock_ratio" and not self.age_days:
            problems.append("age_days: a stock_ratio needs the age that makes a record 'aged'")
        for key, spec in self._filters().items():
            for field in spec or {}:
                if schema.type_of(field) is None:
                    problems.append(f"{key}.{field}: {field!r} is not a {self.record} field")
        return problems

    def _filters(self) -> dict[str, dict[str, Any] | None]:
        filters: dict[str, dict[str, Any] | None] = {
            "where": self.where,
            "numerator": self.numerator,
        }
        for i, rule in enumerate(self.exclude):
            filters[f"exclude[{i}].where"] = rule.where
        return filters

    def population(self) -> Filter:
        return parse_filter(self.where)[0]

    def numerator_filter(self) -> Filter:
        return parse_filter(self.numerator or {})[0]

    def exclusions(self) -> list[tuple[str, Filter]]:
        return [(rule.name, parse_filter(rule.where)[0]) for rule in self.exclude]

    def required_fields(self) -> list[str]:
        """Every canonical column evaluation reads: what the daemon selects."""
        names = {self.cohort, *self.breakdowns, "source"}
        for spec in self._filters().values():
            names.update(spec or {})
        names.update(n for n in (self.start, self.end, self.value, self.per, *self.closed_by) if n)
        if self.clock == "business":
            names.add("assignment_group")  # the group's calendar
        names.discard("")
        return sorted(names)


class InputSpec(_Strict):
    """A figure tickets cannot tell (budget, spend, training hours, headcount), entered by hand."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str = ""
    unit: str = ""
    aggregate: Literal["sum", "mean"] = "sum"
    """How months combine into a quarter or a year: spend and hours add up, headcount averages."""


class BusinessHours(_Strict):
    """``[business_hours]``: the calendar durations use unless a group has its own."""

    default: str | None = None
    by_group: dict[str, str] = Field(default_factory=dict)
    """assignment_group value (as the canonical record holds it) -> calendar name."""


class TierSpec(_Strict):
    """``[tiers]``: the support tier of each resolving group (F1, F3).

    ``groups`` wins; else the tier of the source's own group record (ServiceNow
    sys_user_group); else ``default`` (a desk without groups, such as a Jira project)."""

    default: str | None = None
    groups: dict[str, str] = Field(default_factory=dict)


class CostSpec(_Strict):
    """``[[cost]]``: unit cost of a resolved ticket from ``valid_from`` on, by tier or priority.

    A ticket is priced with the entry valid when it was resolved (opened, if never), so a
    new entry reprices nothing before its date. Costs escalate: give the cumulative cost of
    a ticket resolved at a tier (L1 + L2 for one resolved at L2), as MetricNet counts it."""

    valid_from: date
    currency: str = ""
    by: Literal["tier", "priority"] = "tier"
    unit_cost: dict[str, float]
    default: float | None = None  # for a tier or priority the table does not list


class AttributionSpec(_Strict):
    """``[attribution]``: which change an incident is attributed to (I7, I10, F5).

    Its explicit link first (ServiceNow caused_by, Jira "is caused by"); else the change
    on the same service that ended last within ``window_hours`` before the incident was
    opened (0 turns the rule off). One change per incident, so a change failure rate
    counted per change never exceeds 100 %."""

    window_hours: float = Field(default=24.0, ge=0)


class Catalogue(_Strict):
    """The metric catalogue file: defaults plus ``[[metric]]`` entries with unique ids."""

    version: str = "unversioned"
    grains: list[Grain] = Field(default_factory=lambda: list(DEFAULT_GRAINS))
    calendar: list[CalendarSpec] = Field(default_factory=list)
    business_hours: BusinessHours = Field(default_factory=BusinessHours)
    tiers: TierSpec = Field(default_factory=TierSpec)
    cost: list[CostSpec] = Field(default_factory=list)
    attribution: AttributionSpec = Field(default_factory=AttributionSpec)
    input: list[InputSpec] = Field(default_factory=list)
    metric: list[MetricSpec]

    @model_validator(mode="after")
    def _unique(self) -> Catalogue:
        counts = Counter(m.id for m in self.metric)
        dupes = sorted(i for i, n in counts.items() if n > 1)
        if dupes:
            raise ValueError(f"metric ids must be unique; repeated: {', '.join(dupes)}")
        known = {i.name for i in self.input}
        for metric in self.metric:
            missing = [name for name in metric.inputs if name not in known]
            if missing:
                raise ValueError(
                    f"metric {metric.id}: inputs {', '.join(missing)} are not declared as [[input]]"
                )
        self._check_references()
        return self

    def _check_references(self) -> None:
        calendars = Counter(c.name for c in self.calendar)
        dupes = sorted(n for n, k in calendars.items() if k > 1)
        if dupes:
            raise ValueError(f"calendar names must be unique; repeated: {', '.join(dupes)}")
        named = [("business_hours.default", self.business_hours.default)]
        named += [
            (f"business_hours.by_group.{g}", c) for g, c in self.business_hours.by_group.items()
        ]
        named += [(f"metric {m.id}: calendar", m.calendar) for m in self.metric]
        for where, name in named:
            if name is not None and name not in calendars:
                raise ValueError(f"{where}: no [[calendar]] named {name!r}")
        for metric in self.metric:
            if metric.clock == "business" and not (metric.calendar or self.business_hours.default):
                raise ValueError(
                    f"metric {metric.id}: a business clock needs a calendar "
                    "(its own `calendar` or [business_hours] default)"
                )
        ids = {m.id for m in self.metric}
        for metric in self.metric:
            unknown = [i for i in metric.of if i not in ids or i == metric.id]
            if unknown:
                raise ValueError(f"metric {metric.id}: of names unknown metrics {unknown}")
            if any(self.by_id()[i].composite for i in metric.of):
                raise ValueError(f"metric {metric.id}: of names a composite metric")
        starts = Counter(c.valid_from for c in self.cost)
        twice = sorted(str(d) for d, k in starts.items() if k > 1)
        if twice:
            raise ValueError(f"[[cost]]: two entries valid from {', '.join(twice)}")

    def calendars(self) -> dict[str, CalendarSpec]:
        return {c.name: c for c in self.calendar}

    def calendar_choice(self, metric: MetricSpec) -> CalendarChoice | None:
        """The calendars a business-clock duration runs on (None for wall-clock metrics)."""
        if metric.clock != "business":
            return None
        hours = self.business_hours
        return CalendarChoice(
            self.calendars(), hours.default, hours.by_group, fixed=metric.calendar
        )

    def cost_at(self, moment: date) -> CostSpec | None:
        """The cost entry valid on ``moment`` (the latest ``valid_from`` on or before it)."""
        valid = [c for c in self.cost if c.valid_from <= moment]
        return max(valid, key=lambda c: c.valid_from) if valid else None

    def inputs_by_name(self) -> dict[str, InputSpec]:
        return {i.name: i for i in self.input}

    def record_metrics(self) -> list[MetricSpec]:
        """The metrics stored per period; manual inputs, stocks and flows are computed when read."""
        return [m for m in self.metric if not m.live]

    def by_id(self) -> dict[str, MetricSpec]:
        return {m.id: m for m in self.metric}

    def grains_of(self, metric: MetricSpec) -> list[Grain]:
        return list(metric.grains or self.grains)


def load_catalogue(path: Path) -> Catalogue:
    data = read_toml(path)
    if "metric" not in data:
        raise SpecError(str(path), [("metric", "no [[metric]] entries")])
    return validate(Catalogue, data, path)
