"""``itbsc baseline``: read the last months of every scorecard metric and propose targets."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine

from daemon.compute import compute
from daemon.settings import Config
from mapping.baseline import Proposal, propose
from mapping.periods import Period, period_containing, previous_period


def last_months(config: Config, now: datetime, months: int) -> list[Period]:
    """The ``months`` complete months before ``now``, oldest first, in the reporting zone."""
    period = previous_period(period_containing(now, "month", config.zone), config.zone)
    out = [period]
    while len(out) < months:
        period = previous_period(period, config.zone)
        out.append(period)
    return list(reversed(out))


def baseline(engine: Engine, config: Config, now: datetime, months: int) -> list[Proposal]:
    periods = last_months(config, now, months)
    measures = {
        m.metric: m for p in config.scorecard.perspective for o in p.objective for m in o.measure
    }
    metrics = config.catalogue.by_id()
    with engine.connect() as conn:
        values = compute(conn, config, dict.fromkeys(measures, periods))
    by_metric: dict[str, dict[Period, tuple[float | None, int]]] = {}
    for value in values:
        if value.dimension == "all":
            by_metric.setdefault(value.metric, {})[value.period] = (value.value, value.n)
    return [
        propose(
            metric,
            metrics[metric].direction,
            [by_metric.get(metric, {}).get(p, (None, 0)) for p in periods],
            measure.min_n,
        )
        for metric, measure in measures.items()
    ]
