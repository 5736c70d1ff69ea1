"""Metrics over intervals: what was open at a period's end, and what started versus ended in it.

A record is open from ``start`` until the earliest of its ``closed_by``
timestamps (none = still open). ``stock`` counts the records open at the
period's end; ``stock_ratio`` gives the share of them open longer than
``age_days`` by then; ``flow_ratio`` divides the records that started in
the period by those that ended in it (created / resolved: 1.0 keeps the
backlog flat). Exclusions are counted, as everywhere.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from mapping.catalogue import MetricSpec
from mapping.metrics import ALL, MISSING, MetricValue
from mapping.periods import Period

WEIGHT = "_n"
"""A row may stand for several records the database grouped: how many, under this key."""


def _ended(metric: MetricSpec, row: Mapping[str, Any]) -> datetime | None:
    moments = [row.get(name) for name in metric.closed_by]
    present = [m for m in moments if m is not None]
    return min(present) if present else None


def _dimensions(metric: MetricSpec, row: Mapping[str, Any]) -> list[str]:
    dims = [ALL]
    for name in metric.breakdowns:
        value = row.get(name)
        dims.append(f"{name}={MISSING if value is None else value}")
    return dims


def place(
    metric: MetricSpec, row: Mapping[str, Any], period: Period, start: datetime
) -> tuple[float, float] | None:
    """A record's (numerator, denominator) part in a period, or None when it has none there.

    flow_ratio: (started in it, ended in it); stock: (0, open at its end); stock_ratio:
    (open longer than age_days at its end, open at its end)."""
    if metric.kind == "flow_ratio":
        end = row.get(metric.end or "")
        started, finished = period.contains(start), end is not None and period.contains(end)
        return (float(started), float(finished)) if started or finished else None
    ended = _ended(metric, row)
    if not (start < period.end and (ended is None or ended >= period.end)):
        return None
    aged = metric.kind == "stock_ratio" and period.end - start > timedelta(
        days=metric.age_days or 0
    )
    return float(aged), 1.0


def interval_value(
    metric: MetricSpec, period: Period, dim: str, num: float, den: float, drop: dict[str, int]
) -> MetricValue:
    if metric.kind == "stock":
        return MetricValue(metric.id, period, dim, den, den, None, int(den), drop)
    if metric.kind == "stock_ratio":
        value = 100.0 * num / den if den else None
        return MetricValue(metric.id, period, dim, value, num, den, int(den), drop)
    value = num / den if den else None
    return MetricValue(metric.id, period, dim, value, num, den, int(num + den), drop)


def evaluate_interval(
    metric: MetricSpec, rows: Iterable[Mapping[str, Any]], periods: Sequence[Period]
) -> list[MetricValue]:
    """Values of a stock or flow metric for every period, in ``all`` and each breakdown."""
    population = metric.population()
    exclusions = metric.exclusions()
    totals = _Totals()
    for row in rows:
        start = row.get(metric.start or "")
        if start is None or not population.matches(row):
            continue
        reason = next((name for name, rule in exclusions if rule.matches(row)), None)
        dims = _dimensions(metric, row)
        weight = row.get(WEIGHT, 1)
        for period in periods:
            part = place(metric, row, period, start)
            if part is not None:
                totals.add(period, dims, reason, part[0] * weight, part[1] * weight, weight)
    return totals.values(metric, periods)


Part = tuple[Any, ...]  # what the database sums: a name and the moments it compares


def part_names(metric: MetricSpec, period: Period) -> tuple[Part, Part, Part]:
    """What the database sums for a metric's period, per group of records with the same
    fields: (numerator, denominator, records taking part), as ``place`` decides them."""
    if metric.kind == "flow_ratio":
        return ("started", period), ("ended", period), ("started or ended", period)
    opened: Part = ("open at", period.end)
    if metric.kind == "stock":
        return ("none", period.end), opened, opened
    return (
        ("open and aged", period.end - timedelta(days=metric.age_days or 0), period.end),
        opened,
        opened,
    )


def evaluate_interval_parts(
    metric: MetricSpec,
    groups: Iterable[tuple[Mapping[str, Any], Mapping[Part, float]]],
    periods: Sequence[Period],
) -> list[MetricValue]:
    """The values ``evaluate_interval`` gives, from records the database has grouped by
    their fields and placed in the periods already (``part_names`` says what it summed)."""
    population = metric.population()
    exclusions = metric.exclusions()
    parts = [(period, part_names(metric, period)) for period in periods]
    totals = _Totals()
    for row, sums in groups:
        if not population.matches(row):
            continue
        reason = next((name for name, rule in exclusions if rule.matches(row)), None)
        dims = _dimensions(metric, row)
        for period, (numerator, denominator, taking_part) in parts:
            weight = int(sums.get(taking_part, 0))
            if weight:
                totals.add(
                    period, dims, reason, sums.get(numerator, 0.0), sums[denominator], weight
                )
    return totals.values(metric, periods)


class _Totals:
    """Numerators, denominators and exclusions per (period, dimension)."""

    def __init__(self) -> None:
        self.numerators: dict[tuple[Period, str], float] = defaultdict(float)
        self.denominators: dict[tuple[Period, str], float] = defaultdict(float)
        self.excluded: dict[tuple[Period, str], Counter[str]] = defaultdict(Counter)

    def add(
        self,
        period: Period,
        dims: Sequence[str],
        reason: str | None,
        numerator: float,
        denominator: float,
        weight: int,
    ) -> None:
        for dim in dims:
            if reason is not None:
                self.excluded[(period, dim)][reason] += weight
                continue
            self.numerators[(period, dim)] += numerator
            self.denominators[(period, dim)] += denominator

    def values(self, metric: MetricSpec, periods: Sequence[Period]) -> list[MetricValue]:
        keys = (
            set(self.denominators)
            | set(self.numerators)
            | set(self.excluded)
            | {(p, ALL) for p in periods}
        )
        out = []
        for period, dim in sorted(keys, key=lambda k: (k[0], k[1] != ALL, k[1])):
            num = self.numerators.get((period, dim), 0.0)
            den = self.denominators.get((period, dim), 0.0)
            drop = dict(self.excluded.get((period, dim), {}))
            out.append(interval_value(metric, period, dim, num, den, drop))
        return out
