"""Metrics over other metrics' values: change against the same period last year, products.

``year_over_year``: this period's value minus the same period's a year before,
in the base metric's unit (percentage points for a percentage); numerator and
denominator hold the two values, so the difference can be checked by hand.
``product``: a x b for the same period and dimension (the open backlog at the
period's end times the cost per ticket resolved in it: a predicted backlog cost).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from mapping.catalogue import MetricSpec
from mapping.metrics import ALL, MetricValue
from mapping.periods import Period


def combine(
    metric: MetricSpec,
    periods: Sequence[Period],
    bases: Sequence[Sequence[MetricValue]],
    earlier: Mapping[Period, Period],
) -> list[MetricValue]:
    """Values of ``metric`` for ``periods`` from its base metrics' values (same dimensions)."""
    indexed = [{(v.period, v.dimension): v for v in values} for values in bases]
    out = []
    for period in periods:
        dimensions = sorted(
            {d for (p, d) in indexed[0] if p == period} | {ALL}, key=lambda d: (d != ALL, d)
        )
        for dimension in dimensions:
            first = indexed[0].get((period, dimension))
            if metric.kind == "year_over_year":
                second = indexed[0].get((earlier[period], dimension))
            else:
                second = indexed[1].get((period, dimension))
            a = first.value if first is not None else None
            b = second.value if second is not None else None
            value: float | None = None
            if a is not None and b is not None:
                value = a - b if metric.kind == "year_over_year" else a * b
            n = min(first.n if first else 0, second.n if second else 0) if value is not None else 0
            out.append(MetricValue(metric.id, period, dimension, value, a, b, n, {}))
    return out
