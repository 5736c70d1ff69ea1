"""Explain one metric value: the records behind it, each with its part, reproducing the number.

Every record whose cohort time falls in the period and dimension is listed
with what happened to it — in the numerator, in the denominator only,
sampled (with its hours), or removed by a named exclusion — decided by the
same code that computes the value (``Evaluation.classify``). Re-adding the
listed parts gives the value; a test holds the two equal.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mapping.calendar import CalendarChoice
from mapping.catalogue import STOCK_KINDS, MetricSpec
from mapping.metrics import ALL, STATISTICS, Evaluation, MetricValue, empty_value
from mapping.periods import Period
from mapping.stock import _dimensions, interval_value, place


@dataclass(frozen=True)
class RecordPart:
    source: str
    source_id: str
    number: str | None
    cohort_at: datetime
    part: str  # numerator, denominator, sample, counted, started, ended, or excluded
    reason: str | None = None
    sample: float | None = None
    start: datetime | None = None
    end: datetime | None = None
    per: Any = None  # per_distinct: the value counted once (the agent)


@dataclass
class Explanation:
    metric: MetricSpec
    period: Period
    dimension: str
    value: MetricValue
    records: list[RecordPart] = field(default_factory=list)

    def reproduced(self) -> tuple[float | None, float | None, float | None, dict[str, int]]:
        """(value, numerator, denominator, exclusions) recomputed from the listed records only."""
        excluded: dict[str, int] = {}
        for record in self.records:
            if record.part == "excluded" and record.reason:
                excluded[record.reason] = excluded.get(record.reason, 0) + 1
        kind = self.metric.kind
        if kind in STOCK_KINDS:
            parts = [r.part for r in self.records]
            num = float(sum(p in ("numerator", "started", "both") for p in parts))
            den = float(
                sum(p in ("numerator", "denominator", "ended", "both", "counted") for p in parts)
            )
            v = interval_value(self.metric, self.period, self.dimension, num, den, excluded)
            return v.value, v.numerator, v.denominator, excluded
        if kind == "sum":
            samples = [
                r.sample for r in self.records if r.part == "sample" and r.sample is not None
            ]
            total = math.fsum(samples) if samples else None
            return total, total, None, excluded
        if kind in ("duration", "average"):
            samples = [
                r.sample for r in self.records if r.part == "sample" and r.sample is not None
            ]
            statistic = STATISTICS[self.metric.statistic if kind == "duration" else "mean"]
            value = statistic(samples) if samples else None
            return (
                value,
                (math.fsum(samples) if samples else None),
                (len(samples) or None),
                excluded,
            )
        counted = [r for r in self.records if r.part in ("numerator", "denominator", "counted")]
        if kind == "count":
            return float(len(counted)), float(len(counted)), None, excluded
        if kind == "per_distinct":
            agents = len({r.per for r in counted})
            value = len(counted) / agents if agents else None
            return value, float(len(counted)), float(agents), excluded
        hits = sum(1 for r in counted if r.part == "numerator")
        value = 100.0 * hits / len(counted) if counted else None
        return value, float(hits), float(len(counted)), excluded


def explain(
    metric: MetricSpec,
    rows: Iterable[Mapping[str, Any]],
    period: Period,
    dimension: str = "all",
    calendars: CalendarChoice | None = None,
) -> Explanation:
    """The value of ``metric`` in ``period`` and ``dimension`` with every record behind it."""
    if metric.kind in STOCK_KINDS:
        return explain_interval(metric, rows, period, dimension)
    evaluation = Evaluation(metric, [period], calendars)
    parts: list[RecordPart] = []
    for row in rows:
        outcome = evaluation.classify(row)
        if outcome is None or dimension not in outcome.dimensions:
            continue
        evaluation.add(row)
        if outcome.reason is not None:
            part = "excluded"
        elif metric.kind in ("duration", "average", "sum"):
            part = "sample"
        elif metric.kind in ("count", "per_distinct"):
            part = "counted"
        else:
            part = "numerator" if outcome.hit else "denominator"
        parts.append(
            RecordPart(
                source=str(row.get("source")),
                source_id=str(row.get("source_id")),
                number=row.get("number"),
                cohort_at=row[metric.cohort],
                part=part,
                reason=outcome.reason,
                sample=outcome.sample,
                start=row.get(metric.start) if metric.start else None,
                end=row.get(metric.end) if metric.end else None,
                per=outcome.per,
            )
        )
    values = [v for v in evaluation.results() if v.dimension == dimension]
    value = values[0] if values else empty_value(metric, period, dimension)
    parts.sort(key=lambda p: (p.cohort_at, p.source, p.source_id))
    return Explanation(metric, period, dimension, value, parts)


def explain_interval(
    metric: MetricSpec, rows: Iterable[Mapping[str, Any]], period: Period, dimension: str = ALL
) -> Explanation:
    """A stock or flow value with its records: open at the period's end (aged or not), or
    started and ended in it; placed by the same code that computes the value."""
    population, exclusions = metric.population(), metric.exclusions()
    parts: list[RecordPart] = []
    num = den = 0.0
    excluded: dict[str, int] = {}
    for row in rows:
        start = row.get(metric.start or "")
        if start is None or not population.matches(row):
            continue
        placed = place(metric, row, period, start)
        if placed is None or dimension not in _dimensions(metric, row):
            continue
        reason = next((name for name, rule in exclusions if rule.matches(row)), None)
        if reason is not None:
            excluded[reason] = excluded.get(reason, 0) + 1
            part = "excluded"
        else:
            num, den = num + placed[0], den + placed[1]
            if metric.kind == "flow_ratio":
                part = {(1.0, 0.0): "started", (0.0, 1.0): "ended"}.get(placed, "both")
            elif metric.kind == "stock":
                part = "counted"
            else:
                part = "numerator" if placed[0] else "denominator"
        ended = row.get(metric.end or "") if metric.kind == "flow_ratio" else None
        if metric.kind != "flow_ratio":
            moments = [row.get(n) for n in metric.closed_by]
            ended = min((m for m in moments if m is not None), default=None)
        parts.append(
            RecordPart(
                source=str(row.get("source")),
                source_id=str(row.get("source_id")),
                number=row.get("number"),
                cohort_at=start,
                part=part,
                reason=reason,
                start=start,
                end=ended,
            )
        )
    value = interval_value(metric, period, dimension, num, den, excluded)
    parts.sort(key=lambda p: (p.cohort_at, p.source, p.source_id))
    return Explanation(metric, period, dimension, value, parts)
