"""Targets proposed from an organisation's own history (``itbsc baseline``).

Method, stated with every proposal: over the last N complete months with at
least ``min_n`` records, the target is the value of the better quartile of
months (the 75th percentile where higher is better, the 25th where lower is
better) — "as good as your best quarter of months" — and the amber band is
the distance from that target to the median month, so a typical month sits
at the amber edge. Months without enough data are left out and counted.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

METHOD = (
    "target = better-quartile month (P75 if higher is better, P25 if lower) over the months "
    "with at least min_n records; amber = |median month - target|"
)


@dataclass(frozen=True)
class Proposal:
    metric: str
    direction: str
    months_used: int
    months_skipped: int
    median: float | None
    target: float | None
    amber: float | None


def propose(
    metric: str, direction: str, monthly: Sequence[tuple[float | None, int]], min_n: int
) -> Proposal:
    """``monthly``: (value, n) per month, oldest first."""
    values = [v for v, n in monthly if v is not None and n >= min_n]
    skipped = len(monthly) - len(values)
    if len(values) < 3:  # too little history to say anything
        return Proposal(metric, direction, len(values), skipped, None, None, None)
    quartiles = statistics.quantiles(values, n=4, method="inclusive")
    median = statistics.median(values)
    target = quartiles[2] if direction == "higher" else quartiles[0]
    return Proposal(
        metric,
        direction,
        len(values),
        skipped,
        median,
        round(target, 2),
        round(abs(median - target), 2),
    )
