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
    numerators: dict[tuple[Period, str], float] = defaultdict(float)
    denominators: dict[tuple[Period, str], float] = defaultdict(float)
    excluded: dict[tuple[Period, str], Counter[str]] = defaultdict(Counter)
    for row in rows:
        start = row.get(metric.start or "")
        if start is None or not population.matches(row):
            continue
        reason = next((name for name, rule in exclusions if rule.matches(row)), None)
        dims = _dimensions(metric, row)
        weight = row.get(WEIGHT, 1)
        for period in periods:
            part = place(metric, row, period, start)
            if part is None:
                continue
            for dim in dims:
                if reason is not None:
                    excluded[(period, dim)][reason] += weight
                    continue
                numerators[(period, dim)] += part[0] * weight
                denominators[(period, dim)] += part[1] * weight
    keys = set(denominators) | set(numerators) | set(excluded) | {(p, ALL) for p in periods}
    out = []
    for period, dim in sorted(keys, key=lambda k: (k[0], k[1] != ALL, k[1])):
        num, den = numerators.get((period, dim), 0.0), denominators.get((period, dim), 0.0)
        drop = dict(excluded.get((period, dim), {}))
        out.append(interval_value(metric, period, dim, num, den, drop))
    return out
