"""Every exclusion rule of the shipped catalogue: the record it names is removed and counted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from daemon.defaults import config_dir
from mapping.catalogue import STOCK_KINDS, Catalogue, MetricSpec, load_catalogue
from mapping.metrics import MetricValue, evaluate
from mapping.periods import parse_period
from mapping.stock import evaluate_interval

CATALOGUE: Catalogue = load_catalogue(config_dir() / "metrics.toml")
MAY = parse_period("2026-05", ZoneInfo("Europe/Amsterdam"))
AT = datetime(2026, 5, 12, 10, tzinfo=UTC)  # a Tuesday: within office hours

BASE: dict[str, dict[str, Any]] = {
    "incident": {
        "state": "resolved",
        "priority": "P1",
        "close_code": "solved",
        "reopen_count": 0,
        "reassignment_count": 0,
        "sla_met": True,
        "response_sla_met": True,
        "opened_at": AT - timedelta(hours=3),
        "first_response_at": AT - timedelta(hours=2),
        "resolved_at": AT,
        "closed_at": None,
        "assignment_group": "desk",
        "assigned_to": "ann",
        "kb_used": False,
        "auto_resolved": False,
        "tier": "L1",
        "unit_cost": 22.0,
        "attributed_change": "c1",
        "change_end": AT - timedelta(hours=4),
    },
    "change": {
        "state": "closed",
        "close_code": "successful",
        "type": "normal",
        "work_end": AT,
        "closed_at": AT,
        "caused_incidents": 0,
        "caused_incident_cost": 0.0,
    },
    "survey": {"rating": 5, "responded_at": AT},
    "request_item": {
        "state": "closed_complete",
        "opened_at": AT - timedelta(hours=5),
        "closed_at": AT,
    },
}


def satisfy(where: dict[str, Any]) -> dict[str, Any]:
    """Field values that match a filter spec."""
    out: dict[str, Any] = {}
    for name, spec in where.items():
        if isinstance(spec, list):
            out[name] = spec[0]
        elif isinstance(spec, dict):
            ((op, operand),) = spec.items()
            out[name] = {
                "is_null": None if operand else "x",
                "gt": operand + 1 if isinstance(operand, int | float) else operand,
                "ge": operand,
                "eq": operand,
            }[op]
        else:
            out[name] = spec
    return out


def evaluated(metric: MetricSpec, row: dict[str, Any]) -> MetricValue:
    rows = [{"source": "s", "source_id": "1", **row}]
    if metric.kind in STOCK_KINDS:
        opened = {**rows[0], "resolved_at": None, "closed_at": None}  # open at May's end
        values = evaluate_interval(metric, [opened], [MAY])
    else:
        values = evaluate(metric, rows, [MAY], CATALOGUE.calendar_choice(metric))
    (value,) = [v for v in values if v.dimension == "all"]
    return value


RULES = [
    pytest.param(metric, index, id=f"{metric.id}-{rule.name}")
    for metric in CATALOGUE.metric
    if not metric.manual and not metric.composite
    for index, rule in enumerate(metric.exclude)
]


@pytest.mark.parametrize(("metric", "index"), RULES)
def test_each_exclusion_removes_its_record_and_counts_it_by_name(
    metric: MetricSpec, index: int
) -> None:
    base = {**BASE[metric.record], **satisfy(metric.where)}
    kept = evaluated(metric, base)
    assert kept.n >= 1 and kept.exclusions == {}, "the base record must count"
    rule = metric.exclude[index]
    removed = evaluated(metric, {**base, **satisfy(rule.where)})
    assert removed.exclusions == {rule.name: 1}
    assert removed.n == 0
