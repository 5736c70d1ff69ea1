"""Quarters and years of additive metrics summed from their months, when a sync restates a day.

A sync that touches one day restates its week, month, quarter and year; the
year alone reads twelve months of records. For a metric whose value is a
ratio of sums (ratios and counts; averages and sums carry their totals) a
quarter or year is exactly the sum of its months' numerators, denominators,
counts and exclusions, dimension by dimension. The months being restated are
taken as just computed, the others as stored, and only when every one of them
is stored under the current catalogue and mapping versions; otherwise the
quarter or year is computed from the records as before.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, literal, select

from daemon import store
from daemon.models import CANONICAL_TABLES
from daemon.settings import Config
from mapping.catalogue import MetricSpec
from mapping.metrics import ALL, MetricValue
from mapping.periods import Period, periods_between

ADDITIVE_KINDS = frozenset({"ratio", "count", "average", "sum"})
ROLLED_GRAINS = frozenset({"quarter", "year"})


@dataclass
class _Sums:
    numerator: list[float] = field(default_factory=list)
    denominator: float = 0.0
    n: int = 0
    excluded: Counter[str] = field(default_factory=Counter)


@dataclass
class RollUp:
    """Quarters and years to sum from months: which, and the stored months they use."""

    periods: dict[str, list[Period]] = field(default_factory=dict)
    stored: dict[tuple[str, Period], list[Mapping[str, Any]]] = field(default_factory=dict)


def split(
    conn: Connection, config: Config, plan: Mapping[str, Sequence[Period]], version: str
) -> tuple[dict[str, list[Period]], RollUp]:
    """The plan less the quarters and years that can be summed from months, and those."""
    metrics = config.catalogue.by_id()
    direct: dict[str, list[Period]] = {}
    rolled = RollUp()
    for metric_id, periods in plan.items():
        metric = metrics[metric_id]
        keep = list(periods)
        restated = set(periods)
        if _additive(config, metric):
            for period in [p for p in periods if p.grain in ROLLED_GRAINS]:
                months = _months_of(config, period)
                stored = _stored(conn, metric, [m for m in months if m not in restated], version)
                if stored is None:
                    continue
                keep.remove(period)
                rolled.periods.setdefault(metric_id, []).append(period)
                rolled.stored.update(stored)
        direct[metric_id] = keep
    return direct, rolled


def values(config: Config, rolled: RollUp, computed: Sequence[MetricValue]) -> list[MetricValue]:
    """The rolled-up periods' values, from the months just computed and those stored."""
    metrics = config.catalogue.by_id()
    fresh: dict[tuple[str, Period], list[MetricValue]] = defaultdict(list)
    for value in computed:
        fresh[(value.metric, value.period)].append(value)
    out: list[MetricValue] = []
    for metric_id, periods in rolled.periods.items():
        metric = metrics[metric_id]
        for period in periods:
            sums: dict[str, _Sums] = defaultdict(_Sums)
            sums[ALL]  # present even when no month had a record
            for month in _months_of(config, period):
                if (metric_id, month) in fresh:
                    for v in fresh[(metric_id, month)]:
                        _add(sums[v.dimension], v.numerator, v.denominator, v.n, v.exclusions)
                else:
                    for row in rolled.stored[(metric_id, month)]:
                        _add(
                            sums[row["dimension"]],
                            row["numerator"],
                            row["denominator"],
                            row["n"],
                            row["exclusions"],
                        )
            out.extend(_value(metric, period, dim, s) for dim, s in sums.items())
    return out


def _additive(config: Config, metric: MetricSpec) -> bool:
    return metric.kind in ADDITIVE_KINDS and "month" in config.catalogue.grains_of(metric)


def _months_of(config: Config, period: Period) -> list[Period]:
    return periods_between(period.start, period.end, "month", config.zone)


def _stored(
    conn: Connection, metric: MetricSpec, months: Sequence[Period], version: str
) -> dict[tuple[str, Period], list[Mapping[str, Any]]] | None:
    """The stored values of ``months``, or None when one is of another version, or missing
    though records fall in it (a month no record falls in adds nothing: the rest of the
    current year, say)."""
    if not months:
        return {}
    rows = store.read_metric_values(
        conn, metrics=[metric.id], grain="month", start=months[0].start, end=months[-1].end
    )
    by_start: dict[Any, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        by_start[row["period_start"]].append(row)
    out: dict[tuple[str, Period], list[Mapping[str, Any]]] = {}
    for month in months:
        found = by_start.get(month.start, [])
        if any(r["mapping_version"] != version or r["period_end"] != month.end for r in found):
            return None
        if not any(r["dimension"] == ALL for r in found) and _has_records(conn, metric, month):
            return None
        out[(metric.id, month)] = found
    return out


def _has_records(conn: Connection, metric: MetricSpec, month: Period) -> bool:
    """Whether a live record's cohort time falls in ``month`` (one index lookup)."""
    table = CANONICAL_TABLES[metric.record]
    cohort = table.c[metric.cohort]
    query = (
        select(literal(1))
        .where(cohort >= month.start, cohort < month.end, table.c.deleted_at.is_(None))
        .limit(1)
    )
    return conn.execute(query).first() is not None


def _add(
    sums: _Sums,
    numerator: float | None,
    denominator: float | None,
    n: int,
    exclusions: Mapping[str, int],
) -> None:
    if numerator is not None:
        sums.numerator.append(numerator)
    sums.denominator += denominator or 0.0
    sums.n += n
    sums.excluded.update(exclusions)


def _value(metric: MetricSpec, period: Period, dimension: str, sums: _Sums) -> MetricValue:
    """As ``mapping.metrics`` values a period, from the sums of its months."""
    excluded = dict(sums.excluded)
    n = sums.n
    total = math.fsum(sums.numerator)
    if metric.kind == "sum":
        value = total if n else None
        return MetricValue(metric.id, period, dimension, value, value, None, n, excluded)
    if metric.kind == "average":
        mean = total / n if n else None
        return MetricValue(
            metric.id, period, dimension, mean, total if n else None, n or None, n, excluded
        )
    if metric.kind == "count":
        return MetricValue(metric.id, period, dimension, float(n), float(n), None, n, excluded)
    value = 100.0 * total / sums.denominator if n else None
    return MetricValue(metric.id, period, dimension, value, total, sums.denominator, n, excluded)
